"""``AlertRepository``: alerts and their delivery attempts.

Alerts are stored *before* they are delivered (status ``pending``), so a channel that is down, or a
process that dies, never loses one: :meth:`AlertRepository.pending` hands them out again. Every
statement takes a batch.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import TextualSelect, bindparam, func, insert, select, text, update

from fraudstream.events.alert import PENDING, Alert, DeliveryAttempt
from fraudstream.storage import tables
from fraudstream.storage.database import Database
from fraudstream.storage.rows import chunks, dicts

_a = tables.alerts
_ad = tables.alert_deliveries
_d = tables.decisions


def _alert_from_row(row: Any) -> Alert:
    payload = dict(row["payload"] or {})
    message = str(payload.pop("message", ""))
    return Alert(
        kind=row["kind"],
        entity=row["entity"],
        transaction_id=row["transaction_id"],
        message=message,
        details=payload,
        created_at=row["created_at"],
        status=row["status"],
        id=int(row["id"]),
    )


class AlertRepository:
    """The alert and delivery tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, alerts: builtins.list[Alert]) -> builtins.list[Alert]:
        """Insert alerts in one statement; sets and returns them with their new ``id``."""
        if not alerts:
            return alerts
        rows = [
            {
                "created_at": a.created_at,
                "kind": a.kind,
                "entity": a.entity,
                "transaction_id": a.transaction_id,
                "payload": {**a.details, "message": a.message},
                "status": a.status,
            }
            for a in alerts
        ]
        statement = insert(_a).returning(_a.c.id, sort_by_parameter_order=True)
        with self._db.write() as conn:
            ids = [int(i) for i in conn.execute(statement, rows).scalars()]
        for alert, new_id in zip(alerts, ids, strict=True):
            alert.id = new_id
        return alerts

    def recent_keys(self, keys: Iterable[tuple[str, str]], since: datetime) -> set[tuple[str, str]]:
        """Which ``(kind, entity)`` pairs already have an alert created at or after ``since``."""
        wanted = set(keys)
        entities = sorted({entity for _, entity in wanted})
        found: set[tuple[str, str]] = set()
        with self._db.read() as conn:
            for chunk in chunks(entities):
                query = (
                    select(_a.c.kind, _a.c.entity)
                    .where(_a.c.created_at >= since, _a.c.entity.in_(chunk))
                    .distinct()
                )
                found.update((str(k), str(e)) for k, e in conn.execute(query))
        return found & wanted

    def flag_history(
        self, customer_ids: Sequence[str], since: datetime, until: datetime
    ) -> builtins.list[tuple[str, str, datetime]]:
        """``(customer_id, transaction_id, event time)`` of stored FLAGs with event time in
        ``[since, until]``, for the burst detector to see decisions made by other processes too.

        Read from the partial index of FLAGs by customer and event time, so the cost follows the FLAGs
        in the window, not the table. Without statistics SQLite preferred the index led by the outcome
        and read every FLAG ever stored, a cost that grows with the table, so on SQLite the index is
        named (docs/decisions/0023-alert-detector-lookups-by-index.md); PostgreSQL picks it from its
        statistics.
        """
        out: builtins.list[tuple[str, str, datetime]] = []
        query = _flag_query(self._db.vendor.flag_index_hint)
        with self._db.read() as conn:
            for chunk in chunks(sorted(set(customer_ids))):
                rows = conn.execute(query, {"customers": chunk, "since": since, "until": until})
                out.extend((str(c), str(t), ts) for c, t, ts in rows)
        return out

    def record_deliveries(self, attempts: builtins.list[DeliveryAttempt]) -> None:
        """Append delivery attempts, in one statement."""
        if not attempts:
            return
        rows = [
            {
                "alert_id": a.alert_id,
                "channel": a.channel,
                "attempt": a.attempt,
                "attempted_at": a.attempted_at,
                "ok": a.ok,
                "error": a.error,
            }
            for a in attempts
        ]
        with self._db.write() as conn:
            conn.execute(insert(_ad), rows)

    def set_status(self, ids: Sequence[int], status: str) -> None:
        """Set the status of these alerts (``pending`` → ``delivered`` or ``failed``)."""
        with self._db.write() as conn:
            for chunk in chunks(list(ids)):
                conn.execute(update(_a).where(_a.c.id.in_(chunk)).values(status=status))

    def pending(self, limit: int = 10_000) -> builtins.list[tuple[Alert, set[str]]]:
        """Alerts still waiting for delivery, oldest first, each with the channels that already took it.

        After a restart these are sent again, but only on the channels that have not delivered them.
        """
        query = select(_a).where(_a.c.status == PENDING).order_by(_a.c.id).limit(limit)
        with self._db.read() as conn:
            alerts = [_alert_from_row(row) for row in conn.execute(query).mappings()]
            done: dict[int, set[str]] = {}
            for chunk in chunks([a.id for a in alerts if a.id is not None]):
                delivered = select(_ad.c.alert_id, _ad.c.channel).where(
                    _ad.c.alert_id.in_(chunk), _ad.c.ok.is_(True)
                )
                for alert_id, channel in conn.execute(delivered):
                    done.setdefault(int(alert_id), set()).add(str(channel))
        return [(a, done.get(a.id or 0, set())) for a in alerts]

    def feed(self, limit: int = 50, since: datetime | None = None) -> builtins.list[dict[str, Any]]:
        """The most recent alerts, newest first, with their status, delivery attempts and last error."""
        query = select(_a).order_by(_a.c.created_at.desc(), _a.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(_a.c.created_at >= since)
        with self._db.read() as conn:
            alerts = [_alert_from_row(row) for row in conn.execute(query).mappings()]
            ids = [a.id for a in alerts]
            attempts: dict[int, int] = {}
            errors: dict[int, str] = {}
            if ids:
                counts = select(_ad.c.alert_id, func.count()).where(_ad.c.alert_id.in_(ids))
                attempts = {int(i): int(n) for i, n in conn.execute(counts.group_by(_ad.c.alert_id))}
                failed = (
                    select(_ad.c.alert_id, _ad.c.channel, _ad.c.error)
                    .where(_ad.c.alert_id.in_(ids), _ad.c.ok.is_(False))
                    .order_by(_ad.c.id)
                )
                errors = {int(i): f"{channel}: {error}" for i, channel, error in conn.execute(failed)}
        return [
            {
                "id": a.id,
                "created_at": a.created_at,
                "kind": a.kind,
                "entity": a.entity,
                "transaction_id": a.transaction_id,
                "message": a.message,
                "status": a.status,
                "attempts": attempts.get(a.id or 0, 0),
                "last_error": errors.get(a.id or 0),
                "details": a.details,
            }
            for a in alerts
        ]

    def add(self, items: builtins.list[dict[str, Any]]) -> builtins.list[int]:
        """Store alerts (``kind``, ``entity``; optional ``transaction_id``, ``payload``, ``status``,
        ``created_at``); their ids, in the order given."""
        if not items:
            return []
        now = datetime.now(UTC)
        rows = [
            {
                "created_at": item.get("created_at") or now,
                "kind": item["kind"],
                "entity": item["entity"],
                "transaction_id": item.get("transaction_id"),
                "payload": item.get("payload") or {},
                "status": item.get("status") or "open",
            }
            for item in items
        ]
        statement = insert(_a).returning(_a.c.id, sort_by_parameter_order=True)
        with self._db.write() as conn:
            return [int(i) for i in conn.execute(statement, rows).scalars()]

    def list(self, limit: int = 50, since: datetime | None = None) -> builtins.list[dict[str, Any]]:
        """The most recent alerts, newest first, optionally only those created at or after ``since``."""
        query = select(_a).order_by(_a.c.created_at.desc(), _a.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(_a.c.created_at >= since)
        with self._db.read() as conn:
            return dicts(conn.execute(query).mappings())


@cache
def _flag_query(hint: str) -> TextualSelect:
    """FLAGs of some customers within a window of event time, from their partial index (named by
    ``hint`` where the database must be told); built once per dialect, since the detector asks several
    times a second."""
    sql = (
        f"SELECT customer_id, transaction_id, timestamp FROM decisions{hint}"
        f" WHERE customer_id IN :customers AND timestamp >= :since AND timestamp <= :until"
        f" AND {tables.FLAG_ONLY}"
    )
    return (
        text(sql)
        .bindparams(
            bindparam("customers", expanding=True),
            bindparam("since", type_=_d.c.timestamp.type),
            bindparam("until", type_=_d.c.timestamp.type),
        )
        .columns(_d.c.customer_id, _d.c.transaction_id, _d.c.timestamp)
    )
