"""``decisions`` rows straight from a scored batch's columns, with no per-row record objects.

A replay or a worker stores tens of thousands of decisions a second. Building a
:class:`~fraudstream.events.decision.DecisionRecord` per row, then taking it apart again, was a third
of the writing process's time; here timestamps are formatted and feature vectors packed once per
batch, with numpy, and only the JSON reasons are encoded row by row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from fraudstream.events.decision import DecisionColumns
from fraudstream.storage._vendors import vendor
from fraudstream.storage.database import dumps
from fraudstream.storage.holds import PENDING
from fraudstream.storage.rollup import batch_minute_rows, epoch
from fraudstream.storage.rows import explanation_blobs, feature_set_id, latency_text, stored_total

__all__ = ["ColumnRows"]

HOLD = "HOLD"


class ColumnRows:
    """The rows of one :class:`DecisionColumns` for :data:`~fraudstream.storage.rows.DECISION_COLUMNS`.

    ``keys`` are its transaction ids with repeats dropped (the first is kept, as for records);
    :meth:`build` makes the rows at given positions of ``keys``, in that order, for the bulk writes of
    the database called ``dialect`` (timestamps in its driver's form).
    """

    def __init__(self, columns: DecisionColumns, dialect: str) -> None:
        ids: list[str] = np.asarray(columns.transaction_id, dtype=object).tolist()
        if len(set(ids)) == len(ids):
            self._rows = np.arange(len(ids))
            self.keys = ids
        else:
            first: dict[str, int] = {}
            for i, key in enumerate(ids):
                first.setdefault(key, i)
            self._rows = np.fromiter(first.values(), dtype=np.int64, count=len(first))
            self.keys = list(first)
        self.set_id = feature_set_id(columns.feature_names)
        self.names = {self.set_id: list(columns.feature_names)}
        mine = columns.explainer
        theirs = columns.shadow_explainer if columns.routed is not None else None
        self.explainers = {e.id: e for e in (mine, theirs) if e is not None}
        """The explainers the rows' explanations are read with, by id."""
        self._explainer_of = columns.explainers()
        self._columns = columns
        self._vendor = vendor(dialect)

    def minute_rows(self, at: Sequence[int]) -> list[tuple[Any, ...]]:
        """The rows at these positions counted per minute (:mod:`fraudstream.storage.rollup`)."""
        c = self._columns
        rows = self._rows[np.asarray(at, dtype=np.int64)]
        decisions = [str(d) for d in np.asarray(c.decision, dtype=object)[rows].tolist()]
        probabilities = np.asarray(c.probability, dtype=np.float64)[rows]
        return batch_minute_rows(epoch(c.decided_at), decisions, probabilities, stored_total(c.latency_ms))

    def hold_rows(self, at: Sequence[int]) -> list[tuple[Any, ...]]:
        """The ``holds`` rows (:data:`~fraudstream.storage.holds.HOLD_COLUMNS`) of the HOLD decisions
        among the rows at these positions: pending, held from the batch's decision time."""
        c = self._columns
        rows = self._rows[np.asarray(at, dtype=np.int64)]
        held = rows[np.asarray(c.decision, dtype=object)[rows] == HOLD]
        if not held.size:
            return []
        at_time = self._vendor.timestamp(c.decided_at)
        return [
            (tx_id, customer_id, amount, at_time, PENDING)
            for tx_id, customer_id, amount in zip(
                np.asarray(c.transaction_id, dtype=object)[held].tolist(),
                np.asarray(c.customer_id, dtype=object)[held].tolist(),
                np.asarray(c.amount, dtype=np.float64)[held].tolist(),
                strict=True,
            )
        ]

    def build(self, at: Sequence[int]) -> Iterator[tuple[Any, ...]]:
        c = self._columns
        rows = self._rows[np.asarray(at, dtype=np.int64)]
        stamps = self._vendor.timestamps(c.timestamp[rows])
        vectors = np.ascontiguousarray(c.features[rows], dtype="<f8")
        width = vectors.shape[1] * 8
        blob = vectors.tobytes()
        decided_at = self._vendor.timestamp(c.decided_at)
        latency = latency_text(c.latency_ms)
        version, set_id = c.model_version, self.set_id
        reasons, rules = c.reasons, c.rules
        shadow = c.shadow_version
        routed = c.versions()
        n = len(rows)
        aggregates: list[Any] = [None] * n
        if c.aggregates is not None:  # a few named values a row, as the rules read them
            named = c.aggregate_names
            aggregates = [dumps(dict(zip(named, v, strict=True))) for v in c.aggregates[rows].tolist()]
        explainer_ids: list[Any] = [None] * n
        explanations: list[Any] = [None] * n
        if self._explainer_of is not None and c.explained is not None:
            of = self._explainer_of
            explainer_ids = [None if (e := of[i]) is None else e.id for i in rows.tolist()]
            explanations = explanation_blobs(c.explained[0][rows], c.explained[1][rows])
            if None in explainer_ids:  # rows decided by a model that does not explain
                pairs = zip(explanations, explainer_ids, strict=True)
                explanations = [None if e is None else b for b, e in pairs]
        shadow_p: list[Any] = [None] * n
        shadow_d: list[Any] = [None] * n
        if shadow is not None and c.shadow_probability is not None and c.shadow_decision is not None:
            shadow_p = np.asarray(c.shadow_probability, dtype=np.float64)[rows].tolist()
            shadow_d = [str(d) for d in np.asarray(c.shadow_decision, dtype=object)[rows].tolist()]
        for j, (i, tx_id, customer_id, stamp, amount, decision, probability, sp, sd, ex, ey) in enumerate(
            zip(
                rows.tolist(),
                np.asarray(c.transaction_id, dtype=object)[rows].tolist(),
                np.asarray(c.customer_id, dtype=object)[rows].tolist(),
                stamps,
                np.asarray(c.amount, dtype=np.float64)[rows].tolist(),
                np.asarray(c.decision, dtype=object)[rows].tolist(),
                np.asarray(c.probability, dtype=np.float64)[rows].tolist(),
                shadow_p,
                shadow_d,
                explainer_ids,
                explanations,
                strict=True,
            )
        ):
            yield (
                tx_id,
                decided_at,
                stamp,
                customer_id,
                amount,
                str(decision),
                probability,
                dumps(reasons[i]),
                dumps(rules[i]) if rules[i] else "[]",
                version if routed is None else routed[0][i],
                set_id,
                blob[j * width : (j + 1) * width],
                latency,
                shadow if routed is None else routed[1][i],
                sp,
                sd,
                c.rules_version,
                aggregates[j],
                ex,
                ey,
            )
