"""``Store``: the one store behind the engine and the API, on SQLite (embedded) or PostgreSQL.

Every write takes a list and runs as one transaction with one statement per table, because the
engine decides in micro-batches and a commit per row would cap throughput at the disk's fsync rate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select, tuple_, union

from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.events.transaction import Transaction
from fraudstream.storage import bulk, tables
from fraudstream.storage._held import HeldStore
from fraudstream.storage._labels import LabelStore
from fraudstream.storage.alerting import AlertStore
from fraudstream.storage.columns import ColumnRows
from fraudstream.storage.dead_letters import DeadLetterStore
from fraudstream.storage.errors import StorageError
from fraudstream.storage.outbox import QueueStore
from fraudstream.storage.rollup import decision_counts, epoch, minute_rows
from fraudstream.storage.rows import (
    body_hash,
    chunks,
    decision_from_row,
    decision_rows,
    decode_cursor,
    dicts,
    encode_cursor,
    pack_features,
    stored_body_hash,
    stored_total,
    transaction_rows,
    unique_by,
)

FLAGGED = ("FLAG", "BLOCK")
#: Latency percentiles in :meth:`Store.stats` come from at most this many of the newest decisions.
LATENCY_SAMPLE = 20_000
#: :meth:`Store.stats` also gives the throughput over this many of the window's newest seconds.
RECENT_SECONDS = 60.0
_transaction_id = attrgetter("transaction_id")
_BUILD_SLICE = 500

_d = tables.decisions
_t = tables.transactions
_l = tables.labels
_fs = tables.feature_sets


class Store(HeldStore, AlertStore, LabelStore, DeadLetterStore, QueueStore):
    """Transactions, decisions, labels, alerts, dead letters and the queue, in one database.

    ``Store("sqlite:///fraudstream-data/fraud.db")`` or ``Store("postgresql+psycopg://...")``; nothing
    connects until first use. Call :meth:`migrate` once at start-up. Safe to share between threads.
    """

    def save_decisions(
        self,
        records: list[DecisionRecord] | DecisionColumns,
        transactions: list[Transaction] | None = None,
        *,
        clashes: set[str] | None = None,
    ) -> list[str]:
        """Store decisions and mark their transactions decided; the ids decided for the first time.

        The first decision for a transaction wins: a replayed or changed record is ignored, never
        overwritten, and one for a transaction whose decision is held (:meth:`hold_decisions`) is left
        to the held one. ``transactions`` (the synchronous API path, which skips :meth:`accept`) are stored
        too when not already known; a decision made for a transaction whose id is stored with another
        body is not stored (one id, one body), and its id is added to ``clashes``. A scored batch's
        :class:`DecisionColumns` are stored without making a record per row. One transaction, one bulk
        statement per table, or on SQLite one per row for the score API's few rows (see :mod:`.bulk`).
        The decisions are expected to be new (callers look them up before scoring), so PostgreSQL copies
        them without looking again; a batch that does hold stored ones costs a second pass, with the
        same result.
        """
        return self._save(records, transactions, clashes=clashes)

    def _save(
        self,
        records: list[DecisionRecord] | DecisionColumns,
        transactions: list[Transaction] | None,
        *,
        leave_held: bool = True,
        clashes: set[str] | None = None,
    ) -> list[str]:
        ts = bulk.timestamp_converter(self.dialect, memo=True)
        keys, build, names, per_minute = self._decision_builder(records, ts)
        if not keys and not transactions:
            return []
        tx_rows = None
        if transactions:
            unique = unique_by(transactions, _transaction_id)
            tx_rows = transaction_rows(unique, ts(datetime.now(UTC)), tables.TX_DECIDED, ts)
        with self._bulk_write() as conn:
            fresh = self._write_decisions(
                conn, keys, build, per_minute, tx_rows, leave_held=leave_held, clashes=clashes
            )
            self._add_feature_sets(conn, names)
        self._feature_names.update(names)
        return fresh

    def hold_decisions(
        self,
        records: list[DecisionRecord],
        transactions: list[Transaction],
        *,
        clashes: set[str] | None = None,
    ) -> list[str]:
        """Make decisions as durable as stored ones by appending them to this process's journal, to be
        stored a group at a time by :meth:`release_held` (see :mod:`._held`); the ids decided for the
        first time. A decision for a transaction whose id is stored, or being accepted, with another body
        is not held, and its id is added to ``clashes``. Where the store does not hold (PostgreSQL,
        in-memory SQLite), this is :meth:`save_decisions`."""
        if not self.holds:
            return self.save_decisions(records, transactions, clashes=clashes)
        return self._hold(records, transactions, clashes)

    def _decision_builder(
        self, records: list[DecisionRecord] | DecisionColumns, ts: Callable[[datetime], Any]
    ) -> tuple[list[str], bulk.RowBuilder, dict[str, list[str]], Callable[[Sequence[int]], list[Any]]]:
        """The distinct transaction ids, a builder of their ``decisions`` rows by position, the
        feature sets those rows use (filled in as the builder runs, for records), and the rows at given
        positions counted per minute (:mod:`.rollup`)."""
        if isinstance(records, DecisionColumns):
            rows = ColumnRows(records, self.dialect)
            return rows.keys, rows.build, rows.names, rows.minute_rows
        records = unique_by(records, _transaction_id)
        names: dict[str, list[str]] = {}

        def build(at: Sequence[int]) -> Iterator[tuple[Any, ...]]:
            # In slices, so that PostgreSQL ingests one slice while the next is built.
            for lo in range(0, len(at), _BUILD_SLICE):
                chunk = [records[i] for i in at[lo : lo + _BUILD_SLICE]]
                set_ids, packed, chunk_names = pack_features([r.features for r in chunk])
                names.update(chunk_names)
                yield from decision_rows(chunk, set_ids, packed, ts)

        def per_minute(at: Sequence[int]) -> list[Any]:
            chosen = [records[i] for i in at]
            return minute_rows(
                (epoch(r.decided_at), r.decision, r.probability, stored_total(r.latency_ms)) for r in chosen
            )

        return [r.transaction_id for r in records], build, names, per_minute

    def _records(self, conn: Connection, rows: Iterable[Mapping[Any, Any]]) -> list[DecisionRecord]:
        """Decision rows as records, looking up the names of feature sets not seen before."""
        rows = list(rows)
        missing = {row["feature_set"] for row in rows} - self._feature_names.keys()
        if missing:
            found = conn.execute(select(_fs.c.id, _fs.c.names).where(_fs.c.id.in_(missing)))
            self._feature_names.update({str(i): list(n) for i, n in found})
        unknown = {row["feature_set"] for row in rows} - self._feature_names.keys()
        if unknown:
            raise StorageError(f"decisions refer to feature sets that are not stored: {sorted(unknown)}")
        return [decision_from_row(row, self._feature_names[row["feature_set"]]) for row in rows]

    def decided_payloads(self, since: datetime, limit: int = 5_000_000) -> list[dict[str, Any]]:
        """Payloads of decided transactions from ``since`` on, oldest first: to rebuild in-memory state."""
        query = (
            select(_t.c.payload)
            .where(_t.c.status == tables.TX_DECIDED, _t.c.timestamp >= since)
            .order_by(_t.c.timestamp, _t.c.transaction_id)
            .limit(limit)
        )
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def newest_decided_timestamp(self) -> datetime | None:
        """Event time of the newest decided transaction: where rebuilt feature state must reach."""
        with self._read() as conn:
            return conn.execute(
                select(func.max(_t.c.timestamp)).where(_t.c.status == tables.TX_DECIDED)
            ).scalar()

    def get_transaction(self, transaction_id: str) -> dict[str, Any] | None:
        """The stored transaction row (with ``status`` and the full ``payload``), or ``None``."""
        held = self._held_transaction(transaction_id)  # first: a release stores it before forgetting it
        if held is not None:
            return held
        with self._read() as conn:
            row = conn.execute(select(_t).where(_t.c.transaction_id == transaction_id)).mappings().first()
        return None if row is None else dict(row)

    def get_decision(self, transaction_id: str) -> DecisionRecord | None:
        """The decision made for a transaction, or ``None`` if it has not been decided."""
        return self.get_decisions([transaction_id]).get(transaction_id)

    def get_decisions(self, ids: list[str]) -> dict[str, DecisionRecord]:
        """The decisions made for those of ``ids`` that are decided, by id, in one query per chunk."""
        out = self._held_records(ids)  # first: a release stores them before forgetting them
        with self._read() as conn:
            for chunk in chunks([i for i in dict.fromkeys(ids) if i not in out]):
                rows = conn.execute(select(_d).where(_d.c.transaction_id.in_(chunk))).mappings()
                out.update((r.transaction_id, r) for r in self._records(conn, rows))
        return out

    def body_hashes(self, ids: list[str]) -> dict[str, str]:
        """The body hash (:func:`~.rows.body_hash`) of each of ``ids`` whose transaction is stored or held
        by this process: what a transaction sent again under its id must match. A decision stored
        without its transaction (a replay's) has none."""
        out = {i: body_hash(tx) for i, (_, tx) in self._held_entries(ids).items()}
        with self._read() as conn:
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

    def transaction_times(self, ids: list[str]) -> dict[str, datetime]:
        """The event time of each of ``ids`` the engine knows: stored or held by this process as a
        transaction, or decided (a replay stores decisions without their transactions)."""
        out = {i: tx.timestamp for i, (_, tx) in self._held_entries(ids).items()}
        with self._read() as conn:
            for table in (_t, _d):
                for chunk in chunks([i for i in dict.fromkeys(ids) if i not in out]):
                    query = select(table.c.transaction_id, table.c.timestamp).where(
                        table.c.transaction_id.in_(chunk)
                    )
                    out.update((i, ts) for i, ts in conn.execute(query))
        return out

    def decided_ids(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` already have a decision, so a consumer can skip them before scoring."""
        found = set(self._held_records(ids))  # first: a release stores them before forgetting them
        with self._read() as conn:
            for chunk in chunks([i for i in dict.fromkeys(ids) if i not in found]):
                found.update(
                    conn.execute(select(_d.c.transaction_id).where(_d.c.transaction_id.in_(chunk))).scalars()
                )
        return found

    def list_decisions(
        self,
        *,
        decision: str | None = None,
        customer_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[DecisionRecord], str | None]:
        """Decisions newest first, filtered, one page at a time; the cursor for the next page or ``None``.

        Keyset pagination on ``(decided_at, transaction_id)``: pages stay fast however deep, and rows
        written while paging never shift later pages. ``since`` is inclusive, ``until`` exclusive.
        The cursor is a row-value comparison, which both databases read as a range on the
        ``(…, decided_at, transaction_id)`` indexes, so a page costs ``limit`` index entries.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._release_for_reads()
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
        with self._read() as conn:
            page = self._records(conn, conn.execute(query).mappings())
        if len(page) <= limit:
            return page, None
        page = page[:limit]
        return page, encode_cursor(page[-1].decided_at, page[-1].transaction_id)

    def stats(self, since: datetime) -> dict[str, Any]:
        """Counts, flagged share, latency percentiles, throughput and fraud labels since ``since``.

        ``flagged_rate`` is the share of FLAG and BLOCK decisions. ``throughput_per_s`` averages the
        whole window, so an hour's window shows a fraction of a rate that began a minute ago;
        ``recent_throughput_per_s`` is the rate over the last :data:`RECENT_SECONDS` (or the window,
        when shorter), the rate flowing now. A dashboard asks every few seconds (an
        hour at 500/s is 1.8 M rows), so counts come from the per-minute counts (:mod:`.rollup`), all but
        the window's first part-minute, and latencies are ``latency_ms["total"]`` of the newest
        :data:`LATENCY_SAMPLE` decisions in the window, each read from its row.
        """
        self._release_for_reads()
        now = datetime.now(UTC)
        in_window = _d.c.decided_at >= since
        fraud_labels = (
            select(func.count()).select_from(_l).where(_l.c.is_fraud.is_(True), _l.c.received_at >= since)
        )
        recent_since = max(since, now - timedelta(seconds=RECENT_SECONDS))
        with self._read() as conn:
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
        total = sum(by_decision.values())
        seconds = (now - since).total_seconds()
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
        self._release_for_reads()
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
        with self._read() as conn:
            decisions = self._records(conn, conn.execute(decisions_query).mappings())
            labels = dicts(conn.execute(labels_query).mappings())
        return {"customer_id": customer_id, "decisions": decisions, "labels": labels}
