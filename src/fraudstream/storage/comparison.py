"""``ComparisonRepository``: the labelled decisions of a period, as columns, to compare models on.

For every decision made since a time whose transaction has a label now: the serving model's version,
probability and decision, the shadow challenger's (null without one), the amount, and the verdict —
fraud when any source's current label says so, as the reports count it. One query, read straight
into numpy arrays; no object per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Integer, cast, func, select

from fraudstream.storage import tables
from fraudstream.storage.database import Database

_d = tables.decisions
_l = tables.labels


@dataclass
class LabelledDecisions:
    """Row-aligned columns of labelled decisions; the ``shadow_*`` ones hold ``None`` / NaN where no
    challenger was scored."""

    model_version: np.ndarray
    probability: np.ndarray
    decision: np.ndarray
    shadow_version: np.ndarray
    shadow_probability: np.ndarray
    shadow_decision: np.ndarray
    amount: np.ndarray
    is_fraud: np.ndarray

    def __len__(self) -> int:
        return len(self.is_fraud)


class ComparisonRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def labelled_decisions(self, since: datetime, until: datetime | None = None) -> LabelledDecisions:
        """The decisions made in ``[since, until)`` whose transactions are labelled now."""
        period = _d.c.decided_at >= since
        if until is not None:
            period = period & (_d.c.decided_at < until)
        verdict = (
            select(_l.c.transaction_id, func.max(cast(_l.c.is_fraud, Integer)).label("fraud"))
            .where(_l.c.transaction_id.in_(select(_d.c.transaction_id).where(period)))
            .group_by(_l.c.transaction_id)
            .subquery()
        )
        query = (
            select(
                _d.c.model_version,
                _d.c.probability,
                _d.c.decision,
                _d.c.shadow_version,
                _d.c.shadow_probability,
                _d.c.shadow_decision,
                _d.c.amount,
                verdict.c.fraud,
            )
            .join_from(_d, verdict, verdict.c.transaction_id == _d.c.transaction_id)
            .where(period)
        )
        with self._db.read() as conn:
            rows = conn.execute(query).all()
        columns = list(zip(*rows, strict=True)) if rows else [()] * 8
        text = [np.asarray(c, dtype=object) for c in columns]
        return LabelledDecisions(
            model_version=text[0],
            probability=np.asarray(columns[1], dtype=np.float64),
            decision=text[2],
            shadow_version=text[3],
            shadow_probability=np.asarray([np.nan if p is None else p for p in columns[4]], dtype=np.float64),
            shadow_decision=text[5],
            amount=np.asarray(columns[6], dtype=np.float64),
            is_fraud=np.asarray(columns[7], dtype=np.int64) > 0,
        )
