"""Decisions: what was decided for transactions, as one record each or as a scored batch's columns.

Plain data, so scoring, the worker, the API, alerts and storage all speak it without depending on
each other (storage never hands out SQLAlchemy rows).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from fraudstream.events.explanation import Explainer, Explanation


def may_alert(decision: str, rules: Sequence[str]) -> bool:
    """Whether a decision can raise an alert: every outcome but APPROVE can, and so can any decision a
    rule fired on. An APPROVE no rule touched (most decisions) cannot, so nobody needs to hand it over."""
    return decision != "APPROVE" or bool(rules)


class FeatureVector(Mapping[str, float | None]):
    """A decision's feature values by name, held as the scorer's numpy row.

    Scoring ten thousand transactions would otherwise build a million Python floats and ten thousand
    dicts that storage immediately packs back into bytes; this mapping packs straight from the row
    and converts a value only when somebody reads it. Missing values (NaN) read as ``None``.
    """

    __slots__ = ("_index", "names", "row")

    def __init__(self, names: Sequence[str], row: np.ndarray, index: Mapping[str, int] | None = None):
        self.names = names
        self.row = row
        self._index = index if index is not None else {n: i for i, n in enumerate(names)}

    def __getitem__(self, name: str) -> float | None:
        value = float(self.row[self._index[name]])
        return None if value != value else value

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class DecisionRecord:
    """One decision as stored: what was decided for a transaction, why, by which model, and how fast.

    ``transaction_id`` is the idempotency key: the first decision saved for a transaction is final,
    so a replayed message can never produce a second, different outcome.
    """

    transaction_id: str
    customer_id: str
    timestamp: datetime
    amount: float
    decision: str
    probability: float
    reasons: list[dict[str, Any]]
    rules: list[str]
    model_version: str
    features: Mapping[str, float | None]
    latency_ms: dict[str, float]
    decided_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    shadow_version: str | None = None
    """The challenger scored in shadow beside ``model_version``, if any: its probability and its
    decision (which did not act) follow."""
    shadow_probability: float | None = None
    shadow_decision: str | None = None
    rules_version: str | None = None
    """The version of the rules applied: a saved version's number, or the short hash of a rules file."""
    aggregates: Mapping[str, float | None] | None = None
    """The runtime aggregates the rules version declared, by name, as its rules read them for this
    transaction (missing values as ``None``); ``None`` when the version declared none."""
    explanation: Explanation | None = None
    """The explaining model's largest contributions both ways, readable (see
    :mod:`fraudstream.events.explanation`); ``None`` when no model explained it."""


@dataclass
class DecisionColumns:
    """A scored batch as columns, row-aligned: what storage needs of it and nothing more.

    Cheap to make and to pickle (numpy arrays and a few lists), so a batch can be handed to another
    thread or process before anybody builds its per-row :class:`DecisionRecord`.
    """

    transaction_id: np.ndarray
    customer_id: np.ndarray
    timestamp: np.ndarray  # float seconds since the epoch, UTC
    amount: np.ndarray
    decision: np.ndarray
    probability: np.ndarray
    reasons: list[list[dict[str, Any]]]
    rules: list[list[str]]
    features: np.ndarray  # one row per transaction, one column per name
    feature_names: list[str]
    model_version: str
    latency_ms: dict[str, float]
    decided_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    shadow_version: str | None = None
    """The challenger scored in shadow, if any; then its probability and decision per row."""
    shadow_probability: np.ndarray | None = None
    shadow_decision: np.ndarray | None = None
    routed: np.ndarray | None = None
    """With A/B routing, the rows ``shadow_version`` decided (a boolean mask): their decision and
    probability are its, and the ``shadow_*`` columns hold ``model_version``'s, which did not act."""
    rules_version: str | None = None
    """The version of the rules applied to every row (see :attr:`DecisionRecord.rules_version`)."""
    aggregates: np.ndarray | None = None
    """The rules' runtime aggregates, one row per transaction, one column per ``aggregate_names``
    (see :attr:`DecisionRecord.aggregates`); ``None`` when the rules declared none."""
    aggregate_names: list[str] = field(default_factory=list)
    explained: tuple[np.ndarray, np.ndarray] | None = None
    """Each row's explanation as scoring picked it: the features' columns and contributions (rows × 2
    ``top``, see :class:`~fraudstream.events.explanation.Explanation`); ``None`` when none was."""
    explainer: Explainer | None = None
    """The words of the model that explained the rows (``model_version``'s)."""
    shadow_explainer: Explainer | None = None
    """With A/B routing, the words of the model that explained the ``routed`` rows (``shadow_version``'s)."""

    def __len__(self) -> int:
        return len(self.transaction_id)

    def versions(self) -> tuple[list[str], list[str | None]] | None:
        """Each row's deciding and shadow model versions when A/B routing made them differ between
        rows; ``None`` when every row has ``model_version`` and ``shadow_version``."""
        if self.routed is None or self.shadow_version is None:
            return None
        served, other = self.model_version, self.shadow_version
        flags = np.asarray(self.routed, dtype=bool).tolist()
        return [other if r else served for r in flags], [served if r else other for r in flags]

    @property
    def champion_probability(self) -> np.ndarray:
        """The served model's (``model_version``'s) probability of every row, whichever model decided
        it: with A/B routing the challenger's rows hold the champion's in ``shadow_probability``."""
        if self.routed is None or self.shadow_probability is None:
            return np.asarray(self.probability, dtype=np.float64)
        return np.where(self.routed, self.shadow_probability, self.probability)

    def alerting_rows(self) -> list[int]:
        """The rows that can raise an alert (:func:`may_alert`): every outcome but APPROVE, and every
        decision a rule fired on; most decisions are APPROVEs no rule touched, which nobody needs to
        hand over."""
        decisions = np.asarray(self.decision, dtype=object).tolist()
        pairs = zip(decisions, self.rules, strict=True)
        return [k for k, (decision, rules) in enumerate(pairs) if may_alert(decision, rules)]

    def slice(self, lo: int, hi: int) -> DecisionColumns:
        """Rows ``lo`` to ``hi`` (views, not copies)."""
        return self._rows(slice(lo, hi), lambda items: items[lo:hi])

    def take(self, rows: Sequence[int]) -> DecisionColumns:
        """The rows at these positions, in that order."""
        return self._rows(np.asarray(rows, dtype=np.int64), lambda items: [items[i] for i in rows])

    def _rows(
        self, at: builtins.slice | np.ndarray, pick: Callable[[list[Any]], list[Any]]
    ) -> DecisionColumns:
        """The rows ``at`` selects from the arrays, and ``pick`` from the per-row lists."""
        return replace(
            self,
            transaction_id=self.transaction_id[at],
            customer_id=self.customer_id[at],
            timestamp=self.timestamp[at],
            amount=self.amount[at],
            decision=self.decision[at],
            probability=self.probability[at],
            reasons=pick(self.reasons),
            rules=pick(self.rules),
            features=self.features[at],
            shadow_probability=None if self.shadow_probability is None else self.shadow_probability[at],
            shadow_decision=None if self.shadow_decision is None else self.shadow_decision[at],
            routed=None if self.routed is None else self.routed[at],
            aggregates=None if self.aggregates is None else self.aggregates[at],
            explained=None if self.explained is None else (self.explained[0][at], self.explained[1][at]),
        )

    def explainers(self) -> list[Explainer | None] | None:
        """Each row's explainer (``None`` for a row no model explained), or ``None`` when no row has an
        explanation."""
        if self.explained is None or (self.explainer is None and self.shadow_explainer is None):
            return None
        if self.routed is None:
            return [self.explainer] * len(self)
        mine, theirs = self.explainer, self.shadow_explainer
        return [theirs if r else mine for r in np.asarray(self.routed, dtype=bool).tolist()]

    def records(self, index: Mapping[str, int] | None = None) -> list[DecisionRecord]:
        """One record per row, carrying the feature vector the decision was made on.

        Columns become Python lists once (``tolist``) rather than being indexed row by row, which made
        a numpy scalar per field per row. ``index`` (each feature name's column) saves building it
        again when the caller holds one: for one row it cost more than the record.
        """
        names, version, now = self.feature_names, self.model_version, self.decided_at
        if index is None:
            index = {n: i for i, n in enumerate(names)}
        timings = self.latency_ms
        fromtimestamp = datetime.fromtimestamp
        vectors = [FeatureVector(names, row, index) for row in self.features]
        out = [
            DecisionRecord(
                transaction_id=tx_id,
                customer_id=customer_id,
                timestamp=fromtimestamp(timestamp, UTC),
                amount=amount,
                decision=str(decision),
                probability=probability,
                reasons=reasons,
                rules=rules,
                model_version=version,
                features=vector,
                latency_ms=dict(timings),
                decided_at=now,
                rules_version=self.rules_version,
            )
            for tx_id, customer_id, timestamp, amount, decision, probability, reasons, rules, vector in zip(
                self.transaction_id.tolist(),
                self.customer_id.tolist(),
                np.asarray(self.timestamp, dtype=np.float64).tolist(),
                np.asarray(self.amount, dtype=np.float64).tolist(),
                np.asarray(self.decision, dtype=object).tolist(),
                np.asarray(self.probability, dtype=np.float64).tolist(),
                self.reasons,
                self.rules,
                vectors,
                strict=True,
            )
        ]
        explainers = self.explainers()
        if explainers is not None and self.explained is not None:
            picked = zip(out, explainers, *(a.tolist() for a in self.explained), strict=True)
            for record, explainer, columns, contributions in picked:
                if explainer is not None:
                    record.explanation = Explanation(explainer, columns, contributions, record.features)
        if self.shadow_probability is not None and self.shadow_decision is not None:
            decisions = [str(d) for d in np.asarray(self.shadow_decision, dtype=object).tolist()]
            for record, p, d in zip(
                out, np.asarray(self.shadow_probability, dtype=np.float64).tolist(), decisions, strict=True
            ):
                record.shadow_version, record.shadow_probability, record.shadow_decision = (
                    self.shadow_version,
                    p,
                    d,
                )
        if self.aggregates is not None:
            named = self.aggregate_names
            at = {n: i for i, n in enumerate(named)}
            for record, values in zip(out, self.aggregates, strict=True):
                record.aggregates = FeatureVector(named, values, at)
        versions = self.versions()
        if versions is not None:
            for record, deciding, other in zip(out, *versions, strict=True):
                record.model_version, record.shadow_version = deciding, other
        return out
