"""The in-process state's events: append-only columns, grown by doubling.

The identifier codes of every coded field share one matrix (a row per field of
:data:`~fraudstream.state.base.CODED_FIELDS`), so compiled code reads any of them from one argument;
``data[CODE + field]`` is that field's row, a view.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fraudstream.state.base import CODE, CODED_FIELDS, EVENT_FIELDS, FLOAT_FIELDS


class EventLog:
    """Append-only event columns and their identifier codes, held in the first ``size`` rows."""

    def __init__(self, capacity: int = 1024) -> None:
        self.size = 0
        self.data: dict[str, np.ndarray] = {}
        self.codes = np.empty((len(CODED_FIELDS), capacity), dtype=np.int64)
        self._fields = {
            f: np.empty(capacity, dtype=np.float64 if f in FLOAT_FIELDS else object) for f in EVENT_FIELDS
        }
        self._publish()

    @property
    def capacity(self) -> int:
        return self.codes.shape[1]

    def append(self, columns: Mapping[str, np.ndarray]) -> range:
        """Add the rows of ``columns`` (every event field, and ``CODE + field`` for the coded ones)."""
        n = len(columns["timestamp"])
        if self.size + n > self.capacity:
            self._resize(max(2 * self.capacity, self.size + n), slice(0, self.size))
        for f, column in self.data.items():
            column[self.size : self.size + n] = columns[f]
        self.size += n
        return range(self.size - n, self.size)

    def keep(self, mask: np.ndarray) -> np.ndarray:
        """Drop rows where ``mask`` is False; returns the new number of each old row (-1 if dropped)."""
        renumber = np.cumsum(mask) - 1
        renumber[~mask] = -1
        kept = int(mask.sum())
        self._fields = {f: col[: self.size][mask].copy() for f, col in self._fields.items()}
        self.codes = np.ascontiguousarray(self.codes[:, : self.size][:, mask])
        self.size = kept
        self._publish()
        return renumber

    def _resize(self, capacity: int, held: slice) -> None:
        codes = np.empty((len(CODED_FIELDS), capacity), dtype=np.int64)
        codes[:, held] = self.codes[:, held]
        self.codes = codes
        for f, old in self._fields.items():
            grown = np.empty(capacity, dtype=old.dtype)
            grown[held] = old[held]
            self._fields[f] = grown
        self._publish()

    def _publish(self) -> None:
        """A new ``data`` dict: a reader's copy of the old one keeps the arrays it saw."""
        self.data = dict(self._fields)
        self.data.update({CODE + f: self.codes[i] for i, f in enumerate(CODED_FIELDS)})
