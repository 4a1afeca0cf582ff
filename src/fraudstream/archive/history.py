"""The archive as production history for ``fraudstream retrain --data URL``: the same reads as the store's
:class:`~fraudstream.storage.history.HistoryRepository` (span, logged feature names, decisions with their
vectors, decided transactions with their bodies, each with the two label times), answered from the
archive's Parquet instead of the database.

Labels are the archive's (see :mod:`.reader`): per source its newest archived verdict, and per transaction
the earliest ``label_time`` among fraud verdicts and among legitimate ones, as the store reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.archive.location import ArchiveError, Location, open_location
from fraudstream.archive.reader import label_times, labels_of, read_dataset
from fraudstream.storage.history import CHUNK_ROWS, Span


class ArchiveHistory:
    """Decisions with their logged feature vectors, and decided transactions, with their labels, read
    from the archive at ``url``. Each dataset is read once, on first use."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._location: Location | None = None
        self._tables: dict[str, pa.Table] = {}
        self._labels: pd.DataFrame | None = None

    @property
    def where(self) -> str:
        """The archive's URL, for messages."""
        return self._url

    def span(self, start: datetime | None = None, end: datetime | None = None) -> Span | None:
        """First and last event time of the archived decisions (of ``[start, end)`` when given), and
        their number; ``None`` if there are none."""
        times = self._between("decisions", start, end).column("timestamp")
        if len(times) == 0:
            return None
        first, last = pc.min(times).as_py(), pc.max(times).as_py()
        return Span(first, last, len(times))

    def feature_names(self) -> dict[str, list[str]]:
        """The feature names of every archived feature set, by its id."""
        table = self._table("feature_sets")
        return dict(zip(table.column("id").to_pylist(), table.column("names").to_pylist(), strict=True))

    def decisions(
        self, start: datetime, end: datetime, *, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """The archived decisions on transactions of ``[start, end)`` in event-time order, as
        :meth:`~fraudstream.storage.history.HistoryRepository.decisions` gives them."""
        table = self._between("decisions", start, end)
        columns = ["transaction_id", "timestamp", "customer_id", "feature_set", "feature_values"]
        for frame in self._chunks(table.select(columns), chunk_rows):
            frame["feature_values"] = frame["feature_values"].map(bytes)
            yield self._labelled(frame)

    def transactions(
        self, start: datetime, end: datetime, *, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """The archived transactions of ``[start, end)`` in event-time order: ``transaction_id``,
        ``payload`` (the body as received) and the two label times."""
        table = self._between("transactions", start, end).select(["transaction_id", "timestamp", "body"])
        for frame in self._chunks(table, chunk_rows):
            payloads = pd.Series([json.loads(b) for b in frame["body"]], dtype=object, index=frame.index)
            out = pd.DataFrame({"transaction_id": frame["transaction_id"], "payload": payloads})
            yield self._labelled(out)

    def _location_(self) -> Location:
        if self._location is None:
            self._location = open_location(self._url)
        return self._location

    def _table(self, name: str) -> pa.Table:
        if name not in self._tables:
            table = read_dataset(self._location_(), name)
            if name == "decisions" and table.num_rows == 0:
                raise ArchiveError(
                    f"no archived decisions at {self._url}: run `fraudstream archive run` with "
                    "FRAUD_ARCHIVE_URL set to it first, or check the URL"
                )
            self._tables[name] = table
        return self._tables[name]

    def _between(self, name: str, start: datetime | None, end: datetime | None) -> pa.Table:
        table = self._table(name)
        times = table.column("timestamp")
        if start is not None:
            table = table.filter(pc.greater_equal(times, pa.scalar(start, times.type)))
            times = table.column("timestamp")
        if end is not None:
            table = table.filter(pc.less(times, pa.scalar(end, times.type)))
        return table.sort_by([("timestamp", "ascending"), ("transaction_id", "ascending")])

    @staticmethod
    def _chunks(table: pa.Table, chunk_rows: int) -> Iterator[pd.DataFrame]:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        for offset in range(0, table.num_rows, chunk_rows):
            frame = table.slice(offset, chunk_rows).to_pandas()
            if "timestamp" in frame:
                frame["timestamp"] = frame["timestamp"].astype("datetime64[us, UTC]")
            yield frame

    def _labelled(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self._labels is None:
            self._labels = label_times(self._table("labels"))
        fraud, legit = labels_of(self._labels, frame["transaction_id"])
        frame["fraud_label_time"] = fraud.astype("datetime64[us, UTC]")
        frame["legit_label_time"] = legit.astype("datetime64[us, UTC]")
        return frame


__all__ = ["ArchiveHistory"]
