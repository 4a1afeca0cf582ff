"""``SnoozeRepository``: the analysts' rule snoozes, and their entries in the audit log.

A snooze keeps one rule from acting on one customer, device, IP address or merchant until a time (see
:mod:`fraudstream.rules.snoozes` for how a decision honours it). Setting and lifting one are written
with their audit entry in one transaction (actions ``snooze`` and ``lift``, subject ``snooze:<id>``),
so the audit log has every change. Rows are never deleted: a lifted snooze keeps who lifted it and when.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from fraudstream.storage import tables
from fraudstream.storage._audit import audited, write_audit
from fraudstream.storage.database import Database

_s = tables.snoozes


class SnoozeError(ValueError):
    """A lift that cannot be done: ``status`` 404 (no such snooze) or 409 (already lifted)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Snooze:
    """One snooze: ``rule`` does not act on transactions whose ``field`` is ``value`` and whose time is
    before ``until``; set by ``analyst`` for ``reason``; lifted early when ``lifted_at`` is set."""

    id: int
    rule: str
    field: str
    value: str
    until: datetime
    reason: str
    analyst: str
    created_at: datetime
    lifted_at: datetime | None = None
    lifted_by: str | None = None

    def active(self, at: datetime) -> bool:
        """Whether it still covers a transaction at ``at``."""
        return self.lifted_at is None and at < self.until

    def audited(self) -> dict[str, Any]:
        """What the audit log keeps of it (times as ISO 8601 text)."""
        return audited(self)


_utc = tables.as_utc


def _snooze(row: Any) -> Snooze:
    values = dict(row)  # its times come back aware UTC, as every UTCDateTime column's
    values["id"] = int(values["id"])
    return Snooze(**values)


class SnoozeRepository:
    """Setting, lifting and reading rule snoozes; every change audited."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, rule: str, field: str, value: str, until: datetime, reason: str, analyst: str) -> Snooze:
        """Store a snooze (checked by the caller) set by ``analyst`` now, with its audit entry."""
        now = datetime.now(UTC)
        values = {
            "rule": rule, "field": field, "value": value, "until": _utc(until), "reason": reason,
            "analyst": analyst, "created_at": now,
        }  # fmt: skip
        with self._db.write() as conn:
            snooze_id = conn.execute(insert(_s).values(**values).returning(_s.c.id)).scalar_one()
            snooze = Snooze(id=int(snooze_id), **values)  # type: ignore[arg-type]
            write_audit(conn, analyst, "snooze", f"snooze:{snooze.id}", None, snooze.audited())
        return snooze

    def lift(self, snooze_id: int, actor: str) -> Snooze:
        """End a snooze now, by ``actor``, with its audit entry; 404 when there is no such snooze, 409
        when it was lifted already."""
        now = datetime.now(UTC)
        with self._db.write() as conn:
            before = self._get(conn, snooze_id)
            if before.lifted_at is not None:
                raise SnoozeError(f"snooze {snooze_id} was lifted already, by {before.lifted_by}")
            lifted = conn.execute(
                update(_s)
                .where(_s.c.id == snooze_id, _s.c.lifted_at.is_(None))
                .values(lifted_at=now, lifted_by=actor)
            ).rowcount
            if lifted != 1:  # lifted by another call meanwhile
                raise SnoozeError(f"snooze {snooze_id} was lifted already")
            after = self._get(conn, snooze_id)
            write_audit(conn, actor, "lift", f"snooze:{after.id}", before.audited(), after.audited())
        return after

    def get(self, snooze_id: int) -> Snooze:
        """The snooze ``snooze_id``; :class:`SnoozeError` 404 when there is none."""
        with self._db.read() as conn:
            return self._get(conn, snooze_id)

    def active(
        self,
        at: datetime,
        *,
        rule: str | None = None,
        field: str | None = None,
        value: str | None = None,
        limit: int = 500,
    ) -> builtins.list[Snooze]:
        """Snoozes not lifted that end after ``at``, soonest to end first; optionally of one rule,
        field or value."""
        query = select(_s).where(_s.c.lifted_at.is_(None), _s.c.until > _utc(at))
        for column, wanted in ((_s.c.rule, rule), (_s.c.field, field), (_s.c.value, value)):
            if wanted is not None:
                query = query.where(column == wanted)
        query = query.order_by(_s.c.until, _s.c.id).limit(limit)
        with self._db.read() as conn:
            return [_snooze(r) for r in conn.execute(query).mappings()]

    def unlifted(self) -> builtins.list[Snooze]:
        """Every snooze not lifted, ended or not: a replayed transaction is judged by its own time."""
        query = select(_s).where(_s.c.lifted_at.is_(None)).order_by(_s.c.id)
        with self._db.read() as conn:
            return [_snooze(r) for r in conn.execute(query).mappings()]

    def stamp(self) -> tuple[int, int]:
        """Changes with every snooze set or lifted (the newest id, the number lifted): one cheap read,
        so running processes can poll it every few seconds."""
        query = select(func.coalesce(func.max(_s.c.id), 0), func.count(_s.c.lifted_at))
        with self._db.read() as conn:
            newest, lifted = conn.execute(query).one()
        return int(newest), int(lifted)

    @staticmethod
    def _get(conn: Connection, snooze_id: int) -> Snooze:
        row = conn.execute(select(_s).where(_s.c.id == snooze_id)).mappings().first()
        if row is None:
            raise SnoozeError(f"no snooze {snooze_id}", status=404)
        return _snooze(row)


__all__ = ["Snooze", "SnoozeError", "SnoozeRepository"]
