"""Each key's events in (time, arrival) order, as runs of row numbers in one shared array.

A key's run is a stretch of :attr:`Runs.rows` holding the log rows of its events ordered by event
time, then arrival: finding the events of a window is a binary search and a slice, for one key or for
all of a batch's keys in one compiled call. An event in time order is appended to its run; a late one
is moved back to its place; a run that is full moves to the end of the array with twice the room; the
array is compacted when half of it is unused. Events without a time, or without a key, are never part
of a history, so they are not held. Pruning renumbers the log, and the runs are built again.

Keys are their integer codes (the state's dictionary of the key's column); an event's time is read
from the log's timestamps, which never change while the event is held.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def _place(start, length, cap, buf, end, codes, rows, ts):  # pragma: no cover - compiled
    """Place ``rows`` (log rows in arrival order, keyed by ``codes``) into their runs; stops at the
    first that needs more room than ``buf`` has past ``end``. Returns how many were placed, and the
    new end."""
    for i in range(rows.shape[0]):
        c, r = codes[i], rows[i]
        t = ts[r]
        if c < 0 or math.isnan(t):
            continue
        n = length[c]
        if n == cap[c]:
            room = max(2 * n, 4)
            if end + room > buf.shape[0]:
                return i, end
            s = start[c]
            buf[end : end + n] = buf[s : s + n]
            start[c], cap[c] = end, room
            end += room
        s = start[c]
        j = s + n
        while j > s and ts[buf[j - 1]] > t:  # a late event goes after every held event of its time
            buf[j] = buf[j - 1]
            j -= 1
        buf[j] = r
        length[c] = n + 1
    return rows.shape[0], end


@njit(cache=True)
def _compact(start, length, cap, buf, size):  # pragma: no cover - compiled
    """Copy every run, its room kept, to the front of a new array of ``size``."""
    out = np.empty(size, np.int64)
    end = 0
    for c in range(start.shape[0]):
        n = length[c]
        if cap[c] == 0:
            continue
        out[end : end + n] = buf[start[c] : start[c] + n]
        start[c] = end
        end += cap[c]
    return out, end


@njit(cache=True)
def _build(codes, ts, keys):  # pragma: no cover - compiled
    """Runs of ``keys`` codes for the rows of ``codes`` (a code per log row), by time then row."""
    length = np.zeros(keys, np.int64)
    for r in range(codes.shape[0]):
        if codes[r] >= 0 and not math.isnan(ts[r]):
            length[codes[r]] += 1
    cap = np.zeros(keys, np.int64)
    start = np.zeros(keys, np.int64)
    end = 0
    for c in range(keys):
        if length[c]:
            cap[c] = max(2 * length[c], 4)
            start[c] = end
            end += cap[c]
    fill = np.zeros(keys, np.int64)
    buf = np.empty(max(2 * end, 16), np.int64)
    for r in range(codes.shape[0]):
        c = codes[r]
        if c >= 0 and not math.isnan(ts[r]):
            buf[start[c] + fill[c]] = r
            fill[c] += 1
    for c in range(keys):  # rows arrived in order; sort each run by time, stably
        s, n = start[c], length[c]
        if n > 1:
            run = buf[s : s + n]
            times = ts[run]
            ordered = True
            for j in range(1, n):
                if times[j] < times[j - 1]:
                    ordered = False
                    break
            if not ordered:
                buf[s : s + n] = run[np.argsort(times, kind="mergesort")]
    return start, length, cap, buf, end


class Runs:
    """The runs of one entity's keys (events, or the events with a fraud label): ``start[code]`` and
    ``length[code]`` delimit a key's rows in :attr:`rows`; codes past ``start``'s end hold nothing."""

    __slots__ = ("cap", "end", "length", "rows", "start")

    def __init__(self) -> None:
        self.start = np.zeros(0, dtype=np.int64)
        self.length = np.zeros(0, dtype=np.int64)
        self.cap = np.zeros(0, dtype=np.int64)
        self.rows = np.empty(16, dtype=np.int64)
        self.end = 0

    def add(self, codes: np.ndarray, rows: np.ndarray, timestamps: np.ndarray) -> None:
        """Take in log ``rows`` (arrival order) of keys ``codes`` (-1: none), times in ``timestamps``."""
        if codes.shape[0] == 0:
            return
        top = int(codes.max()) + 1
        if top > self.start.shape[0]:
            grow = max(top, 2 * self.start.shape[0]) - self.start.shape[0]
            self.start = np.concatenate([self.start, np.zeros(grow, dtype=np.int64)])
            self.length = np.concatenate([self.length, np.zeros(grow, dtype=np.int64)])
            self.cap = np.concatenate([self.cap, np.zeros(grow, dtype=np.int64)])
        done = 0
        while done < rows.shape[0]:
            placed, self.end = _place(
                self.start, self.length, self.cap, self.rows, self.end, codes[done:], rows[done:], timestamps
            )
            done += placed
            if done < rows.shape[0]:  # out of room: compact, into twice the room held when half is used
                needed = int(self.cap.sum()) + 2 * int(self.length.max()) + 4
                size = self.rows.shape[0] if 2 * needed <= self.rows.shape[0] else 2 * needed
                self.rows, self.end = _compact(self.start, self.length, self.cap, self.rows, size)

    def rebuild(self, codes: np.ndarray, timestamps: np.ndarray, keys: int) -> None:
        """Runs afresh for every log row (``codes`` a code per row, -1: none), as after a prune."""
        self.start, self.length, self.cap, self.rows, self.end = _build(codes, timestamps, keys)

    def window(self, code: int, since: float, timestamps: np.ndarray) -> np.ndarray:
        """The key's rows at or after ``since``, by time then arrival (none when ``since`` is NaN)."""
        if code < 0 or code >= self.start.shape[0] or since != since:
            return self.rows[:0]
        s, n = int(self.start[code]), int(self.length[code])
        run = self.rows[s : s + n]
        return run[int(np.searchsorted(timestamps[run], since, side="left")) :]
