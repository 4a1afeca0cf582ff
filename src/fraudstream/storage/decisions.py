"""``DecisionRepository``: decisions and the transactions they were made for, read and written.

Every write takes a list and runs as one transaction with one statement per table, because the
engine decides in micro-batches and a commit per row would cap throughput at the disk's fsync rate.
A decision is committed before anyone is told of it, so every read sees every decision answered.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import case, func, null, select, true, tuple_, union, union_all

from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.events.transaction import FLAGGED, Transaction
from fraudstream.storage import tables
from fraudstream.storage._saving import DecisionSaver
from fraudstream.storage.database import Database
from fraudstream.storage.rollup import decision_counts
from fraudstream.storage.rows import (
    chunks,
    decode_cursor,
    dicts,
    encode_cursor,
    stored_body_hash,
)

#: Latency percentiles in :meth:`DecisionRepository.stats` come from at most this many of the newest
#: decisions.
LATENCY_SAMPLE = 20_000
#: :meth:`DecisionRepository.stats` also gives the throughput over this many of the window's newest seconds.
RECENT_SECONDS = 60.0


class Known(NamedTuple):
    """What storage holds of a transaction id: whether it is decided, and its stored body's hash."""

    decided: bool
    body_hash: str | None


_d = tables.decisions
_t = tables.transactions
_l = tables.labels
_fs = tables.feature_sets


class DecisionRepository:
    """Storing decisions; reading decisions, transactions, stats and customer histories."""

    def __init__(self, db: Database, saver: DecisionSaver) -> None:
        self._db = db
        self._saver = saver

    def save(
        self,
        records: builtins.list[DecisionRecord] | DecisionColumns,
        transactions: builtins.list[Transaction] | None = None,
        *,
        clashes: set[str] | None = None,
    ) -> builtins.list[str]:
        """Store decisions and mark their transactions decided; the ids decided for the first time.

        The first decision for a transaction wins: a replayed or changed record is ignored, never
        overwritten. ``transactions`` (the synchronous API path, which skips the queue's ``accept``)
        are stored too when not already known; a decision made for a transaction whose id is stored with
        another body is not stored (one id, one body), and its id is added to ``clashes``. A scored
        batch's :class:`DecisionColumns` are stored without making a record per row. One transaction, one
        bulk statement per table, or on SQLite one per row for the score API's few rows (see :mod:`.bulk`).
        The decisions are expected to be new (callers look them up before scoring), so PostgreSQL copies
        them without looking again; a batch that does hold stored ones costs a second pass, with the
        same result.
        """
        return self._saver.save(records, transactions, clashes=clashes)

    def decided_payloads(self, since: datetime, limit: int = 5_000_000) -> builtins.list[dict[str, Any]]:
        """Payloads of decided transactions from ``since`` on, oldest first: to rebuild in-memory state."""
        query = (
            select(_t.c.payload)
            .where(_t.c.status == tables.TX_DECIDED, _t.c.timestamp >= since)
            .order_by(_t.c.timestamp, _t.c.transaction_id)
            .limit(limit)
        )
        with self._db.read() as conn:
            return list(conn.execute(query).scalars())

    def payloads_decided_since(
        self, since: datetime, limit: int = 5_000_000
    ) -> builtins.list[dict[str, Any]]:
        """Payloads of the transactions decided at or after ``since`` (by decision time, not event time),
        in event-time order: what a state warmed from :meth:`decided_payloads` a while ago lacks of the
        decisions made meanwhile. Decisions stored without their transaction (a replay's) have none."""
        query = (
            select(_t.c.payload)
            .join(_d, _d.c.transaction_id == _t.c.transaction_id)
            .where(_d.c.decided_at >= since)
            .order_by(_t.c.timestamp, _t.c.transaction_id)
            .limit(limit)
        )
        with self._db.read() as conn:
            return list(conn.execute(query).scalars())

    def newest_decided_timestamp(self) -> datetime | None:
        """Event time of the newest decided transaction: where rebuilt feature state must reach."""
        with self._db.read() as conn:
            return conn.execute(
                select(func.max(_t.c.timestamp)).where(_t.c.status == tables.TX_DECIDED)
            ).scalar()

    def get_transaction(self, transaction_id: str) -> dict[str, Any] | None:
        """The stored transaction row (with ``status`` and the full ``payload``), or ``None``."""
        with self._db.read() as conn:
            row = conn.execute(select(_t).where(_t.c.transaction_id == transaction_id)).mappings().first()
        return None if row is None else dict(row)

    def get(self, transaction_id: str) -> DecisionRecord | None:
        """The decision made for a transaction, or ``None`` if it has not been decided."""
        return self.get_many([transaction_id]).get(transaction_id)

    def get_many(self, ids: builtins.list[str]) -> dict[str, DecisionRecord]:
        """The decisions made for those of ``ids`` that are decided, by id, in one query per chunk."""
        out: dict[str, DecisionRecord] = {}
        with self._db.read() as conn:
            for chunk in chunks([i for i in dict.fromkeys(ids) if i not in out]):
                rows = conn.execute(select(_d).where(_d.c.transaction_id.in_(chunk))).mappings()
                out.update((r.transaction_id, r) for r in self._saver.records(conn, rows))
        return out

    def body_hashes(self, ids: builtins.list[str]) -> dict[str, str]:
        """The body hash (:func:`~.rows.body_hash`) of each of ``ids`` whose transaction is stored: what
        a transaction sent again under its id must match. A decision stored without its transaction (a
        replay's) has none."""
        out: dict[str, str] = {}
        with self._db.read() as conn:
            for chunk in chunks([i for i in dict.fromkeys(ids) if i not in out]):
                query = select(_t.c.transaction_id, _t.c.body_hash).where(_t.c.transaction_id.in_(chunk))
                rows = conn.execute(query).all()
                legacy = [i for i, h in rows if h is None]
                payloads = dict(
                    conn.execute(
                        select(_t.c.transaction_id, _t.c.payload).where(_t.c.transaction_id.in_(legacy))
                    ).all()
                    if legacy
                    else ()
                )
                for i, h in rows:
                    found = stored_body_hash(h, payloads.get(i))
                    if found is not None:
                        out[i] = found
        return out

    def known(self, ids: builtins.list[str]) -> dict[str, Known]:
        """What storage knows of each of ``ids`` it holds, in one query per chunk: whether it is decided,
        and the body hash of its stored transaction (``None`` for a decision stored without one, as a
        replay's). The decider's de-duplication step asks this once per batch."""
        out: dict[str, Known] = {}
        decided = select(_d.c.transaction_id).where(_d.c.transaction_id == _t.c.transaction_id).exists()
        legacy = case((_t.c.body_hash.is_(None), _t.c.payload), else_=None)
        with self._db.read() as conn:
            for chunk in chunks(builtins.list(dict.fromkeys(ids))):
                with_body = select(_t.c.transaction_id, _t.c.body_hash, legacy, decided).where(
                    _t.c.transaction_id.in_(chunk)
                )
                alone = select(_d.c.transaction_id, null(), null(), true()).where(
                    _d.c.transaction_id.in_(chunk),
                    ~select(_t.c.transaction_id).where(_t.c.transaction_id == _d.c.transaction_id).exists(),
                )
                for tx_id, stored, payload, is_decided in conn.execute(union_all(with_body, alone)):
                    unstored = stored is None and payload is None
                    out[tx_id] = Known(
                        bool(is_decided), None if unstored else stored_body_hash(stored, payload)
                    )
        return out

    def transaction_times(self, ids: builtins.list[str]) -> dict[str, datetime]:
        """The event time of each of ``ids`` the engine knows: stored as a transaction, or decided (a replay
        stores decisions without their transactions)."""
        out: dict[str, datetime] = {}
        with self._db.read() as conn:
            for table in (_t, _d):
                for chunk in chunks([i for i in dict.fromkeys(ids) if i not in out]):
                    query = select(table.c.transaction_id, table.c.timestamp).where(
                        table.c.transaction_id.in_(chunk)
                    )
                    out.update((i, ts) for i, ts in conn.execute(query))
        return out

    def decided_ids(self, ids: builtins.list[str]) -> set[str]:
        """Which of ``ids`` already have a decision, so a consumer can skip them before scoring."""
        found: set[str] = set()
        with self._db.read() as conn:
            for chunk in chunks([i for i in dict.fromkeys(ids) if i not in found]):
                found.update(
                    conn.execute(select(_d.c.transaction_id).where(_d.c.transaction_id.in_(chunk))).scalars()
                )
        return found

    def list(
        self,
        *,
        decision: str | None = None,
        customer_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[builtins.list[DecisionRecord], str | None]:
        """Decisions newest first, filtered, one page at a time; the cursor for the next page or ``None``.

        Keyset pagination on ``(decided_at, transaction_id)``: pages stay fast however deep, and rows
        written while paging never shift later pages. ``since`` is inclusive, ``until`` exclusive.
        The cursor is a row-value comparison, which both databases read as a range on the
        ``(…, decided_at, transaction_id)`` indexes, so a page costs ``limit`` index entries.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(_d)
        if decision is not None:
            query = query.where(_d.c.decision == decision)
        if customer_id is not None:
            query = query.where(_d.c.customer_id == customer_id)
        if since is not None:
            query = query.where(_d.c.decided_at >= since)
        if until is not None:
            query = query.where(_d.c.decided_at < until)
        if cursor is not None:
            at, after_id = decode_cursor(cursor)
            query = query.where(tuple_(_d.c.decided_at, _d.c.transaction_id) < tuple_(at, after_id))
        query = query.order_by(_d.c.decided_at.desc(), _d.c.transaction_id.desc()).limit(limit + 1)
        with self._db.read() as conn:
            page = self._saver.records(conn, conn.execute(query).mappings())
        if len(page) <= limit:
            return page, None
        page = page[:limit]
        return page, encode_cursor(page[-1].decided_at, page[-1].transaction_id)

    def feature_vectors(
        self, since: datetime, until: datetime | None = None, *, chunk: int = 50_000
    ) -> Iterator[tuple[builtins.list[str], np.ndarray, np.ndarray]]:
        """The feature vectors stored with the decisions made in ``[since, until)``, a chunk of at most
        ``chunk`` decisions at a time: each chunk's feature names, its matrix (decisions × features,
        NaN where a feature was missing) and the decisions' probabilities. Decisions made on another
        feature set come in chunks of their own. For drift reports over stored decisions.

        Each chunk is its own query, keyset-paged on ``(decided_at, transaction_id)``, so no read stays
        open while the caller works and memory follows the chunk, not the period.
        """
        query = select(
            _d.c.decided_at, _d.c.transaction_id, _d.c.feature_set, _d.c.feature_values, _d.c.probability
        )
        query = query.where(_d.c.decided_at >= since)
        if until is not None:
            query = query.where(_d.c.decided_at < until)
        query = query.order_by(_d.c.decided_at, _d.c.transaction_id)
        names: dict[str, builtins.list[str]] = {}
        after: tuple[datetime, str] | None = None
        while True:
            page = (
                query if after is None else query.where(tuple_(_d.c.decided_at, _d.c.transaction_id) > after)
            )
            with self._db.read() as conn:
                rows = conn.execute(page.limit(chunk)).all()
                missing = {r.feature_set for r in rows} - names.keys()
                if missing:
                    found = conn.execute(select(_fs.c.id, _fs.c.names).where(_fs.c.id.in_(sorted(missing))))
                    names.update((str(i), list(n)) for i, n in found)
            if not rows:
                return
            after = (rows[-1].decided_at, rows[-1].transaction_id)
            groups: dict[str, builtins.list[Any]] = {}
            for row in rows:
                groups.setdefault(row.feature_set, []).append(row)
            for set_id, members in groups.items():
                if set_id not in names:  # a vector whose names were never stored cannot be read
                    continue
                width = len(names[set_id])
                blob = b"".join(r.feature_values for r in members)
                X = np.frombuffer(blob, dtype="<f8").reshape(len(members), width)
                p = np.fromiter((r.probability for r in members), dtype=np.float64, count=len(members))
                yield names[set_id], X, p
            if len(rows) < chunk:
                return

    def counts(self, since: datetime) -> dict[str, int]:
        """Decisions by outcome since ``since`` (decision time), exactly, from the per-minute counts."""
        with self._db.read() as conn:
            return decision_counts(conn, since)

    def stats(self, since: datetime) -> dict[str, Any]:
        """Counts, flagged share, latency percentiles, throughput and fraud labels since ``since``.

        ``flagged_rate`` is the share of decisions other than APPROVE. ``throughput_per_s`` averages the
        span the window actually holds decisions over, from its first decision (at least a second):
        traffic that began a minute ago shows its rate, not a sixtieth of it in an hour's window;
        ``recent_throughput_per_s`` is the rate over the last :data:`RECENT_SECONDS` (or the window,
        when shorter), the rate flowing now. A dashboard asks every few seconds (an
        hour at 500/s is 1.8 M rows), so counts come from the per-minute counts (:mod:`.rollup`), all but
        the window's first part-minute, and latencies are ``latency_ms["total"]`` of the newest
        :data:`LATENCY_SAMPLE` decisions in the window, each read from its row.
        """
        now = datetime.now(UTC)
        in_window = _d.c.decided_at >= since
        fraud_labels = (
            select(func.count()).select_from(_l).where(_l.c.is_fraud.is_(True), _l.c.received_at >= since)
        )
        recent_since = max(since, now - timedelta(seconds=RECENT_SECONDS))
        with self._db.read() as conn:
            by_decision = decision_counts(conn, since)
            recent = sum(decision_counts(conn, recent_since).values())
            newest = (
                select(_d.c.latency_ms["total"].as_float())
                .where(in_window)
                .order_by(_d.c.decided_at.desc())
                .limit(LATENCY_SAMPLE)
            )
            totals = conn.execute(newest).scalars()
            latencies = np.array([value for value in totals if value is not None], dtype=float)
            labelled_fraud = int(conn.execute(fraud_labels).scalar_one())
            first = conn.execute(select(func.min(_d.c.decided_at)).where(in_window)).scalar()
        total = sum(by_decision.values())
        start = since if first is None else max(since, first)  # aware UTC: tables.UTCDateTime
        seconds = max((now - start).total_seconds(), 1.0)
        recent_seconds = max((now - recent_since).total_seconds(), 0.0)
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if latencies.size else (None, None, None)
        return {
            "total": total,
            "by_decision": by_decision,
            "flagged_rate": sum(by_decision.get(name, 0) for name in FLAGGED) / total if total else 0.0,
            "latency_ms": {
                "p50": None if p50 is None else float(p50),
                "p95": None if p95 is None else float(p95),
                "p99": None if p99 is None else float(p99),
            },
            "throughput_per_s": total / seconds if seconds > 0 else 0.0,
            "recent_throughput_per_s": recent / recent_seconds if recent_seconds > 0 else 0.0,
            "recent_s": recent_seconds,
            "labelled_fraud": labelled_fraud,
        }

    def customer_history(self, customer_id: str, limit: int = 50) -> dict[str, Any]:
        """A customer's most recent decisions and the labels on their transactions, newest first."""
        ids = union(
            select(_d.c.transaction_id).where(_d.c.customer_id == customer_id),
            select(_t.c.transaction_id).where(_t.c.customer_id == customer_id),
        )
        labels_query = (
            select(_l)
            .where(_l.c.transaction_id.in_(select(ids.subquery().c.transaction_id)))
            .order_by(_l.c.label_time.desc(), _l.c.id.desc())
            .limit(limit)
        )
        decisions_query = (
            select(_d)
            .where(_d.c.customer_id == customer_id)
            .order_by(_d.c.decided_at.desc(), _d.c.transaction_id.desc())
            .limit(limit)
        )
        with self._db.read() as conn:
            decisions = self._saver.records(conn, conn.execute(decisions_query).mappings())
            labels = dicts(conn.execute(labels_query).mappings())
        return {"customer_id": customer_id, "decisions": decisions, "labels": labels}
