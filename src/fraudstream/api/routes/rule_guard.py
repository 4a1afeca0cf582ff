"""``/v1/rules/guard``: the rule guard — each rule's live hit rate against its backtested rate, the rules
it moved to shadow, and re-enabling one (admin).

A rules version saved through ``/v1/rules`` is backtested over the newest FRAUD_RULE_GUARD_BASELINE_DECISIONS
stored decisions; each rule's hits there are its expected rate. ``POST /v1/rules/guard/baseline`` backtests
the version in use again (a seeded version, or one saved before the history grew). Every server and worker
counts each rule's hits among the newest FRAUD_RULE_GUARD_WINDOW stored decisions made under the version
in use; a rule with at least FRAUD_RULE_GUARD_MIN_HITS hits there, at FRAUD_RULE_GUARD_MULTIPLE times its
expected rate or more, is moved to shadow (evaluated and recorded as ``shadow:<rule>``, deciding nothing)
in every process within FRAUD_RULES_POLL_SECONDS, and an alert of kind ``rule_guard`` names it.
``POST /v1/rules/guard/{rule}/reenable`` lets it act again; its count starts afresh from then. Each trip
and re-enabling is in the audit log (``GET /v1/audit?subject=rule:<rule>``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from fraudstream.api.deps import CallerDep, ScorerDep, ServicesDep
from fraudstream.api.schemas import GuardOut, GuardStatusOut
from fraudstream.monitoring.rule_guard import guard_limits, guard_status
from fraudstream.pipeline.scorer import Scorer
from fraudstream.rules.loader import NAME_PATTERN
from fraudstream.rules.ruleset import RuleSet
from fraudstream.runtime import Services
from fraudstream.storage.guard import Baseline, Guard, GuardError
from fraudstream.training.rule_baseline import backtest_baseline

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/rules/guard", tags=["rules"])


class ReenableIn(BaseModel):
    """Why the rule may act again: kept with the guard and in the audit log."""

    reason: str = Field(min_length=1, max_length=2000, examples=["the feed's amounts were in cents; fixed"])


RuleParam = Annotated[
    str, Path(pattern=f"^{NAME_PATTERN}$", description="the rule's name", examples=["big_amount"])
]
NOT_GUARDED: dict[int | str, dict[str, Any]] = {404: {"description": "the rule is not guarded"}}


def _status(services: Services, last_error: str | None) -> GuardStatusOut:
    limits = guard_limits(services.settings)
    status = guard_status(services.store.rule_guard, services.rules.current(), limits)
    return GuardStatusOut.of(status, services.settings, last_error)


def _last_error(request: Request) -> str | None:
    guard = getattr(request.app.state, "rule_guard", None)
    return None if guard is None else guard.last_error


def keep_baseline(services: Services, scorer: Scorer, rules: RuleSet, by: str) -> list[Baseline]:
    """Backtest ``rules`` (a version's, named by its version) over the newest stored decisions and keep
    the result as its baselines. A backtest that fails (a rule that cannot read the stored columns) is
    kept as a note on each rule, so the guard says why the version has no baseline."""
    manifest = scorer.bundle.manifest
    store = services.store
    try:
        return backtest_baseline(
            store, rules, manifest.thresholds, manifest.version,
            decisions=services.settings.rule_guard_baseline_decisions, by=by,
        )  # fmt: skip
    except Exception as exc:
        log.warning("rule guard: rules version %s could not be backtested: %s", rules.version, exc)
        now, note = datetime.now(UTC), f"its backtest failed: {exc}"
        failed = [Baseline(rules.version, r.name, 0, 0, now, by, note=note) for r in rules.rules]
        store.rule_guard.save_baselines(rules.version, failed)
        return failed


@router.get("", response_model=GuardStatusOut)
async def guard(services: ServicesDep, request: Request) -> GuardStatusOut:
    """Each rule of the version in use: its hits among the newest stored decisions against its
    backtested rate, and its state (guarded, tripped, watched, no_baseline, shadow or exempt); the
    rules moved to shadow now, and the guard's settings."""
    return await run_in_threadpool(_status, services, _last_error(request))


@router.post("/baseline", response_model=GuardStatusOut)
async def baseline(
    services: ServicesDep, scorer: ScorerDep, caller: CallerDep, request: Request
) -> GuardStatusOut:
    """Backtest the rules version in use over the newest FRAUD_RULE_GUARD_BASELINE_DECISIONS stored
    decisions now, and make each rule's hits there its expected rate (replacing the version's baseline);
    the guard's view afterwards. Saving a version does this for it."""
    rules = services.rules.current()
    await run_in_threadpool(keep_baseline, services, scorer, rules, caller.name)
    return await run_in_threadpool(_status, services, _last_error(request))


def _reenable(services: Services, rule: str, actor: str, reason: str) -> Guard:
    guard = services.store.rule_guard.reenable(rule, actor, reason)
    if services.guards is not None:
        services.guards.refresh()
    return guard


@router.post("/{rule}/reenable", response_model=GuardOut, responses=NOT_GUARDED)
async def reenable(rule: RuleParam, body: ReenableIn, services: ServicesDep, caller: CallerDep) -> GuardOut:
    """Let a rule the guard moved to shadow act again: at once on this server, within
    FRAUD_RULES_POLL_SECONDS on the others; its hits are counted afresh from now. Audited under the
    calling key's name with the reason. 404 when the rule is not guarded."""
    try:
        released = await run_in_threadpool(_reenable, services, rule, caller.name, body.reason)
    except GuardError as e:
        raise HTTPException(e.status, str(e)) from None
    return GuardOut.of(released)


__all__ = ["keep_baseline", "router"]
