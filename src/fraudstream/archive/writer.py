"""Writing the archive: the store's decisions, transactions and labels as date-partitioned Parquet.

Layout under the archive's root (``s3://bucket/prefix`` or a folder)::

    decisions/date=YYYY-MM-DD/part-NNNNNNNNNN.parquet      by the transaction's event date (UTC)
    transactions/date=YYYY-MM-DD/part-NNNNNNNNNN.parquet   the same rows' stored bodies
    labels/date=YYYY-MM-DD/part-NNNNNNNNNN.parquet         by the date the label was stored
    feature_sets/<id>.parquet                              the names of a logged feature vector

``NNNNNNNNNN`` is the batch number of the stream the object comes from (decisions and transactions share
the ``decisions`` stream's). One batch writes one object per dataset and date it holds, and its rows are
fixed in the database before it writes (see :mod:`fraudstream.storage.archive`), so a batch written again
after a crash overwrites the very objects it wrote before: every transaction is archived exactly once.
A local object is written under a hidden name and renamed, so a reader never sees half of one; an S3
object appears whole when its upload completes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fraudstream.archive.location import ArchiveError, Location, translate
from fraudstream.storage.archive import DECISIONS, LABELS, STREAMS, Batch
from fraudstream.storage.store import Store

_TIME = pa.timestamp("us", tz="UTC")
#: The schema of each archived dataset: fixed, so every object of a dataset reads back as one table.
SCHEMAS = {
    "decisions": pa.schema(
        [
            ("transaction_id", pa.string()), ("decided_at", _TIME), ("timestamp", _TIME),
            ("customer_id", pa.string()), ("amount", pa.float64()), ("decision", pa.string()),
            ("probability", pa.float64()), ("reasons", pa.string()), ("rules", pa.list_(pa.string())),
            ("model_version", pa.string()), ("rules_version", pa.string()),
            ("shadow_version", pa.string()), ("shadow_probability", pa.float64()),
            ("shadow_decision", pa.string()), ("latency_ms", pa.string()), ("feature_set", pa.string()),
            ("feature_values", pa.binary()), ("aggregates", pa.string()), ("explainer", pa.string()),
            ("explanation", pa.binary()),
        ]
    ),
    "transactions": pa.schema(
        [
            ("transaction_id", pa.string()), ("timestamp", _TIME), ("received_at", _TIME),
            ("customer_id", pa.string()), ("merchant_id", pa.string()), ("device_id", pa.string()),
            ("ip_address", pa.string()), ("amount", pa.float64()), ("body", pa.string()),
        ]
    ),
    "feature_sets": pa.schema([("id", pa.string()), ("names", pa.list_(pa.string()))]),
    "explainers": pa.schema([("id", pa.string()), ("words", pa.string())]),
    "labels": pa.schema(
        [
            ("id", pa.int64()), ("transaction_id", pa.string()), ("is_fraud", pa.bool_()),
            ("label_time", _TIME), ("source", pa.string()), ("received_at", _TIME),
        ]
    ),
}  # fmt: skip
#: The datasets partitioned by date, whose rows a pass counts.
DATASETS = ("decisions", "transactions", "labels")


@dataclass
class PassResult:
    """What one pass of :meth:`Archiver.run` wrote."""

    batches: int = 0
    objects: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DATASETS, 0))

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "objects": self.objects, "rows": dict(self.rows)}


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d")


def object_name(dataset: str, date: str, batch: int) -> str:
    """The object a batch writes for ``dataset`` and ``date``, relative to the archive's root."""
    return f"{dataset}/date={date}/part-{batch:010d}.parquet"


class Archiver:
    """Copies what the store holds into the archive at ``location``, batch by batch.

    ``batch_rows`` bounds the decisions (or labels) of a batch; rows stored less than ``settle`` ago
    wait for a later pass. Any number of archivers may run against one store and archive: they take
    turns on each stream's watermark, and a batch two of them write holds the same rows.
    """

    def __init__(self, store: Store, location: Location, *, batch_rows: int, settle: timedelta) -> None:
        self._store = store
        self._location = location
        self._batch_rows = batch_rows
        self._settle = settle
        self._written_sets: set[str] = set()
        self._written_explainers: set[str] = set()

    def run(self, *, now: datetime | None = None, max_batches: int | None = None) -> PassResult:
        """Archive everything stored before ``now`` - settle (``now``: this moment), stream by stream;
        stops early after ``max_batches`` batches."""
        before = (now or datetime.now(UTC)) - self._settle
        result = PassResult()
        for stream in STREAMS:
            while max_batches is None or result.batches < max_batches:
                batch = self._store.archive.next_batch(stream, before=before, rows=self._batch_rows)
                if batch is None:
                    break
                self._write(batch, result)
                self._store.archive.finish(batch)
                result.batches += 1
        return result

    def follow(
        self,
        interval: float,
        *,
        stop: Callable[[], bool] = lambda: False,
        report: Callable[[PassResult], None] | None = None,
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        """Run a pass every ``interval`` seconds until ``stop()`` says so (checked every second).

        With ``failed``, a pass that fails on the store or the database (unreachable, refused) is
        reported to it and tried again at the next interval, as a long-running service should; the
        batch it was writing stays pending and is written first. Without, the error is raised.
        """
        from fraudstream.storage.errors import StorageError

        while not stop():
            try:
                result = self.run()
            except (ArchiveError, StorageError) as exc:
                if failed is None:
                    raise
                failed(exc)
            else:
                if report is not None:
                    report(result)
            deadline = time.monotonic() + interval
            while not stop() and time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _write(self, batch: Batch, result: PassResult) -> None:
        if batch.stream == DECISIONS:
            rows = self._store.archive.decisions(batch)
            self._feature_sets({row["feature_set"] for row in rows})
            self._explainers({row["explainer"] for row in rows if row["explainer"] is not None})
            tables = {
                "decisions": (_decisions(rows), [_date(r["timestamp"]) for r in rows]),
                "transactions": _transactions(rows),
            }
        elif batch.stream == LABELS:
            labels = self._store.archive.labels(batch)
            tables = {"labels": (_labels(labels), [_date(r["received_at"]) for r in labels])}
        else:  # pragma: no cover - STREAMS names both
            raise ValueError(batch.stream)
        for dataset, (table, dates) in tables.items():
            for date, part in _by_date(table, dates):
                self._put(object_name(dataset, date, batch.number), part)
                result.objects += 1
            result.rows[dataset] += table.num_rows

    def _feature_sets(self, ids: set[str]) -> None:
        """The names of these feature sets, each in an object named by its id (a digest of the names),
        written before any decision that refers to it: a reader finds every vector's names."""
        self._referenced("feature_sets", ids, self._store.archive.feature_names, "names", self._written_sets)

    def _explainers(self, ids: set[str]) -> None:
        """The words of these explainers (JSON), each in an object named by its id (a digest of the
        words), written before any decision that refers to it: a reader can word every explanation."""
        self._referenced(
            "explainers", ids, self._store.archive.explainer_words, "words", self._written_explainers, _json
        )

    def _referenced(
        self,
        dataset: str,
        ids: set[str],
        read: Callable[[list[str]], dict[str, Any]],
        column: str,
        written: set[str],
        encode: Callable[[Any], Any] = lambda value: value,
    ) -> None:
        """One object ``<dataset>/<id>.parquet`` per id not yet ``written`` by this archiver, holding
        what ``read`` gives for it in ``column``: content named by its digest never changes."""
        fresh = ids - written
        if not fresh:
            return
        for key, value in sorted(read(sorted(fresh)).items()):
            table = pa.Table.from_pydict({"id": [key], column: [encode(value)]}, schema=SCHEMAS[dataset])
            self._put(f"{dataset}/{key}.parquet", table)
            written.add(key)

    def _put(self, name: str, table: pa.Table) -> None:
        location = self._location
        path = location.path(name)
        try:
            if location.local:
                folder, _, base = path.rpartition("/")
                location.fs.create_dir(folder, recursive=True)
                # a name of its own: two archivers writing one pending batch must not share a file
                hidden = f"{folder}/.{base}.{uuid.uuid4().hex}.tmp"
                pq.write_table(table, hidden, filesystem=location.fs, compression="zstd")
                location.fs.move(hidden, path)
            else:
                pq.write_table(table, path, filesystem=location.fs, compression="zstd")
        except OSError as exc:
            raise translate(exc, location.url) from None


def _by_date(table: pa.Table, dates: list[str]) -> Iterable[tuple[str, pa.Table]]:
    """The rows of ``table`` per date, dates in order, rows in their order within each."""
    positions: dict[str, list[int]] = {}
    for i, date in enumerate(dates):
        positions.setdefault(date, []).append(i)
    for date in sorted(positions):
        yield date, table.take(pa.array(positions[date], pa.int64()))


def _decisions(rows: list[dict[str, Any]]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMAS["decisions"].names}
    for row in rows:
        for name in columns:
            value = row[name]
            if name in ("reasons", "latency_ms", "aggregates"):
                value = _json(value)
            elif name == "rules":
                value = [str(v) for v in value or []]
            elif name in ("feature_values", "explanation") and value is not None:
                value = bytes(value)
            columns[name].append(value)
    return pa.Table.from_pydict(columns, schema=SCHEMAS["decisions"])


def _transactions(rows: list[dict[str, Any]]) -> tuple[pa.Table, list[str]]:
    """The stored transactions of a decisions batch (a replay stores decisions without them)."""
    stored = [row for row in rows if row["payload"] is not None]
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMAS["transactions"].names}
    for row in stored:
        for name in columns:
            columns[name].append(_json(row["payload"]) if name == "body" else row[name])
    table = pa.Table.from_pydict(columns, schema=SCHEMAS["transactions"])
    return table, [_date(row["timestamp"]) for row in stored]


def _labels(rows: list[dict[str, Any]]) -> pa.Table:
    columns = {name: [row[name] for row in rows] for name in SCHEMAS["labels"].names}
    return pa.Table.from_pydict(columns, schema=SCHEMAS["labels"])


__all__ = ["DATASETS", "SCHEMAS", "Archiver", "PassResult", "object_name"]
