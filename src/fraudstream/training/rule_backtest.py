"""Backtests: candidate rules applied to stored history, with what they would have caught and changed.

The history is what was stored at decision time (:class:`~fraudstream.storage.rules.RulesRepository`):
each transaction's logged feature vector and body, so the candidate reads exactly the columns the live
rules read (:func:`~fraudstream.rules.names.rule_columns`) with nothing recomputed. The model's own
decision, the one rules sit on, is rebuilt from the stored probability and the thresholds of a model
bundle (the serving one), with the serving score bands (CHALLENGE, HOLD): for decisions another model
version made, its thresholds may differ, so the report counts those rows. Labels are the ones known
now: a transaction is fraud when any source says so, and counts as not fraud otherwise, unlabelled
included (they are counted apart). A shadow rule's hits are reported like any other's, and change no
decision here either (docs/decisions/0028-rules-versions-shadow-and-backtests.md).

The runtime aggregates a candidate declares (:mod:`fraudstream.rules.aggregates`) were not logged: they
are computed here over the stored transactions by the whole-history path of the engine that computes
them online (:func:`aggregate_history`), point-in-time, each fraud label from its label time on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from fraudstream.events.batch import COLUMNS, TransactionBatch
from fraudstream.events.transaction import DECISIONS, Transaction
from fraudstream.models.bands import NO_BANDS, ScoreBands
from fraudstream.models.ensemble import model_decisions
from fraudstream.rules.names import default_known_names, rule_columns
from fraudstream.rules.ruleset import SHADOW_PREFIX, RuleSet

if TYPE_CHECKING:
    from fraudstream.features.plan import FeatureSet
    from fraudstream.rules.aggregates import Aggregates

EXAMPLES: Final = 5
"""Transaction ids shown per kind of changed decision."""

MAX_SINCE: Final = timedelta(days=3660)
"""The longest history a backtest reads: ten years."""


@dataclass
class RuleStats:
    """One rule's (or list's) hits over the history, against the labels known now."""

    name: str
    action: str
    shadow: bool = False
    hits: int = 0
    fraud_hits: int = 0
    unlabelled_hits: int = 0
    fraud_amount: float = 0.0
    fraud_total: int = 0

    @property
    def precision(self) -> float | None:
        """Share of the hits labelled fraud (unlabelled hits count as not fraud); ``None`` without hits."""
        return self.fraud_hits / self.hits if self.hits else None

    @property
    def recall(self) -> float | None:
        """Share of the history's frauds the rule hits; ``None`` when the history has no fraud."""
        return self.fraud_hits / self.fraud_total if self.fraud_total else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "shadow": self.shadow,
            "hits": self.hits,
            "fraud_hits": self.fraud_hits,
            "unlabelled_hits": self.unlabelled_hits,
            "precision": self.precision,
            "recall": self.recall,
            "fraud_amount": round(self.fraud_amount, 2),
        }


@dataclass
class Change:
    """Decisions that the candidate would make differently from the live ones, one kind of change."""

    before: str
    after: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.before, "to": self.after, "count": self.count, "examples": self.examples}


@dataclass
class BacktestReport:
    """What a candidate rule set would have done over ``[start, end)``; see :class:`Backtest`."""

    start: datetime
    end: datetime
    rules_version: str
    thresholds: dict[str, float]
    thresholds_version: str
    rows: int
    other_model_rows: int
    labelled: int
    fraud: int
    fraud_amount: float
    rules: list[RuleStats]
    changes: list[Change]
    live: dict[str, int]
    candidate: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rules_version": self.rules_version,
            "thresholds": self.thresholds,
            "thresholds_version": self.thresholds_version,
            "rows": self.rows,
            "other_model_rows": self.other_model_rows,
            "labelled": self.labelled,
            "fraud": self.fraud,
            "fraud_amount": round(self.fraud_amount, 2),
            "rules": [r.to_dict() for r in self.rules],
            "changes": [c.to_dict() for c in self.changes],
            "live": self.live,
            "candidate": self.candidate,
        }


def backtest_names(stored: Mapping[str, list[str]], feature_set: FeatureSet | None = None) -> dict[str, str]:
    """The names a candidate may read: the transaction's columns, the serving feature set's names and
    every stored feature set's (a name a row's logged set lacks reads as missing on that row)."""
    known = default_known_names(feature_set)
    for names in stored.values():
        known.update(dict.fromkeys(names, "number"))
    return known


@dataclass(frozen=True)
class AggregatedHistory:
    """Runtime aggregates computed over stored history: ``values`` (rows × ``names``) of the
    transactions ``at`` maps by id."""

    names: list[str]
    at: dict[str, int]
    values: np.ndarray

    def rows(self, ids: list[str]) -> np.ndarray:
        """The values of these transactions, NaN for one not in the history (a decision stored without
        its transaction)."""
        out = np.full((len(ids), len(self.names)), np.nan)
        found = [(k, self.at[i]) for k, i in enumerate(ids) if i in self.at]
        if found:
            mine, theirs = zip(*found, strict=True)
            out[list(mine)] = self.values[list(theirs)]
        return out


def aggregate_history(
    store: Any, aggregates: Aggregates, start: datetime, end: datetime
) -> AggregatedHistory:
    """``aggregates`` for every transaction stored with its body in ``[start, end)``, by the whole-history
    path of their engine: one batch of the stored transactions of ``[start - retention, end)`` in event
    time order, the fraud labels known now each from its label time on. What they were online, for the
    transactions decided while a version declaring them was in use (the same kernels, point-in-time)."""
    transactions: list[Transaction] = []
    label_times: list[float] = []
    for chunk in store.history.transactions(start - timedelta(seconds=aggregates.retention), end):
        fraud_at = chunk["fraud_label_time"]
        for payload, known in zip(chunk["payload"], fraud_at, strict=True):
            try:
                transactions.append(Transaction.model_validate(payload))
            except ValueError:
                continue  # a body stored under an older schema: its decision reads them as missing
            label_times.append(np.nan if pd.isna(known) else known.timestamp())
    batch = TransactionBatch.from_transactions(transactions)
    labelled = np.asarray(label_times, dtype=np.float64)
    batch = replace(batch, is_fraud=(~np.isnan(labelled)).astype(np.float64), label_time=labelled)
    values = aggregates.engine.compute(batch)
    at = {t.transaction_id: i for i, t in enumerate(transactions)}
    return AggregatedHistory(list(aggregates.names), at, values)


class Backtest:
    """Applies ``rules`` to chunks of stored decisions (:meth:`add`) and sums up (:meth:`report`).

    ``thresholds`` (``flag`` and ``block``) rebuild each row's model decision from its stored
    probability, and ``bands`` then make CHALLENGEs and HOLDs of it as serving does; ``model_version``
    names the bundle they come from. ``feature_names`` maps each stored feature set's id to its names,
    in the order its vectors were logged.
    """

    def __init__(
        self,
        rules: RuleSet,
        thresholds: Mapping[str, float],
        model_version: str,
        feature_names: Mapping[str, list[str]],
        bands: ScoreBands = NO_BANDS,
        aggregated: AggregatedHistory | None = None,
    ) -> None:
        self.rules = rules
        self.bands = bands
        self.thresholds = {"flag": float(thresholds["flag"]), "block": float(thresholds["block"])}
        self.model_version = model_version
        self._sets = dict(feature_names)
        self._aggregated = aggregated
        computed = [] if aggregated is None else aggregated.names
        stored = [n for names in self._sets.values() for n in names]
        unlogged = sorted(rules.names - set(COLUMNS) - set(stored) - set(computed))  # missing on every row
        self._names = tuple(dict.fromkeys([*stored, *unlogged]))
        self._ruled = [*self._names, *computed]  # an aggregate read over a stored feature of its name
        self._index = {name: i for i, name in enumerate(self._names)}
        self._stats = {r.name: RuleStats(r.name, r.action, r.shadow) for r in rules.rules}
        self._changes: dict[tuple[str, str], Change] = {}
        self._live = dict.fromkeys(DECISIONS, 0)
        self._candidate = dict.fromkeys(DECISIONS, 0)
        self.rows = self.other_model_rows = self.labelled = self.fraud = 0
        self.fraud_amount = 0.0

    def add(self, chunk: pd.DataFrame) -> None:
        """Apply the rules to one chunk of :meth:`~fraudstream.storage.rules.RulesRepository.decided`."""
        n = len(chunk)
        if n == 0:
            return
        batch = TransactionBatch.from_transactions(list(_transactions(chunk)))
        X = self._features(chunk)
        if self._aggregated is not None:
            X = np.hstack([X, self._aggregated.rows(chunk["transaction_id"].tolist())])
        probability = chunk["probability"].to_numpy(dtype=np.float64)
        by_model = self.bands.apply(probability, model_decisions(probability, self.thresholds))
        outcome = self.rules.apply(rule_columns(batch, X, self._ruled), by_model)
        fraud = chunk["fraud"].to_numpy(dtype=bool)
        labelled = chunk["labelled"].to_numpy(dtype=bool)
        amount = chunk["amount"].to_numpy(dtype=np.float64)
        ids = chunk["transaction_id"].tolist()
        self.rows += n
        self.other_model_rows += int((chunk["model_version"] != self.model_version).sum())
        self.labelled += int(labelled.sum())
        self.fraud += int(fraud.sum())
        self.fraud_amount += float(amount[fraud].sum())
        for i, fired in enumerate(outcome.recorded):
            for hit in fired:
                name = hit.removeprefix(SHADOW_PREFIX)
                stats = self._stats.get(name)
                if stats is None:  # a list hit: deny_list:<field> or allow_list:<field>
                    action = "BLOCK" if name.startswith("deny_list:") else "APPROVE"
                    stats = self._stats[name] = RuleStats(name, action)
                stats.hits += 1
                if fraud[i]:
                    stats.fraud_hits += 1
                    stats.fraud_amount += float(amount[i])
                elif not labelled[i]:
                    stats.unlabelled_hits += 1
        live = chunk["decision"].tolist()
        for i, (before, after) in enumerate(zip(live, outcome.decision.tolist(), strict=True)):
            self._live[before] = self._live.get(before, 0) + 1
            self._candidate[after] += 1
            if before != after:
                change = self._changes.setdefault((before, after), Change(before, after))
                change.count += 1
                if len(change.examples) < EXAMPLES:
                    change.examples.append(str(ids[i]))

    def report(self, start: datetime, end: datetime) -> BacktestReport:
        """The sums so far: per rule in file order (then the lists that hit), changes commonest first."""
        stats = list(self._stats.values())
        for s in stats:
            s.fraud_total = self.fraud
        changes = sorted(self._changes.values(), key=lambda c: (-c.count, c.before, c.after))
        return BacktestReport(
            start=start,
            end=end,
            rules_version=self.rules.version,
            thresholds=self.thresholds,
            thresholds_version=self.model_version,
            rows=self.rows,
            other_model_rows=self.other_model_rows,
            labelled=self.labelled,
            fraud=self.fraud,
            fraud_amount=self.fraud_amount,
            rules=stats,
            changes=changes,
            live=self._live,
            candidate=self._candidate,
        )

    def _features(self, chunk: pd.DataFrame) -> np.ndarray:
        """The chunk's logged vectors in the columns of every stored name (NaN where a set lacks one)."""
        X = np.full((len(chunk), len(self._names)), np.nan)
        values = chunk["feature_values"].to_numpy()
        for key, rows in chunk.groupby("feature_set", sort=False).indices.items():
            names = self._sets.get(str(key), [])
            if not names:
                continue
            packed = np.frombuffer(b"".join(values[rows]), dtype="<f8").reshape(len(rows), len(names))
            at = np.asarray(rows, dtype=np.intp)
            cols = np.array([self._index[n] for n in names], dtype=np.intp)
            X[np.ix_(at, cols)] = packed
        return X


def _transactions(chunk: pd.DataFrame) -> Iterator[Transaction]:
    """Each row's stored body as a transaction; the decision's own columns where no body was stored."""
    columns = zip(
        chunk["payload"], chunk["transaction_id"], chunk["timestamp"], chunk["customer_id"], chunk["amount"],
        strict=True,
    )  # fmt: skip
    for payload, tid, ts, customer, amount in columns:
        if isinstance(payload, dict):
            try:
                yield Transaction.model_validate(payload)
                continue
            except ValueError:
                pass  # a body stored under an older schema: its decision's columns still hold
        yield Transaction(
            transaction_id=tid, timestamp=ts.to_pydatetime(), customer_id=customer, amount=amount
        )


def run_backtest(
    store: Any,
    rules: RuleSet,
    thresholds: Mapping[str, float],
    model_version: str,
    since: timedelta,
    until: datetime | None = None,
    bands: ScoreBands = NO_BANDS,
) -> BacktestReport:
    """Backtest ``rules`` over the decisions of ``[until - since, until)`` in ``store`` (a
    :class:`~fraudstream.storage.Store`); ``until`` defaults to just after the newest stored decision's
    event time, as for retraining, so a replayed history reads like live traffic. ``bands`` are the
    serving score bands."""
    if until is None:
        span = store.history.span()
        until = span.last + timedelta(microseconds=1) if span else datetime.now(UTC)
    start = until - since
    aggregated = (
        None if rules.aggregates is None else aggregate_history(store, rules.aggregates, start, until)
    )
    run = Backtest(rules, thresholds, model_version, store.history.feature_names(), bands, aggregated)
    for chunk in store.rules.decided(start, until):
        run.add(chunk)
    return run.report(start, until)
