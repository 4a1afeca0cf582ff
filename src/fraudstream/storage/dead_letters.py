"""The dead letters: input that could not be decided, kept with the reason until someone sends it back.

A message lands here when it is not a valid transaction, when scoring it raised, or when it was
delivered too often without an ack (it kept killing workers). Once the cause is fixed (a rules file, a
model, a crashing library), :mod:`fraudstream.worker.redrive` publishes the dead letters again and
removes them here, as a dead-letter queue's "redrive" does.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, select, update

from fraudstream.storage import bulk, tables
from fraudstream.storage.database import Database
from fraudstream.storage.rows import chunks, dicts

_dl = tables.dead_letters
_t = tables.transactions


def _move(conn: Connection, transaction_ids: Sequence[str], to: str, where: ColumnElement[bool]) -> int:
    """Set the status of those of ``transaction_ids`` that match ``where`` to ``to``; how many moved."""
    moved = 0
    for chunk in chunks(list(transaction_ids)):
        statement = update(_t).where(_t.c.transaction_id.in_(chunk), where).values(status=to)
        moved += conn.execute(statement).rowcount
    return moved


def _storable(text: object) -> str:
    """Text any database column holds: NUL as the four characters ``\\x00`` (PostgreSQL text cannot hold
    it), and text that is not valid Unicode (a lone surrogate) with the bad code points escaped."""
    out = str(text).replace("\x00", "\\x00")
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        out = out.encode("utf-8", "backslashreplace").decode("utf-8")
    return out


def _mark_dead(conn: Connection, transaction_ids: Sequence[str]) -> int:
    return _move(conn, transaction_ids, tables.TX_DEAD, _t.c.status != tables.TX_DECIDED)


class DeadLetterRepository:
    """Keeping, listing and removing dead letters."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, items: builtins.list[tuple[str, str, str]], dead: Sequence[str] = ()) -> None:
        """Keep input that could not be processed, as ``(source, payload text, reason)``, for inspection,
        and set the transactions ``dead`` to status ``dead`` (see :meth:`mark_dead`), in one transaction.

        NUL characters are stored as the four characters ``\\x00`` (PostgreSQL text cannot hold them), and
        lone surrogates escaped, so that garbage input can never make the dead-letter write itself fail.
        """
        if not items and not dead:
            return
        now = bulk.timestamp_converter(self._db.dialect)(datetime.now(UTC))
        rows = [(now, *(_storable(text) for text in item)) for item in items]
        with self._db.write() as conn:
            if rows:
                bulk.append(conn, _dl, ("created_at", "source", "payload", "reason"), rows)
            _mark_dead(conn, dead)

    def mark_dead(self, transaction_ids: Sequence[str]) -> int:
        """Set transactions that could not be decided to status ``dead``, unless they were decided after
        all (another copy, another process); how many rows changed."""
        with self._db.write() as conn:
            return _mark_dead(conn, transaction_ids)

    def list(
        self, limit: int = 100, *, before: int | None = None, after: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Dead letters newest first, those with an id below ``before`` when given; with ``after``,
        oldest first from the one after that id instead (to work through all of them in order)."""
        query = select(_dl).limit(limit)
        if after is not None:
            query = query.where(_dl.c.id > after).order_by(_dl.c.id)
        else:
            query = query.order_by(_dl.c.id.desc())
            if before is not None:
                query = query.where(_dl.c.id < before)
        with self._db.read() as conn:
            return dicts(conn.execute(query).mappings())

    def get(self, ids: Sequence[int]) -> builtins.list[dict[str, Any]]:
        """The dead letters with these ids that exist, oldest first."""
        found: builtins.list[dict[str, Any]] = []
        with self._db.read() as conn:
            for chunk in chunks(sorted(set(ids))):
                query = select(_dl).where(_dl.c.id.in_(chunk)).order_by(_dl.c.id)
                found += dicts(conn.execute(query).mappings())
        return found

    def remove(self, ids: Sequence[int], requeued: Sequence[str] = ()) -> int:
        """Delete dead letters that were sent back, and set their transactions that were ``dead`` back
        to ``queued``, in one database transaction; how many dead letters went."""
        removed = 0
        with self._db.write() as conn:
            for chunk in chunks(list(ids)):
                removed += conn.execute(delete(_dl).where(_dl.c.id.in_(chunk))).rowcount
            _move(conn, requeued, tables.TX_QUEUED, _t.c.status == tables.TX_DEAD)
        return removed
