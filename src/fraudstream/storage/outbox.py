"""The transactional outbox and durable queue that the embedded broker runs on.

Accepting a batch writes the transactions and their queue messages in one database transaction, so
the HTTP 202 is only sent once nothing can be lost. Consumers claim messages under a lease: a consumer
that dies simply lets its lease run out, and the messages go to the next one (at-least-once delivery;
decisions are idempotent per ``transaction_id``, so a redelivery is harmless).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

from sqlalchemy import func, insert, or_, select, update

from fraudstream.events.transaction import Transaction
from fraudstream.storage import bulk, tables
from fraudstream.storage._bodies import differing, hashes_of, stored_hashes
from fraudstream.storage.database import Database
from fraudstream.storage.errors import BodyConflictError
from fraudstream.storage.rows import TRANSACTION_COLUMNS, body_hash, chunks, transaction_rows, unique_by

_q = tables.queue


@dataclass
class QueuedMessage:
    """A message claimed from the durable queue; ack its ``id`` once it has been handled."""

    id: int
    topic: str
    key: str | None
    payload: dict[str, Any]
    created_at: datetime
    deliveries: int = 1  # this claim included


class QueueRepository:
    """Outbox writes and the queue operations: publish, claim, ack, pending, trim."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def accept(
        self, transactions: list[Transaction], topic: str = "transactions", *, enqueue: bool = True
    ) -> list[str]:
        """Durably accept a batch: store the new transactions and enqueue one message for each.

        Transactions already stored are skipped, in the store and in the queue, so a client retrying a
        request never causes a second decision. Returns
        the ids that were new, in input order. An id known with a different body, or repeated in the
        batch with a different body, raises :class:`BodyConflictError` naming them, and nothing of the
        batch is stored: an id names one transaction. Each transaction is encoded to JSON once, for its
        row and its message alike. Without ``enqueue`` only the rows are stored (status ``queued``): the
        caller publishes to an external broker itself, and calls :meth:`forget_queued` if that fails.
        """
        unique = unique_by(transactions, attrgetter("transaction_id"))
        if not unique:
            return []
        ts = bulk.timestamp_converter(self._db.dialect)
        now = ts(datetime.now(UTC))
        rows = transaction_rows(unique, now, tables.TX_QUEUED, ts)
        hashes = hashes_of(rows)
        if len(unique) < len(transactions):
            firsts = {id(tx) for tx in unique}
            repeats = [tx for tx in transactions if id(tx) not in firsts]
            clash = [tx.transaction_id for tx in repeats if body_hash(tx) != hashes[tx.transaction_id]]
            if clash:
                raise BodyConflictError(clash)
        with self._db.write() as conn:
            new = bulk.insert_new(conn, tables.transactions, TRANSACTION_COLUMNS, rows)
            if len(new) < len(rows):
                clash = differing(hashes, stored_hashes(conn, [r[0] for r in rows if r[0] not in new]))
                if clash:
                    raise BodyConflictError(clash)  # before the commit: nothing is stored
            # (topic, key = customer_id, payload, created_at), in input order so ids follow it.
            if enqueue:
                messages = [(topic, row[3], row[8], now) for row in rows if row[0] in new]
                bulk.append(conn, _q, ("topic", "key", "payload", "created_at"), messages)
        return [row[0] for row in rows if row[0] in new]

    def forget_queued(self, transaction_ids: list[str]) -> int:
        """Delete transactions still ``queued`` (accepted, never decided), so that a retry of the same
        ids is accepted afresh after publishing them failed; how many rows went."""
        deleted = 0
        with self._db.write() as conn:
            for chunk in chunks(transaction_ids):
                statement = tables.transactions.delete().where(
                    tables.transactions.c.transaction_id.in_(chunk),
                    tables.transactions.c.status == tables.TX_QUEUED,
                )
                deleted += conn.execute(statement).rowcount
        return deleted

    def publish(self, topic: str, messages: list[tuple[str | None, dict[str, Any]]]) -> list[int]:
        """Append ``(key, payload)`` messages to ``topic``; their ids, in the order given."""
        if not messages:
            return []
        now = datetime.now(UTC)
        rows = [
            {"topic": topic, "key": key, "payload": payload, "created_at": now} for key, payload in messages
        ]
        statement = insert(_q).returning(_q.c.id, sort_by_parameter_order=True)
        with self._db.write() as conn:
            return [int(i) for i in conn.execute(statement, rows).scalars()]

    def claim(self, topic: str, consumer: str, limit: int, lease_seconds: float) -> list[QueuedMessage]:
        """Claim up to ``limit`` unacknowledged messages of ``topic``, oldest first, for ``lease_seconds``.

        A message is handed out again only once its lease has expired without an ack, which is how the
        messages of a crashed consumer are redelivered. Two consumers never hold the same message: SQLite
        serialises claims with ``BEGIN IMMEDIATE``, PostgreSQL skips rows another claim has locked.
        A lease counts as expired by the *claimer's* ``lease_seconds``, so give every consumer of a topic
        the same lease.
        """
        if limit <= 0:
            return []
        now = datetime.now(UTC)
        expired = now - timedelta(seconds=lease_seconds)
        query = (
            select(_q.c.id, _q.c.topic, _q.c.key, _q.c.payload, _q.c.created_at, _q.c.deliveries)
            .where(_q.c.topic == topic, _q.c.acked_at.is_(None))
            .where(or_(_q.c.claimed_at.is_(None), _q.c.claimed_at < expired))
            .order_by(_q.c.id)
            .limit(limit)
        )
        query = self._db.vendor.claimable(query)
        with self._db.write() as conn:
            rows = conn.execute(query).all()
            if rows:
                conn.execute(
                    update(_q)
                    .where(_q.c.id.in_([row.id for row in rows]))
                    .values(claimed_by=consumer, claimed_at=now, deliveries=_q.c.deliveries + 1)
                )
        return [
            QueuedMessage(
                id=row.id,
                topic=row.topic,
                key=row.key,
                payload=row.payload,
                created_at=row.created_at,
                deliveries=row.deliveries + 1,
            )
            for row in rows
        ]

    def ack(self, ids: list[int]) -> None:
        """Mark messages as handled: they are never delivered again and no longer count as lag."""
        if not ids:
            return
        now = datetime.now(UTC)
        with self._db.write() as conn:
            for chunk in chunks(ids):
                conn.execute(
                    update(_q).where(_q.c.id.in_(chunk), _q.c.acked_at.is_(None)).values(acked_at=now)
                )

    def release(self, ids: list[int], consumer: str) -> None:
        """End ``consumer``'s claim on messages it did not acknowledge, so the next claim takes them at
        once instead of after the lease: it could not finish them (the database failed mid-batch). The
        delivery is given back too, since nothing was tried. Messages another consumer has claimed
        since (the lease ran out meanwhile) stay theirs."""
        if not ids:
            return
        with self._db.write() as conn:
            for chunk in chunks(ids):
                conn.execute(
                    update(_q)
                    .where(_q.c.id.in_(chunk), _q.c.acked_at.is_(None), _q.c.claimed_by == consumer)
                    .values(claimed_by=None, claimed_at=None, deliveries=_q.c.deliveries - 1)
                )

    def pending(self, topic: str) -> int:
        """Messages of ``topic`` not yet acknowledged, claimed or not: the consumer lag."""
        query = select(func.count()).select_from(_q).where(_q.c.topic == topic, _q.c.acked_at.is_(None))
        with self._db.read() as conn:
            return int(conn.execute(query).scalar_one())

    def trim_acked(self, older_than: datetime) -> int:
        """Delete messages acknowledged before ``older_than``, keeping the log small; how many went."""
        statement = _q.delete().where(_q.c.acked_at.is_not(None), _q.c.acked_at < older_than)
        with self._db.write() as conn:
            return int(conn.execute(statement).rowcount)
