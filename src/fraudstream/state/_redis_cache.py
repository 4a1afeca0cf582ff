"""A process's copy of the Redis feature state it has already read, one per entity kind.

Stored events never change, so each key remembers the arrival number it was last read at and the next
fetch asks Redis only for what arrived since, whichever process recorded it. Events live once, in a
growable columnar log; each key keeps a timeline of its row numbers in event-time then arrival order
(what Redis and the engine expect), so that fetching a busy key alone is a cut, and its labels as
``(tx time, arrival, label time)``. Rows below the pruning horizon
are dropped exactly when Redis stops returning them, and the least recently fetched keys are evicted
past ``max_size`` (rows + labels + keys), so memory stays bounded; an evicted key is simply read whole
again.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from fraudstream.state._timeline import Timeline, TimelineEvents
from fraudstream.state.base import EVENT_FIELDS, FLOAT_FIELDS, History, gather_history, history_of


class Entry:
    """One key's copy: its events, labels, the arrival number it is complete up to, and the creation
    mark of the Redis set it copies (``b""`` when absent, None before the first read)."""

    __slots__ = ("events", "gen", "labels", "last")

    def __init__(self) -> None:
        self.events = Timeline()
        self.labels: list[tuple[float, int, float]] = []
        self.last = 0
        self.gen: bytes | None = None

    @property
    def size(self) -> int:
        return self.events.size + len(self.labels)


class EntityCache:
    """The keys of one entity kind this process has read, least recently fetched first."""

    slack = 65_536
    """Unreferenced rows tolerated in the log before it is compacted (at most as many as referenced)."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.entries: OrderedDict[object, Entry] = OrderedDict()
        self.horizon = -math.inf
        self.held = 0
        """Rows and labels referenced by entries (each entry also counts one toward ``max_size``)."""
        self.size = 0
        self.data = {
            f: np.empty(1024, dtype=np.float64 if f in FLOAT_FIELDS else object) for f in EVENT_FIELDS
        }

    def entries_for(self, keys: list[object]) -> list[Entry]:
        """Each key's entry, created empty when absent, all marked as just used."""
        entries, out = self.entries, []
        for key in keys:
            entry = entries.get(key)
            if entry is None:
                entry = entries[key] = Entry()
            else:
                entries.move_to_end(key)
            out.append(entry)
        return out

    def reset(self, entry: Entry) -> None:
        """Forget an entry's copy so that it is read whole again."""
        self.held -= entry.size
        entry.events, entry.labels, entry.last = Timeline(), [], 0

    def prune(self, horizon: float) -> None:
        """Drop what is below a horizon that has moved (rows are time-sorted: a prefix of each key)."""
        self.horizon = horizon
        for entry in self.entries.values():
            labels = entry.labels
            self.held -= entry.events.drop_before(horizon)
            if labels and labels[0][0] < horizon:
                entry.labels = [x for x in labels if x[0] >= horizon]
                self.held -= len(labels) - len(entry.labels)

    def add_events(self, entries: list[Entry], counts: np.ndarray, columns: Mapping[str, np.ndarray]) -> None:
        """Append newly arrived events, ``counts[i]`` of them for ``entries[i]`` in arrival order."""
        group = np.repeat(np.arange(len(entries)), counts)
        keep = columns["timestamp"] >= self.horizon
        if not keep.all():
            group = group[keep]
            columns = {f: col[keep] for f, col in columns.items()}
        n = group.shape[0]
        if n == 0:
            return
        rows = self._append(columns)
        times = columns["timestamp"]
        order = np.lexsort((rows, times, group))
        group, rows, times = group[order], rows[order], times[order]
        present = np.flatnonzero(np.bincount(group, minlength=len(entries)))
        lo = np.searchsorted(group, present, side="left")
        hi = np.searchsorted(group, present, side="right")
        for g, a, b in zip(present.tolist(), lo.tolist(), hi.tolist(), strict=True):
            entries[g].events.add_sorted(rows[a:b], times[a:b], self.data)
        self.held += n

    def add_labels(
        self, entries: list[Entry], counts: np.ndarray, seqs: np.ndarray, tx: np.ndarray, at: np.ndarray
    ) -> None:
        """Attach newly arrived labels, ``counts[i]`` of them for ``entries[i]``."""
        group = np.repeat(np.arange(len(entries)), counts).tolist()
        touched = set()
        for g, s, t, a in zip(group, seqs.tolist(), tx.tolist(), at.tolist(), strict=True):
            if t >= self.horizon:
                entries[g].labels.append((t, s, a))
                touched.add(g)
                self.held += 1
        for g in touched:
            entries[g].labels.sort()

    def history(self, keys: list[object], since: float) -> History:
        """What the cached keys hold at or after ``since``, grouped by key in the order asked."""
        entries = self.entries
        found = [(k, entries[k]) for k in keys if k in entries]
        labels = ((key, t, lt) for key, e in found for t, _, lt in e.labels)
        data = dict(self.data)  # appending writes past the rows held; compacting replaces the arrays
        if len(found) == 1:
            key, events = found[0][0], found[0][1].events
            start = events.cut(since)
            runs = [(key, events.size - start)] if events.size > start else []
            return history_of(runs, TimelineEvents(events, data, start), labels, since)
        return gather_history(
            [(k, e.events.rows[: e.events.size]) for k, e in found], data, labels, since, lazy=True
        )

    def evict(self) -> None:
        """Drop the least recently fetched keys past ``max_size``; compact the log when mostly garbage."""
        entries = self.entries
        while entries and self.held + len(entries) > self.max_size:
            _, entry = entries.popitem(last=False)
            self.held -= entry.size
        if self.size > 2 * max(self.held, self.slack):
            self._compact()

    def _append(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        n = len(columns["timestamp"])
        if self.size + n > len(self.data["timestamp"]):
            self._compact(extra=n)
        for f in EVENT_FIELDS:
            self.data[f][self.size : self.size + n] = columns[f]
        self.size += n
        return np.arange(self.size - n, self.size)

    def _compact(self, extra: int = 0) -> None:
        """Keep only the rows some entry references, in a log with room for ``extra`` more."""
        entries = list(self.entries.values())
        used = (
            np.concatenate([e.events.rows[: e.events.size] for e in entries])
            if entries
            else np.empty(0, dtype=np.int64)
        )
        order = np.sort(used)
        renumber = np.full(self.size, -1, dtype=np.int64)
        renumber[order] = np.arange(order.shape[0])
        capacity = max(1024, 2 * (order.shape[0] + extra))
        for f, old in self.data.items():
            grown = np.empty(capacity, dtype=old.dtype)
            grown[: order.shape[0]] = old[order]
            self.data[f] = grown
        self.size = int(order.shape[0])
        for entry in entries:
            entry.events.renumber(renumber, self.data)
