"""``ReportRepository``: the daily report's aggregates over decisions and labels, by decision time.

Every aggregate runs in SQL over ``[start, end)`` of ``decided_at``, never row by row in Python, so a
day of millions of decisions costs one grouped query each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, and_, cast, func, select, true

from fraudstream.events.transaction import FLAGGED
from fraudstream.storage import tables
from fraudstream.storage.database import Database

_d = tables.decisions
_l = tables.labels


class ReportRepository:
    """Totals, top rules and reasons, and label outcomes of the decisions made in a period."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _decided_in(self, start: datetime, end: datetime) -> ColumnElement[bool]:
        return and_(_d.c.decided_at >= start, _d.c.decided_at < end)

    def _aggregate(self, query: Select[Any]) -> list[Any]:
        """The rows of an aggregate over decisions."""
        with self._db.read() as conn:
            return list(conn.execute(query))

    def decision_totals(self, start: datetime, end: datetime) -> list[tuple[str, int, float]]:
        """``(decision, count, total amount)`` of the decisions made in ``[start, end)``."""
        query = (
            select(_d.c.decision, func.count(), func.coalesce(func.sum(_d.c.amount), 0.0))
            .where(self._decided_in(start, end))
            .group_by(_d.c.decision)
            .order_by(_d.c.decision)
        )
        return [(str(d), int(n), float(s)) for d, n, s in self._aggregate(query)]

    def top_rules(self, start: datetime, end: datetime, limit: int = 10) -> list[tuple[str, int, float]]:
        """``(rule, hits, amount)`` of the rules (and list hits) that fired most in ``[start, end)``."""
        element = self._db.vendor.json_texts(_d.c.rules)
        name = element.c.value
        return self._top(name, element, start, end, limit, None)

    def top_reasons(self, start: datetime, end: datetime, limit: int = 10) -> list[tuple[str, int, float]]:
        """``(code, times, amount)`` of the model's most frequent top reasons (rules excluded) in
        ``[start, end)``, over the decisions other than APPROVE: what drove the alerts, not the
        approvals."""
        element, (code, source) = self._db.vendor.json_fields(_d.c.reasons, "code", "source")
        flagged = and_(_d.c.decision.in_(FLAGGED), func.coalesce(source, "") != "rules")
        return self._top(code, element, start, end, limit, flagged)

    def _top(
        self,
        name: Any,
        element: Any,
        start: datetime,
        end: datetime,
        limit: int,
        where: ColumnElement[bool] | None,
    ) -> list[tuple[str, int, float]]:
        query = (
            select(name.label("name"), func.count().label("n"), func.sum(_d.c.amount))
            .select_from(_d)
            .join(element, true())
            .where(self._decided_in(start, end))
        )
        if where is not None:
            query = query.where(where)
        query = query.group_by(name).order_by(func.count().desc(), name).limit(limit)
        return [(str(n), int(c), float(s or 0.0)) for n, c, s in self._aggregate(query) if n is not None]

    def label_outcomes(self, start: datetime, end: datetime) -> list[tuple[str, bool, int, float]]:
        """``(decision, is_fraud, count, amount)`` of the decisions in ``[start, end)`` that have labels.

        A transaction counts as fraud when any source labelled it so (a chargeback outranks a quiet
        customer), as legitimate when every label says legitimate.
        """
        day_ids = select(_d.c.transaction_id).where(self._decided_in(start, end))
        verdict = (
            select(_l.c.transaction_id, func.max(cast(_l.c.is_fraud, Integer)).label("fraud"))
            .where(_l.c.transaction_id.in_(day_ids))
            .group_by(_l.c.transaction_id)
            .subquery()
        )
        query = (
            select(_d.c.decision, verdict.c.fraud, func.count(), func.sum(_d.c.amount))
            .join_from(_d, verdict, verdict.c.transaction_id == _d.c.transaction_id)
            .where(self._decided_in(start, end))
            .group_by(_d.c.decision, verdict.c.fraud)
        )
        return [(str(d), bool(f), int(n), float(s or 0.0)) for d, f, n, s in self._aggregate(query)]
