"""The rule guard's baselines: a rules version backtested over the newest stored decisions, each rule's
hits kept as its expected hit rate (see :mod:`fraudstream.rules.guard`).

The backtest is the one of :mod:`fraudstream.training.rule_backtest` (the logged feature vectors and
bodies, nothing recomputed), over the event times that hold the newest ``decisions`` stored decisions.
A rule that reads a name no stored decision logged (a feature of a newer model, say), and that the
version does not declare as a runtime aggregate (those the backtest computes), reads it as missing
on every row, so its backtest cannot count its hits: its baseline carries a note saying so, and the
guard never trips it on that baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fraudstream.events.batch import COLUMNS
from fraudstream.rules.ruleset import RuleSet
from fraudstream.storage.guard import Baseline
from fraudstream.training.rule_backtest import run_backtest


def unlogged(rules: RuleSet, stored: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Per rule, the names it reads that neither a transaction, nor any stored feature set, nor the
    version's own runtime aggregates (which the backtest computes over the stored transactions) carry."""
    declared = () if rules.aggregates is None else rules.aggregates.names
    known = set(COLUMNS).union(declared, *stored.values())
    return {r.name: missing for r in rules.rules if (missing := sorted(set(r.expr.names) - known))}


def backtest_baseline(
    store: Any,
    rules: RuleSet,
    thresholds: Mapping[str, float],
    model_version: str,
    *,
    decisions: int,
    by: str,
) -> list[Baseline]:
    """Backtest ``rules`` (a version's, named by its ``version``) over the newest ``decisions`` decisions
    in ``store`` (a :class:`~fraudstream.storage.Store`) and keep each rule's hits as the baselines of
    the version, replacing any it had; ``by`` says who asked (a key's name, or the command line)."""
    now = datetime.now(UTC)
    span = store.rule_guard.newest_span(decisions)
    missing = unlogged(rules, store.history.feature_names())
    if span is None:
        rows, hits, start, end = 0, {}, None, None
    else:
        start, end = span
        report = run_backtest(store, rules, thresholds, model_version, end - start, end)
        rows, hits = report.rows, {s.name: s.hits for s in report.rules}
    baselines = [
        Baseline(
            rules_version=rules.version,
            rule=rule.name,
            hits=hits.get(rule.name, 0),
            decisions=rows,
            computed_at=now,
            computed_by=by,
            period_start=start,
            period_end=end,
            note=_note(missing.get(rule.name), rows),
        )
        for rule in rules.rules
    ]
    store.rule_guard.save_baselines(rules.version, baselines)
    return baselines


def _note(missing: list[str] | None, rows: int) -> str | None:
    if missing:
        return (
            f"it reads {', '.join(missing)}, which no stored decision logged, so its backtest counts no hit"
        )
    if rows == 0:
        return "its backtest found no stored decisions"
    return None
