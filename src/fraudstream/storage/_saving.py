"""The one write that stores decisions with their transactions, and reading decision rows back as records.

:class:`~.decisions.DecisionRepository` stores through it. The same write runs on SQLite and
PostgreSQL: one transaction per call, so a caller's batch is one commit (the score API's micro-batch
is its group commit, docs/decisions/0025-one-commit-per-micro-batch.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, select

from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.events.explanation import Explainer
from fraudstream.events.transaction import Transaction
from fraudstream.storage import bulk, tables
from fraudstream.storage._bodies import differing, hashes_of, stored_hashes
from fraudstream.storage.columns import ColumnRows
from fraudstream.storage.database import Database, dumps
from fraudstream.storage.errors import StorageError
from fraudstream.storage.holds import HOLD_COLUMNS, PENDING
from fraudstream.storage.rollup import add_minutes, epoch, minute_rows
from fraudstream.storage.rows import (
    DECISION_COLUMNS,
    TRANSACTION_COLUMNS,
    decision_from_row,
    decision_rows,
    pack_features,
    stored_total,
    transaction_rows,
    unique_by,
)

_transaction_id = attrgetter("transaction_id")
HOLD = "HOLD"
_BUILD_SLICE = 500

_d = tables.decisions
_t = tables.transactions
_fs = tables.feature_sets
_ex = tables.explainers


class DecisionSaver:
    """Stores decisions with their transactions, and the feature sets' names and the explainers' words
    both ways."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # Feature-set id → names; content-addressed, so never stale.
        self._feature_names: dict[str, list[str]] = {}
        # Explainer id → its words; content-addressed too.
        self._explainers: dict[str, Explainer] = {}
        # Whether the last batch of transactions stored with decisions was all new (see save).
        self._transactions_new = False

    def save(
        self,
        records: list[DecisionRecord] | DecisionColumns,
        transactions: list[Transaction] | None,
        *,
        clashes: set[str] | None = None,
    ) -> list[str]:
        """Store decisions and mark their transactions decided, in one transaction; the ids decided for
        the first time (see :meth:`.decisions.DecisionRepository.save`)."""
        ts = bulk.timestamp_converter(self._db.dialect, memo=True)
        keys, build, names, per_minute, held, explainers = self._decision_builder(records, ts)
        if not keys and not transactions:
            return []
        tx_rows = None
        if transactions:
            unique = unique_by(transactions, _transaction_id)
            tx_rows = transaction_rows(unique, ts(datetime.now(UTC)), tables.TX_DECIDED, ts)
        with self._db.bulk_write() as conn:
            fresh = self._write_decisions(conn, keys, build, per_minute, held, tx_rows, clashes=clashes)
            self._add_feature_sets(conn, names)
            self._add_explainers(conn, explainers)
        self._feature_names.update(names)
        self._explainers.update(explainers)
        return fresh

    def _write_decisions(
        self,
        conn: Any,
        keys: Sequence[str],
        build: bulk.RowBuilder,
        per_minute: Any,
        held: Any,
        tx_rows: list[tuple[Any, ...]] | None,
        *,
        clashes: set[str] | None = None,
    ) -> list[str]:
        """Inside a write: insert the transactions not stored yet and the decisions not stored yet (built by
        position in ``keys``), mark the rest of the new decisions' transactions decided, open a hold for
        each new HOLD decision (see :mod:`.holds`) and count the new decisions per minute; the ids decided
        just now. A decision whose transaction was stored before
        with another body is left out (one id, one body), its id added to ``clashes``."""
        drop: set[str] = set()
        inserted: set[Any] = set()  # stored just now, already marked decided
        if tx_rows:
            # A worker fed straight by producers sees only new rows, one fed by the API's outbox
            # only stored ones: expect what the last batch had, and skip looking the keys up.
            inserted = bulk.insert_new(
                conn, _t, TRANSACTION_COLUMNS, tx_rows, expect_new=self._transactions_new
            )
            self._transactions_new = len(inserted) == len(tx_rows)
            known = [row for row in tx_rows if row[0] not in inserted and row[0] not in drop]
            if known:
                clash = differing(hashes_of(known), stored_hashes(conn, [row[0] for row in known]))
                drop.update(clash)
                if clashes is not None:
                    clashes.update(clash)
        if drop:
            keep = [i for i, key in enumerate(keys) if key not in drop]
            keys, whole_build, whole_minutes, whole_held = [keys[i] for i in keep], build, per_minute, held
            build = lambda at: whole_build([keep[j] for j in at])  # noqa: E731
            per_minute = lambda at: whole_minutes([keep[j] for j in at])  # noqa: E731
            held = lambda at: whole_held([keep[j] for j in at])  # noqa: E731
        new = bulk.insert_new_lazy(conn, _d, DECISION_COLUMNS, keys, build, expect_new=True)
        at = [i for i, key in enumerate(keys) if key in new]
        fresh = [keys[i] for i in at]
        bulk.set_column(conn, _t, "status", tables.TX_DECIDED, [k for k in fresh if k not in inserted])
        if not at:
            return fresh
        minutes = per_minute(at)
        if any(row[1] == HOLD for row in minutes):  # counted per outcome: most batches hold no HOLD
            bulk.insert_new(conn, tables.holds, HOLD_COLUMNS, held(at))
        # last: PostgreSQL writers wait for each other on these rows until they commit
        add_minutes(bulk.driver(conn), self._db.dialect, minutes)
        return fresh

    def _add_feature_sets(self, conn: Any, names: Mapping[str, list[str]]) -> None:
        unknown = [(k, dumps(v)) for k, v in names.items() if k not in self._feature_names]
        if unknown:  # no foreign key, so the names may follow the vectors that use them
            bulk.insert_new(conn, _fs, ("id", "names"), unknown)

    def _add_explainers(self, conn: Any, explainers: Mapping[str, Explainer]) -> None:
        unknown = [(k, dumps(e.to_dict())) for k, e in explainers.items() if k not in self._explainers]
        if unknown:  # as the feature sets: no foreign key, the words may follow the rows that use them
            bulk.insert_new(conn, _ex, ("id", "words"), unknown)

    def _decision_builder(
        self, records: list[DecisionRecord] | DecisionColumns, ts: Callable[[datetime], Any]
    ) -> tuple[
        list[str],
        bulk.RowBuilder,
        dict[str, list[str]],
        Callable[[Sequence[int]], list[Any]],
        Callable[[Sequence[int]], list[tuple[Any, ...]]],
        dict[str, Explainer],
    ]:
        """The distinct transaction ids, a builder of their ``decisions`` rows by position, the
        feature sets those rows use (filled in as the builder runs, for records), the rows at given
        positions counted per minute (:mod:`.rollup`), the ``holds`` rows of those of them that are
        HOLDs, and the explainers of their explanations."""
        if isinstance(records, DecisionColumns):
            rows = ColumnRows(records, self._db.dialect)
            return rows.keys, rows.build, rows.names, rows.minute_rows, rows.hold_rows, rows.explainers
        records = unique_by(records, _transaction_id)
        explained = [r.explanation.explainer for r in records if r.explanation is not None]
        explainers = {e.id: e for e in explained}
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

        def held(at: Sequence[int]) -> list[tuple[Any, ...]]:
            chosen = [records[i] for i in at]
            return [
                (r.transaction_id, r.customer_id, r.amount, ts(r.decided_at), PENDING)
                for r in chosen
                if r.decision == HOLD
            ]

        return [r.transaction_id for r in records], build, names, per_minute, held, explainers

    def records(self, conn: Connection, rows: Iterable[Mapping[Any, Any]]) -> list[DecisionRecord]:
        """Decision rows as records, looking up the names of feature sets and the explainers' words
        not seen before (an explanation whose words are not stored reads as none)."""
        rows = list(rows)
        missing = {row["feature_set"] for row in rows} - self._feature_names.keys()
        if missing:
            found = conn.execute(select(_fs.c.id, _fs.c.names).where(_fs.c.id.in_(missing)))
            self._feature_names.update({str(i): list(n) for i, n in found})
        unknown = {row["feature_set"] for row in rows} - self._feature_names.keys()
        if unknown:
            raise StorageError(f"decisions refer to feature sets that are not stored: {sorted(unknown)}")
        wanted = {row.get("explainer") for row in rows} - {None} - self._explainers.keys()
        if wanted:
            found = conn.execute(select(_ex.c.id, _ex.c.words).where(_ex.c.id.in_(wanted)))
            self._explainers.update({str(i): Explainer.from_dict(w) for i, w in found})
        explainers = self._explainers
        return [decision_from_row(row, self._feature_names[row["feature_set"]], explainers) for row in rows]
