"""The in-process state's events: append-only columns, grown by doubling.

The float columns share one matrix (a row per float field of the schema, timestamps first) and so do
the identifier codes (a row per identifier field), so compiled code reads any of them from one
argument; ``data[field]`` and ``data[CODE + field]`` are rows of those matrices, views. Beside them,
``label_time`` holds each event's fraud label time (NaN while it has none).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fraudstream.state.base import CODE, DEFAULT_SCHEMA, EventSchema


class EventLog:
    """Append-only event columns and their identifier codes, held in the first ``size`` rows."""

    def __init__(self, capacity: int = 1024, schema: EventSchema = DEFAULT_SCHEMA) -> None:
        self.schema = schema
        self.size = 0
        self.data: dict[str, np.ndarray] = {}
        self.floats = np.empty((len(schema.floats), capacity), dtype=np.float64)
        self.codes = np.empty((len(schema.ids), capacity), dtype=np.int64)
        self.label_time = np.full(capacity, np.nan)
        self._objects = {f: np.empty(capacity, dtype=object) for f in ("transaction_id", *schema.ids)}
        self._publish()

    @property
    def capacity(self) -> int:
        return self.codes.shape[1]

    def append(self, columns: Mapping[str, np.ndarray]) -> range:
        """Add the rows of ``columns`` (every event field, and ``CODE + field`` for the identifiers)."""
        n = len(columns["timestamp"])
        if self.size + n > self.capacity:
            self._resize(max(2 * self.capacity, self.size + n), slice(0, self.size))
        for f, column in self.data.items():
            column[self.size : self.size + n] = columns[f]
        self.label_time[self.size : self.size + n] = np.nan
        self.size += n
        return range(self.size - n, self.size)

    def keep(self, mask: np.ndarray) -> np.ndarray:
        """Drop rows where ``mask`` is False; returns the new number of each old row (-1 if dropped)."""
        renumber = np.cumsum(mask) - 1
        renumber[~mask] = -1
        kept = int(mask.sum())
        self._objects = {f: col[: self.size][mask].copy() for f, col in self._objects.items()}
        self.floats = np.ascontiguousarray(self.floats[:, : self.size][:, mask])
        self.codes = np.ascontiguousarray(self.codes[:, : self.size][:, mask])
        self.label_time = self.label_time[: self.size][mask].copy()
        self.size = kept
        self._publish()
        return renumber

    def _resize(self, capacity: int, held: slice) -> None:
        floats = np.empty((len(self.schema.floats), capacity), dtype=np.float64)
        floats[:, held] = self.floats[:, held]
        self.floats = floats
        codes = np.empty((len(self.schema.ids), capacity), dtype=np.int64)
        codes[:, held] = self.codes[:, held]
        self.codes = codes
        label_time = np.full(capacity, np.nan)
        label_time[held] = self.label_time[held]
        self.label_time = label_time
        for f, old in self._objects.items():
            grown = np.empty(capacity, dtype=object)
            grown[held] = old[held]
            self._objects[f] = grown
        self._publish()

    def _publish(self) -> None:
        """A new ``data`` dict: a reader's copy of the old one keeps the arrays it saw."""
        self.data = dict(self._objects)
        self.data.update({f: self.floats[i] for i, f in enumerate(self.schema.floats)})
        self.data.update({CODE + f: self.codes[i] for i, f in enumerate(self.schema.ids)})
