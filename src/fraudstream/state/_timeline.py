"""One busy key's events kept in (event time, arrival) order, so that fetching its history is a cut.

A busy merchant holds tens of thousands of events. Gathering them from the log and sorting them at
every fetch cost ten times what computing its features did. A timeline holds the key's row numbers and
times in that order, and each column once it has been read; it takes in only what arrived since the
last fetch: appended when in time order, inserted where it belongs when late.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


class Timeline:
    """A key's events with a time, ordered by time then arrival, as row numbers into a log."""

    __slots__ = ("_data", "columns", "covered", "rows", "size", "times")

    def __init__(self) -> None:
        self.covered = 0
        """How many of the key's rows, in arrival order, have been taken in."""
        self.size = 0
        """How many of those are held: rows without a time are never part of a history."""
        self.rows = np.empty(0, dtype=np.int64)
        self.times = np.empty(0, dtype=np.float64)
        self.columns: dict[str, np.ndarray] = {}
        self._data: Mapping[str, np.ndarray] = {}
        """The log as of the last change: every row held is in it (a fetch's own copy may be older)."""

    def update(self, rows: list[int], data: Mapping[str, np.ndarray]) -> None:
        """Take in ``rows[covered:]``: a key's rows only grow between prunes, and a prune starts over."""
        if len(rows) == self.covered:
            return
        new = np.asarray(rows[self.covered :], dtype=np.int64)
        self.covered = len(rows)
        self.add(new, data)

    def add(self, new: np.ndarray, data: Mapping[str, np.ndarray]) -> None:
        """Take in rows of ``data`` that arrived after those held, in arrival order."""
        self._data = data
        times = data["timestamp"][new]
        timed = ~np.isnan(times)
        if not timed.all():
            new, times = new[timed], times[timed]
        if new.shape[0] == 0:
            return
        if not (times[1:] >= times[:-1]).all():
            order = np.argsort(times, kind="stable")  # equal times keep their arrival order
            new, times = new[order], times[order]
        self.add_sorted(new, times, data)

    def add_sorted(self, new: np.ndarray, times: np.ndarray, data: Mapping[str, np.ndarray]) -> None:
        """:meth:`add` for rows already ordered by time, then arrival, all with a time (``times``)."""
        self._data = data
        if self.size == 0 or times[0] >= self.times[self.size - 1]:
            self._append(new, times, data)
        else:
            self._insert(new, times, data)

    def cut(self, since: float) -> int:
        """Position of the first event at or after ``since``."""
        return int(np.searchsorted(self.times[: self.size], since, side="left"))

    def column(self, field: str) -> np.ndarray:
        """The held events' ``field``, in timeline order (gathered from the log once, then kept up)."""
        if field == "timestamp":
            return self.times
        column = self.columns.get(field)
        if column is None:
            values = self._data[field]
            column = np.empty(self.rows.shape[0], dtype=values.dtype)
            column[: self.size] = values[self.rows[: self.size]]
            self.columns[field] = column
        return column

    def _append(self, new: np.ndarray, times: np.ndarray, data: Mapping[str, np.ndarray]) -> None:
        size, end = self.size, self.size + new.shape[0]
        if end > self.rows.shape[0]:
            capacity = max(2 * end, 8)
            self.rows = _grown(self.rows, size, capacity)
            self.times = _grown(self.times, size, capacity)
            self.columns = {f: _grown(c, size, capacity) for f, c in self.columns.items()}
        self.rows[size:end] = new
        self.times[size:end] = times
        for field, column in self.columns.items():
            column[size:end] = data[field][new]
        self.size = end

    def _insert(self, new: np.ndarray, times: np.ndarray, data: Mapping[str, np.ndarray]) -> None:
        """Late events go after every held event of an equal time, which arrived before them."""
        at = np.searchsorted(self.times[: self.size], times, side="right")
        self.rows = np.insert(self.rows[: self.size], at, new)
        self.times = np.insert(self.times[: self.size], at, times)
        self.columns = {f: np.insert(c[: self.size], at, data[f][new]) for f, c in self.columns.items()}
        self.size += new.shape[0]


def _grown(values: np.ndarray, filled: int, capacity: int) -> np.ndarray:
    grown = np.empty(capacity, dtype=values.dtype)
    grown[:filled] = values[:filled]
    return grown


class TimelineEvents(Mapping[str, np.ndarray]):
    """The columns of a timeline's events from position ``start`` to ``stop``, read-only views, each
    gathered the first time any fetch reads it: a key's features read only a few columns."""

    def __init__(
        self, timeline: Timeline, data: Mapping[str, np.ndarray], start: int, fields: tuple[str, ...]
    ) -> None:
        self._timeline, self._data, self._fields = timeline, data, fields
        self._rows, self._start, self._stop = timeline.rows, start, timeline.size
        self._views: dict[str, np.ndarray] = {}

    def __getitem__(self, field: str) -> np.ndarray:
        view = self._views.get(field)
        if view is None:
            if self._stop > self._start and self._timeline.rows is self._rows:  # positions as fetched
                view = self._timeline.column(field)[self._start : self._stop]
            else:  # moved since (late events, growth, compaction): gather what the fetch saw
                view = self._data[field][self._rows[self._start : self._stop]]
            view.flags.writeable = False
            self._views[field] = view
        return view

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)
