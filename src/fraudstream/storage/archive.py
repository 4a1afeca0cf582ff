"""``ArchiveRepository``: what the object-store archive has written, and the rows of its next batch.

The archive (:mod:`fraudstream.archive`) copies two streams out of the store in batches: decisions with
their transactions, keyed by ``(decided_at, transaction_id)``, and labels, keyed by ``(received_at, id)``
(a label that changes verdict gets a new ``received_at``, so it is archived again, as its new verdict).
Each stream has one row in ``archive_watermarks``: the key of the last row archived (the watermark), the
number of the next batch, and while a batch is being written the key it ends at.

Exactly once, across crashes and concurrent archivers:

- A batch's rows are fixed before any object is written: :meth:`ArchiveRepository.next_batch` records the
  key it ends at (``pending``) under a lock on the stream's row, and a pending batch is handed out again,
  with the same number and the same rows, until :meth:`ArchiveRepository.finish` moves the watermark past
  it. Object names are made from the batch number, so a batch written again after a crash overwrites the
  same objects instead of adding to them.
- Only rows stored at least ``settle`` ago are taken. Keys come from the clocks of the processes that
  write them and rows commit a little after they are stamped (a batch at a time, and transactions on
  PostgreSQL commit out of order), so a row stamped before the watermark could otherwise commit after
  it and never be archived. The settle time must exceed the longest such delay; the default is minutes
  for commits that take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, select, true, tuple_, update

from fraudstream.storage import tables
from fraudstream.storage.database import Database, loads

_w = tables.archive_watermarks
_d = tables.decisions
_t = tables.transactions
_l = tables.labels

DECISIONS = "decisions"
LABELS = "labels"
#: The archived streams, in the order a pass writes them.
STREAMS = (DECISIONS, LABELS)
#: The columns of ``decisions`` archived: all of them, the logged feature vector (``feature_values``, in
#: the order of the names ``feature_set`` names in ``feature_sets``) and the explanation (``explanation``,
#: read with the words ``explainer`` names in ``explainers``) included.
DECISION_COLUMNS = (
    "transaction_id", "decided_at", "timestamp", "customer_id", "amount", "decision", "probability",
    "reasons", "rules", "model_version", "rules_version", "shadow_version", "shadow_probability",
    "shadow_decision", "latency_ms", "feature_set", "feature_values", "aggregates", "explainer",
    "explanation",
)  # fmt: skip


@dataclass(frozen=True)
class Key:
    """A row's place in its stream: the time it was stored and its id, as text."""

    at: datetime
    id: str


@dataclass(frozen=True)
class Batch:
    """Rows of one stream after ``after`` (the watermark; ``None``: from the start) up to and including
    ``through``, numbered ``number`` within the stream."""

    stream: str
    number: int
    after: Key | None
    through: Key


@dataclass(frozen=True)
class Watermark:
    """How far a stream is archived: its next batch number, the last key written, the batch pending."""

    stream: str
    batch: int
    done: Key | None
    pending: Key | None
    updated_at: datetime


def _key_columns(stream: str) -> tuple[Any, Any]:
    if stream == DECISIONS:
        return _d.c.decided_at, _d.c.transaction_id
    if stream == LABELS:
        return _l.c.received_at, _l.c.id
    raise ValueError(f"stream: expected one of {', '.join(STREAMS)}, got {stream!r}")


def _id_value(stream: str, key_id: str) -> Any:
    return int(key_id) if stream == LABELS else key_id


def _range(stream: str, after: Key | None, through: Key | None) -> ColumnElement[bool]:
    time, ident = _key_columns(stream)
    conditions = []
    if after is not None:
        conditions.append(tuple_(time, ident) > tuple_(after.at, _id_value(stream, after.id)))
    if through is not None:
        conditions.append(tuple_(time, ident) <= tuple_(through.at, _id_value(stream, through.id)))
    return and_(true(), *conditions)


def _key(at: datetime | None, key_id: str | None) -> Key | None:
    return None if at is None or key_id is None else Key(at, key_id)


class ArchiveRepository:
    """The archive's watermarks, its batches, and the rows a batch holds."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def watermarks(self) -> list[Watermark]:
        """Every stream's watermark, in :data:`STREAMS` order (a stream never archived is absent)."""
        with self._db.read() as conn:
            rows = {row.stream: row for row in conn.execute(select(_w))}
        return [
            Watermark(
                row.stream,
                row.batch,
                _key(row.done_at, row.done_key),
                _key(row.pending_at, row.pending_key),
                row.updated_at,
            )
            for name in STREAMS
            if (row := rows.get(name)) is not None
        ]

    def next_batch(self, stream: str, *, before: datetime, rows: int) -> Batch | None:
        """The batch of ``stream`` to write next, or ``None`` when nothing is left to archive.

        A batch left pending (its writer crashed, or is still writing) comes back unchanged. Otherwise
        the next at most ``rows`` rows after the watermark stored before ``before`` become the pending
        batch, recorded in the same transaction that chose them.
        """
        if rows < 1:
            raise ValueError("rows: must be at least 1")
        time, ident = _key_columns(stream)
        with self._db.write() as conn:
            mark = self._locked(conn, stream)
            done = _key(mark.done_at, mark.done_key)
            pending = _key(mark.pending_at, mark.pending_key)
            if pending is not None:
                return Batch(stream, mark.batch, done, pending)
            # the batch ends at the last of the next ``rows`` rows (the newest, when fewer are left)
            window = (
                select(time.label("at"), ident.label("key"))
                .where(_range(stream, done, None), time < before)
                .order_by(time, ident)
                .limit(rows)
                .subquery()
            )
            last = conn.execute(
                select(window.c.at, window.c.key).order_by(window.c.at.desc(), window.c.key.desc()).limit(1)
            ).first()
            if last is None:
                return None
            through = Key(last[0], str(last[1]))
            conn.execute(
                update(_w)
                .where(_w.c.stream == stream)
                .values(pending_at=through.at, pending_key=through.id, updated_at=datetime.now(UTC))
            )
        return Batch(stream, mark.batch, done, through)

    def finish(self, batch: Batch) -> bool:
        """Move the watermark past a written batch; ``False`` if another archiver already did."""
        with self._db.write() as conn:
            done = conn.execute(
                update(_w)
                .where(_w.c.stream == batch.stream, _w.c.batch == batch.number)
                .values(
                    batch=batch.number + 1,
                    done_at=batch.through.at,
                    done_key=batch.through.id,
                    pending_at=None,
                    pending_key=None,
                    updated_at=datetime.now(UTC),
                )
            )
        return bool(done.rowcount)

    def decisions(self, batch: Batch) -> list[dict[str, Any]]:
        """The decisions of a ``decisions`` batch in key order, each with its transaction's stored
        columns and body (``payload``; ``None`` where a replay stored the decision alone)."""
        if batch.stream != DECISIONS:
            raise ValueError(f"batch: expected a {DECISIONS} batch, got {batch.stream!r}")
        query = (
            select(
                *(_d.c[name] for name in DECISION_COLUMNS),
                _t.c.received_at, _t.c.merchant_id, _t.c.device_id, _t.c.ip_address, _t.c.payload,
            )
            .select_from(_d.outerjoin(_t, _t.c.transaction_id == _d.c.transaction_id))
            .where(_range(DECISIONS, batch.after, batch.through))
            .order_by(_d.c.decided_at, _d.c.transaction_id)
        )  # fmt: skip
        with self._db.read() as conn:
            out = [dict(row) for row in conn.execute(query).mappings()]
        for row in out:
            if isinstance(row["payload"], str | bytes):
                row["payload"] = loads(row["payload"])
        return out

    def feature_names(self, ids: list[str]) -> dict[str, list[str]]:
        """The feature names of each of the feature sets ``ids`` (ids of ``decisions.feature_set``)."""
        _fs = tables.feature_sets
        with self._db.read() as conn:
            rows = conn.execute(select(_fs.c.id, _fs.c.names).where(_fs.c.id.in_(ids))).all()
        return {row[0]: list(loads(row[1]) if isinstance(row[1], str | bytes) else row[1]) for row in rows}

    def explainer_words(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The words of each of the explainers ``ids`` (ids of ``decisions.explainer``)."""
        _ex = tables.explainers
        with self._db.read() as conn:
            rows = conn.execute(select(_ex.c.id, _ex.c.words).where(_ex.c.id.in_(ids))).all()
        return {row[0]: dict(loads(row[1]) if isinstance(row[1], str | bytes) else row[1]) for row in rows}

    def labels(self, batch: Batch) -> list[dict[str, Any]]:
        """The label rows of a ``labels`` batch in key order: each source's verdict as it stood."""
        if batch.stream != LABELS:
            raise ValueError(f"batch: expected a {LABELS} batch, got {batch.stream!r}")
        query = (
            select(_l).where(_range(LABELS, batch.after, batch.through)).order_by(_l.c.received_at, _l.c.id)
        )
        with self._db.read() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def _locked(self, conn: Connection, stream: str) -> Any:
        """The stream's watermark row, created if missing, locked until the transaction ends."""
        self._db.insert_ignore(
            conn, _w, [{"stream": stream, "batch": 0, "updated_at": datetime.now(UTC)}], "stream"
        )
        return conn.execute(select(_w).where(_w.c.stream == stream).with_for_update()).one()


__all__ = ["DECISIONS", "LABELS", "STREAMS", "ArchiveRepository", "Batch", "Key", "Watermark"]
