"""In-process feature state: the embedded default, needing no server.

Events live once, in a growable columnar log; each entity keeps the row numbers of its events.
Fetching a batch's history is then a gather of arrays, and recording costs per new event, never
per event already held. A key with a long history (a busy merchant) also keeps a timeline of its
events in time order, so that fetching it alone is a cut rather than a gather and a sort.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.state._log import EventLog
from fraudstream.state._scan import ROWS_PER_KEY, scan_history
from fraudstream.state._timeline import Timeline, TimelineEvents
from fraudstream.state.base import (
    CODE,
    DEFAULT_SCHEMA,
    EventSchema,
    FeatureState,
    History,
    KeyEvents,
    gather_history,
    gathered_history,
    history_of,
)

_FEW = 64
"""Below this many rows, recording checks ids in plain Python rather than through pandas."""
_NO_ROWS = np.empty(0, dtype=np.int64)
_LONG = 128
"""From this many events on, a key's row numbers are also kept as an array or, once the key has been
fetched alone (the live path's busy merchant), as a :class:`Timeline` in time order."""


class MemoryFeatureState(FeatureState):
    """Feature state in process memory, pruned to ``retention`` seconds behind the newest event.

    A first-class backend for one process (the demo, tests, offline replays); it forgets everything
    when the process ends, and :func:`fraudstream.runtime.warm_state` rebuilds it from storage.
    """

    def __init__(
        self, retention: float, grace: float = 86400.0, schema: EventSchema = DEFAULT_SCHEMA
    ) -> None:
        self.retention = retention
        self.grace = grace
        self.schema = schema
        self._log = EventLog(schema=schema)
        self._index: dict[str, defaultdict[str, list[int]]] = {}
        self._arrays: dict[str, dict[str, tuple[np.ndarray, int]]] = {}  # long row lists, as arrays
        self._timelines: dict[str, dict[str, Timeline]] = {}  # long histories fetched alone
        self._columns: dict[str, str] = {}
        self._partial: set[str] = set()  # entities some held rows were appended without
        self._labels: dict[str, defaultdict[str, list[tuple[float, float]]]] = {}
        self._tx: dict[str, int] = {}
        self._fraud: set[str] = set()
        self._newest = -np.inf
        self._pruned_at = -np.inf
        self._coders: dict[str, dict[object, int]] = {f: {} for f in schema.ids}

    def fetch(self, entity: str, keys: np.ndarray, since: float) -> History:
        index: Mapping[str, list[int]] = self._index.get(entity, {})
        labels: Mapping[str, list[tuple[float, float]]] = self._labels.get(entity, {})
        asked = keys.tolist()
        data = dict(self._log.data)  # the log only grows past these rows; growing or pruning replaces arrays
        arrived = ((key, t, lt) for key in asked for t, lt in labels.get(key, ()))
        column, size = self._columns.get(entity), self._log.size
        if column in self._coders and entity not in self._partial and len(asked) * ROWS_PER_KEY > size:
            at, held = scan_history(
                asked, self._coders[column], data[CODE + column][:size], data["timestamp"][:size], since
            )
            return gathered_history(at, held, data, arrived, since, self.schema.fields)
        found = [(k, index[k]) for k in asked if k in index]
        if len(found) == 1 and len(found[0][1]) >= _LONG:
            key, rows = found[0]
            timeline = self._timeline(entity, key, rows, data)
            start = timeline.cut(since)
            runs = [(key, timeline.size - start)] if timeline.size > start else []
            return history_of(runs, TimelineEvents(timeline, data, start, self.schema.fields), arrived, since)
        return gather_history(
            [(k, self._ordered(entity, k, rows, data)) for k, rows in found],
            data,
            arrived,
            since,
            lazy=True,
            fields=self.schema.fields,
        )

    def key_events(self, entity: str, key: Any) -> KeyEvents:
        """``key``'s row numbers in the log, in time order when it has a timeline (a long history)."""
        data = self._log.data
        rows = self._index.get(entity, {}).get(key)
        found, ordered = _NO_ROWS, False
        if rows is not None and len(rows) >= _LONG:
            timeline = self._timeline(entity, key, rows, data)
            found, ordered = timeline.rows[: timeline.size], True
        elif rows:
            found = np.array(rows, dtype=np.int64)
        labels = self._labels.get(entity, {}).get(key, ())
        return KeyEvents(found, ordered, self._log.floats, self._log.codes, labels)

    def _ordered(
        self, entity: str, key: str, rows: list[int], data: Mapping[str, np.ndarray]
    ) -> list[int] | np.ndarray:
        """A key's row numbers for a fetch of several keys: in time order when it has a timeline (it
        was fetched alone before), else as they arrived, a long list also as an array, extended by only
        what was appended since the last fetch (lists only grow between prunes)."""
        n = len(rows)
        if n < _LONG:
            return rows
        timeline = self._timelines.get(entity, {}).get(key)
        if timeline is not None:
            timeline.update(rows, data)
            return timeline.rows[: timeline.size]
        arrays = self._arrays.setdefault(entity, {})
        buffer, filled = arrays.get(key, (np.empty(0, dtype=np.int64), 0))
        if filled != n:
            if filled > n or buffer.shape[0] < n:
                grown = np.empty(2 * n, dtype=np.int64)
                filled = min(filled, n)
                grown[:filled] = buffer[:filled]
                buffer = grown
            buffer[filled:n] = rows[filled:n]
            arrays[key] = (buffer, n)
        return buffer[:n]

    def _timeline(self, entity: str, key: str, rows: list[int], data: Mapping[str, np.ndarray]) -> Timeline:
        timelines = self._timelines.setdefault(entity, {})
        timeline = timelines.get(key)
        if timeline is None:
            timeline = timelines[key] = Timeline()
        timeline.update(rows, data)
        return timeline

    def codes(self, field: str, values: np.ndarray) -> np.ndarray:
        """Codes from this state's dictionary of ``field``, which gains the values it has not seen;
        the same as the history's until the state next prunes (which renumbers them)."""
        coder = self._coders[field]
        return np.fromiter(
            (-1 if v is None or v != v else coder.setdefault(v, len(coder)) for v in values.tolist()),
            np.int64,
            len(values),
        )

    def held(self, transaction_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of these transactions the state holds (recorded, not pruned), and the event times of
        those it holds."""
        rows = [self._tx.get(t, -1) for t in transaction_ids.tolist()]
        at = np.array(rows, dtype=np.int64)
        mask = at >= 0
        return mask, self._log.data["timestamp"][at[mask]]

    def recorded(self, transaction_ids: np.ndarray) -> np.ndarray:
        known = self._tx
        return np.fromiter((t in known for t in transaction_ids.tolist()), bool, len(transaction_ids))

    def unseen(self, transaction_ids: np.ndarray) -> np.ndarray:
        """Which of these are new: not held, and the first of their id here."""
        n, known = len(transaction_ids), self._tx
        if n < _FEW:
            seen: set[object] = set()
            flags = []
            for t in transaction_ids.tolist():
                flags.append(t not in seen and t not in known)
                seen.add(t)
            return np.array(flags, dtype=bool)
        new = ~pd.Index(transaction_ids, dtype=object).duplicated()
        return new & np.fromiter((t not in known for t in transaction_ids.tolist()), dtype=bool, count=n)

    def record(self, events: Mapping[str, np.ndarray], entities: Mapping[str, str]) -> np.ndarray:
        new = self.unseen(events["transaction_id"])
        if not new.any():
            return new
        pick = (lambda column: column) if new.all() else (lambda column: column[new])
        self.append_events({f: pick(events[f]) for f in self.schema.fields}, entities)
        self._maybe_prune()
        return new

    def append_events(self, columns: Mapping[str, np.ndarray], entities: Mapping[str, str]) -> None:
        """Add events known to be new (no ``transaction_id`` held, none twice), without pruning: what
        :meth:`record` does once it has picked the new rows, and what a replica of a shared log does
        with the rows the log says are new (:class:`~fraudstream.state.redis.RedisFeatureState`)."""
        codes = {CODE + f: self.codes(f, columns[f]) for f in self.schema.ids}
        if self._log.size:
            self._partial.update(e for e, c in entities.items() if self._columns.get(e) != c)
            self._partial.update(e for e in self._index if e not in entities)
        row_list = list(self._log.append({**columns, **codes}))
        self._tx.update(zip(columns["transaction_id"].tolist(), row_list, strict=True))
        for entity, column in entities.items():
            self._columns[entity] = column
            index = self._index.setdefault(entity, defaultdict(list))
            for key, row in zip(columns[column].tolist(), row_list, strict=True):
                if key is not None:
                    index[key].append(row)
        times = columns["timestamp"]
        if len(row_list) < _FEW:
            finite = [t for t in times.tolist() if t == t]
            if finite:
                self._newest = max(self._newest, max(finite))
        else:
            finite_times = times[~np.isnan(times)]
            if finite_times.size:
                self._newest = max(self._newest, float(finite_times.max()))

    def record_labels(
        self, transaction_ids: np.ndarray, label_times: np.ndarray, is_fraud: np.ndarray
    ) -> int:
        added = 0
        data = self._log.data
        for tx_id, label_time, fraud in zip(
            transaction_ids.tolist(), label_times.tolist(), is_fraud.tolist(), strict=True
        ):
            row = self._tx.get(tx_id)
            if not fraud or row is None or tx_id in self._fraud:
                continue
            self._fraud.add(tx_id)
            for entity, column in self._columns.items():
                key = data[column][row]
                if key is not None:
                    self._labels.setdefault(entity, defaultdict(list))[key].append(
                        (data["timestamp"][row], label_time)
                    )
            added += 1
        return added

    def _maybe_prune(self) -> None:
        """Drop what is older than the retention; rare (every quarter retention of event time)."""
        if self._newest - self._pruned_at >= max(self.grace, self.retention / 4):
            self.prune(self._newest)

    def prune(self, pruned_at: float) -> None:
        """Forget what is more than ``retention + grace`` older than ``pruned_at``, the newest event time
        when the pruning rule last fired (here, or in the shared state this process replicates)."""
        self._pruned_at = pruned_at
        horizon = pruned_at - (self.retention + self.grace)  # as the Redis log's trim computes it
        keep = self._log.data["timestamp"][: self._log.size] >= horizon
        if keep.all():
            return
        renumber = self._log.keep(keep)
        self._recode()
        self._arrays.clear()
        self._timelines.clear()
        for index in self._index.values():
            for key in list(index):
                rows = [r for r in renumber[index[key]].tolist() if r >= 0]
                if rows:
                    index[key] = rows
                else:
                    del index[key]
        moved = renumber[np.fromiter(self._tx.values(), dtype=np.int64, count=len(self._tx))]
        kept = moved >= 0
        ids = np.asarray(list(self._tx), dtype=object)[kept].tolist()
        self._tx = dict(zip(ids, moved[kept].tolist(), strict=True))
        self._fraud &= self._tx.keys()
        for labels in self._labels.values():
            for key in list(labels):
                labels[key] = [x for x in labels[key] if x[0] >= horizon]
                if not labels[key]:
                    del labels[key]

    def _recode(self) -> None:
        """Number the identifiers still held from 0 again, and forget the others: the dictionaries
        then hold what the state holds, and codes stay as small as the kernels' tables want them."""
        size = self._log.size
        for f in self.schema.ids:
            column = self._log.data[CODE + f]
            held = column[:size]
            coder = self._coders[f]
            renumber = np.full(len(coder) + 1, -1, dtype=np.int64)  # the last slot maps -1 to -1
            used = np.unique(held[held >= 0])
            renumber[used] = np.arange(used.shape[0])
            column[:size] = renumber[held]
            self._coders[f] = {v: int(renumber[c]) for v, c in coder.items() if renumber[c] >= 0}

    def close(self) -> None:
        self._log = EventLog(schema=self.schema)
        self._index.clear()
        self._partial.clear()
        self._arrays.clear()
        self._timelines.clear()
        self._labels.clear()
        self._tx.clear()
        self._fraud.clear()
        self._coders = {f: {} for f in self.schema.ids}
