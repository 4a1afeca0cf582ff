"""``LabelRepository``: fraud feedback (chargebacks, analyst verdicts) on stored transactions.

A transaction can be labelled by several sources, and ``labels`` keeps each source's current verdict.
:meth:`LabelRepository.apply` (the API's path) lets a source change its verdict: a label that says the
opposite of the source's current one, with a ``label_time`` not before it, supersedes it, and the verdict
it replaced moves to ``label_history``, the audit trail. The same verdict again, or an older one, changes
nothing, so a feed may resend. Where sources disagree, fraud wins: a transaction is fraud when any
source's current verdict says so (the reports and the feature state read labels that way).

A label that takes effect through :meth:`LabelRepository.apply`, first or changed, emits the webhook
event ``label.created`` in the same transaction (see :mod:`.webhooks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from fraudstream.events.transaction import Label
from fraudstream.events.webhook import LABEL_CREATED, WebhookEvent
from fraudstream.storage import tables
from fraudstream.storage.database import Database
from fraudstream.storage.rows import chunks, dicts, unique_by
from fraudstream.storage.webhooks import emit

_t = tables.transactions
_l = tables.labels
_h = tables.label_history


@dataclass
class LabelChanges:
    """What :meth:`LabelRepository.apply` did with a batch of labels."""

    accepted: int = 0
    """first verdicts of their (transaction, source)"""
    superseded: int = 0
    """changed verdicts: each replaced its source's earlier one, which went to the history"""
    ignored: int = 0
    """the source's current verdict again, or a different one older than it"""
    fraud: list[Label] = field(default_factory=list)
    """the fraud labels that took effect, in order: what the feature state must learn"""


def _label_event(
    label: Label, received_at: datetime, k: int, replaced: dict[str, Any] | None
) -> WebhookEvent:
    """``label.created`` for the ``k``-th label of a batch applied at ``received_at``; ``replaced``: the
    history row of the verdict it superseded."""
    data = label.model_dump() | {"received_at": received_at, "supersedes": None}
    if replaced is not None:
        data["supersedes"] = {"is_fraud": replaced["is_fraud"], "label_time": replaced["label_time"]}
    key = f"{label.transaction_id}\x00{label.source}\x00{received_at.isoformat()}\x00{k}"
    return WebhookEvent(LABEL_CREATED, key, data, occurred=label.label_time, subject=label.transaction_id)


class LabelRepository:
    """Adding labels, and reading them back by transaction, with their history, or as recent fraud."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def fraud_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """``(transaction_id, label_time)`` of the transactions from ``since`` on that a source's current
        verdict says are fraud, once each, with the earliest such ``label_time``."""
        query = (
            select(_l.c.transaction_id, func.min(_l.c.label_time))
            .join(_t, _t.c.transaction_id == _l.c.transaction_id)
            .where(_l.c.is_fraud.is_(True), _t.c.timestamp >= since)
            .group_by(_l.c.transaction_id)
        )
        with self._db.read() as conn:
            return [(row[0], row[1]) for row in conn.execute(query)]

    def add(self, labels: list[Label]) -> int:
        """Store labels in bulk as a dataset's replay does, keeping the first per (transaction, source) and
        skipping the rest; how many were new. No verdict changes: see :meth:`apply`."""
        now = datetime.now(UTC)
        rows = [
            {**label.model_dump(), "received_at": now}
            for label in unique_by(labels, lambda label: (label.transaction_id, label.source))
        ]
        if not rows:
            return 0
        with self._db.write() as conn:
            return len(self._db.insert_ignore(conn, _l, rows, "id"))

    def apply(self, labels: list[Label]) -> LabelChanges:
        """Apply labels in order, in one transaction: the first of a (transaction, source) is stored; one
        that says the opposite of the source's current verdict, with a ``label_time`` not before it,
        supersedes it (the old verdict is kept in the history); anything else is ignored. The caller
        checks that the transactions exist and precede their labels."""
        changes = LabelChanges()
        if not labels:
            return changes
        now = datetime.now(UTC)
        with self._db.write() as conn:
            self._db.vendor.lock_labels(conn)  # a change of verdict reads the current one first
            current = self._current(conn, [label.transaction_id for label in labels])
            first = [
                label
                for label in unique_by(labels, lambda label: (label.transaction_id, label.source))
                if (label.transaction_id, label.source) not in current
            ]
            if first:
                rows = [{**label.model_dump(), "received_at": now} for label in first]
                inserted = conn.execute(insert(_l).returning(*_l.c, sort_by_parameter_order=True), rows)
                current.update(
                    ((row["transaction_id"], row["source"]), dict(row)) for row in inserted.mappings()
                )
            firsts = {id(label) for label in first}
            changed: dict[int, dict[str, Any]] = {}  # labels row id → its new verdict
            history: list[dict[str, Any]] = []
            effective: list[tuple[int, Label, dict[str, Any] | None]] = []  # (position, label, replaced)
            for k, label in enumerate(labels):
                row = current[(label.transaction_id, label.source)]
                if id(label) in firsts:
                    changes.accepted += 1
                elif label.is_fraud == row["is_fraud"] or label.label_time < row["label_time"]:
                    changes.ignored += 1
                    continue
                else:
                    history.append(
                        {
                            "label_id": row["id"],
                            **{name: row[name] for name in ("transaction_id", "is_fraud", "label_time")},
                            **{name: row[name] for name in ("source", "received_at")},
                            "superseded_at": now,
                        }
                    )
                    row.update(is_fraud=label.is_fraud, label_time=label.label_time, received_at=now)
                    changed[row["id"]] = row
                    changes.superseded += 1
                effective.append((k, label, history[-1] if id(label) not in firsts else None))
                if label.is_fraud:
                    changes.fraud.append(label)
            if history:
                conn.execute(insert(_h), history)
                for row in changed.values():
                    conn.execute(
                        update(_l)
                        .where(_l.c.id == row["id"])
                        .values(is_fraud=row["is_fraud"], label_time=row["label_time"], received_at=now)
                    )
            emit(conn, (_label_event(label, now, k, replaced) for k, label, replaced in effective), now=now)
        return changes

    def _current(self, conn: Connection, ids: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
        """Every source's current label of these transactions, by (transaction, source)."""
        current: dict[tuple[str, str], dict[str, Any]] = {}
        for chunk in chunks(list(dict.fromkeys(ids))):
            for row in conn.execute(select(_l).where(_l.c.transaction_id.in_(chunk))).mappings():
                current[(row["transaction_id"], row["source"])] = dict(row)
        return current

    def for_transactions(self, transaction_ids: list[str]) -> list[dict[str, Any]]:
        """Every source's current label of these transactions, oldest ``label_time`` first."""
        out: list[dict[str, Any]] = []
        with self._db.read() as conn:
            for chunk in chunks(list(dict.fromkeys(transaction_ids))):
                query = select(_l).where(_l.c.transaction_id.in_(chunk)).order_by(_l.c.label_time, _l.c.id)
                out.extend(dicts(conn.execute(query).mappings()))
        out.sort(key=lambda row: (row["label_time"], row["id"]))
        return out

    def history(self, transaction_id: str) -> list[dict[str, Any]]:
        """The verdicts on a transaction that were superseded, oldest change first: each with its source,
        ``label_time`` and ``received_at`` as they were, and ``superseded_at``."""
        query = select(_h).where(_h.c.transaction_id == transaction_id).order_by(_h.c.superseded_at, _h.c.id)
        with self._db.read() as conn:
            return dicts(conn.execute(query).mappings())
