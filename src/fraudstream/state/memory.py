"""In-process feature state: the embedded default, needing no server.

Events live once, in a growable columnar log; each entity keeps an index of their rows by key, in
time order (:mod:`fraudstream.state._runs`). Reading a key's window is then a binary search and a
slice, and recording costs per new event, never per event already held.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from fraudstream.state._log import EventLog
from fraudstream.state._runs import Runs
from fraudstream.state.base import (
    CODE,
    DEFAULT_SCHEMA,
    EventColumns,
    EventSchema,
    FeatureState,
    History,
    KeyIndex,
    history_of,
)


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
        self._runs: dict[str, tuple[Runs, Runs]] = {}  # each entity's events, and labelled events, by key
        self._indexes: dict[str, KeyIndex] = {}  # their arrays as last lent, until they change
        self._columns: dict[str, str] = {}
        self._tx: dict[str, int] = {}
        self._fraud: set[str] = set()
        self._newest = -np.inf
        self._pruned_at = -np.inf
        self._coders: dict[str, dict[object, int]] = {f: {} for f in schema.ids}

    def fetch(self, entity: str, keys: np.ndarray, since: float) -> History:
        index = self.index(entity)
        data = dict(self._log.data)
        ts = self._log.floats[0]
        if index is None:
            return History.empty(self.schema)
        column = self._columns[entity]
        coder = self._coders[column]
        events, labels = self._runs[entity]
        taken: list[np.ndarray] = []
        runs: list[tuple[object, int]] = []
        arrived: list[tuple[object, float, float]] = []
        for key in keys.tolist():
            code = coder.get(key, -1) if key is not None and key == key else -1
            rows = events.window(code, since, ts)
            if rows.shape[0]:
                taken.append(rows)
                runs.append((key, rows.shape[0]))
            for row in labels.window(code, since, ts).tolist():
                arrived.append((key, float(ts[row]), float(self._log.label_time[row])))
        at = np.concatenate(taken) if taken else np.empty(0, dtype=np.int64)
        return history_of(runs, _Taken(data, at, self.schema), arrived, since)

    def columns(self) -> EventColumns:
        log = self._log
        given = max(map(len, self._coders.values()), default=0)
        return EventColumns(log.floats, log.codes, log.label_time, log.size, given)

    def index(self, entity: str) -> KeyIndex | None:
        index = self._indexes.get(entity)
        if index is None:
            held = self._runs.get(entity)
            if held is None:
                return None
            events, labels = held
            index = self._indexes[entity] = KeyIndex(
                self.schema.ids.index(self._columns[entity]),
                events.start,
                events.length,
                events.rows,
                labels.start,
                labels.length,
                labels.rows,
            )
        return index

    def codes(self, field: str, values: np.ndarray) -> np.ndarray:
        """Codes from this state's dictionary of ``field``, which gains the values it has not seen;
        the same as the log's until the state next prunes (which renumbers them)."""
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

    def positions(self, transaction_ids: np.ndarray) -> np.ndarray:
        known = self._tx
        return np.fromiter(
            (known.get(t, -1) for t in transaction_ids.tolist()), np.int64, len(transaction_ids)
        )

    def recorded(self, transaction_ids: np.ndarray) -> np.ndarray:
        known = self._tx
        return np.fromiter((t in known for t in transaction_ids.tolist()), bool, len(transaction_ids))

    def unseen(self, transaction_ids: np.ndarray) -> np.ndarray:
        """Which of these are new: not held, and the first of their id here."""
        seen: set[object] = set()
        known = self._tx
        flags = np.empty(len(transaction_ids), dtype=bool)
        for i, t in enumerate(transaction_ids.tolist()):
            flags[i] = t not in seen and t not in known
            seen.add(t)
        return flags

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
        self._indexes.clear()
        at = self._log.append({**columns, **codes})
        rows = np.arange(at.start, at.stop, dtype=np.int64)
        self._tx.update(zip(columns["transaction_id"].tolist(), at, strict=True))
        ts = self._log.floats[0]
        for entity, column in entities.items():
            if self._columns.get(entity, column) != column:  # keyed anew: index every held event again
                del self._runs[entity]
                self._columns[entity] = column
                self._reindex(entity)
                continue
            self._columns[entity] = column
            held = self._runs.get(entity)
            if held is None:
                held = self._runs[entity] = (Runs(), Runs())
            held[0].add(codes[CODE + column], rows, ts)
        times = columns["timestamp"]
        finite_times = times[~np.isnan(times)]
        if finite_times.size:
            self._newest = max(self._newest, float(finite_times.max()))

    def record_labels(
        self, transaction_ids: np.ndarray, label_times: np.ndarray, is_fraud: np.ndarray
    ) -> int:
        rows: list[int] = []
        for tx_id, label_time, fraud in zip(
            transaction_ids.tolist(), label_times.tolist(), is_fraud.tolist(), strict=True
        ):
            row = self._tx.get(tx_id)
            if not fraud or row is None or tx_id in self._fraud:
                continue
            self._fraud.add(tx_id)
            self._log.label_time[row] = label_time
            rows.append(row)
        if rows:
            self._indexes.clear()
            labelled = np.array(rows, dtype=np.int64)
            for entity, (_, labels) in self._runs.items():
                field = self.schema.ids.index(self._columns[entity])
                labels.add(self._log.codes[field][labelled], labelled, self._log.floats[0])
        return len(rows)

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
        moved = renumber[np.fromiter(self._tx.values(), dtype=np.int64, count=len(self._tx))]
        kept = moved >= 0
        ids = np.asarray(list(self._tx), dtype=object)[kept].tolist()
        self._tx = dict(zip(ids, moved[kept].tolist(), strict=True))
        self._fraud &= self._tx.keys()
        self._indexes.clear()
        for entity in list(self._runs):
            self._reindex(entity)

    def _reindex(self, entity: str) -> None:
        """Build ``entity``'s index from every event held (after a prune renumbered the log)."""
        field = self.schema.ids.index(self._columns[entity])
        size = self._log.size
        codes = self._log.codes[field][:size]
        keys = len(self._coders[self._columns[entity]])
        ts = self._log.floats[0][:size]
        events, labels = Runs(), Runs()
        events.rebuild(codes, ts, keys)
        labelled = np.where(np.isnan(self._log.label_time[:size]), -1, codes)
        labels.rebuild(labelled, ts, keys)
        self._runs[entity] = (events, labels)

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
        self._runs.clear()
        self._indexes.clear()
        self._columns.clear()
        self._tx.clear()
        self._fraud.clear()
        self._coders = {f: {} for f in self.schema.ids}


class _Taken(Mapping[str, np.ndarray]):
    """The event columns at ``rows``, each taken when first read, and the identifiers' codes
    (``CODE + field``); iterating gives the event fields alone."""

    def __init__(self, data: Mapping[str, np.ndarray], rows: np.ndarray, schema: EventSchema) -> None:
        self._data, self._rows, self._fields = data, rows, schema.fields
        self._taken: dict[str, np.ndarray] = {}

    def __getitem__(self, field: str) -> np.ndarray:
        taken = self._taken.get(field)
        if taken is None:
            taken = self._taken[field] = self._data[field][self._rows]
        return taken

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)
