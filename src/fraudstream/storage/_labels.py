"""``LabelStore``: fraud feedback (chargebacks, analyst verdicts) on stored transactions.

A transaction can be labelled by several sources; a label is kept once per (transaction, source), so a
feed that sends the same verdict again changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from fraudstream.events.transaction import Label
from fraudstream.storage import tables
from fraudstream.storage.database import Database
from fraudstream.storage.rows import chunks, dicts, unique_by

_t = tables.transactions
_l = tables.labels


class LabelStore(Database):
    """Adding labels, and reading them back by transaction or as recent fraud."""

    def fraud_labels_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """``(transaction_id, label_time)`` of fraud labels on transactions from ``since`` on."""
        query = (
            select(_l.c.transaction_id, _l.c.label_time)
            .join(_t, _t.c.transaction_id == _l.c.transaction_id)
            .where(_l.c.is_fraud.is_(True), _t.c.timestamp >= since)
        )
        with self._read() as conn:
            return [(row[0], row[1]) for row in conn.execute(query)]

    def add_labels(self, labels: list[Label]) -> int:
        """Store fraud feedback, skipping labels known for (transaction, source); how many were new."""
        now = datetime.now(UTC)
        rows = [
            {**label.model_dump(), "received_at": now}
            for label in unique_by(labels, lambda label: (label.transaction_id, label.source))
        ]
        if not rows:
            return 0
        with self._write() as conn:
            return len(self._insert_ignore(conn, _l, rows, "id"))

    def labels_for(self, transaction_ids: list[str]) -> list[dict[str, Any]]:
        """Every label received for these transactions, oldest ``label_time`` first."""
        out: list[dict[str, Any]] = []
        with self._read() as conn:
            for chunk in chunks(list(dict.fromkeys(transaction_ids))):
                query = select(_l).where(_l.c.transaction_id.in_(chunk)).order_by(_l.c.label_time, _l.c.id)
                out.extend(dicts(conn.execute(query).mappings()))
        out.sort(key=lambda row: (row["label_time"], row["id"]))
        return out
