"""Audit log entries, written inside the caller's database transaction, so that an action and its
record commit or roll back together: who did what to which subject, and its state before and after."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert

from fraudstream.storage import tables

_a = tables.audit_log


def write_audit(
    conn: Connection,
    actor: str,
    action: str,
    subject: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> int:
    """Write one entry (at the current time) on ``conn``; its id."""
    statement = insert(_a).returning(_a.c.id)
    values = {"at": datetime.now(UTC), "actor": actor, "action": action, "subject": subject}
    return int(conn.execute(statement.values(**values, before=before, after=after)).scalar_one())


def audited(record: Any) -> dict[str, Any]:
    """What the audit log keeps of a dataclass record: its fields, times as ISO 8601 text (JSON)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(record).items()}
