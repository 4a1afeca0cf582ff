"""In-process feature state: the embedded default, needing no server."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from fraudstream.events.batch import TransactionBatch
from fraudstream.state.base import EVENT_FIELDS, FeatureState, History

_Event = tuple[object, ...]


class MemoryFeatureState(FeatureState):
    """Feature state in Python dictionaries, pruned to ``retention`` seconds behind the newest event.

    A first-class backend for one process (the demo, tests, offline replays); it forgets everything
    when the process ends.
    """

    def __init__(self, retention: float, grace: float = 86400.0) -> None:
        self.retention = retention
        self.grace = grace
        self._events: dict[str, dict[str, list[_Event]]] = defaultdict(lambda: defaultdict(list))
        self._labels: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
        self._tx: dict[str, tuple[float, dict[str, str]]] = {}
        self._fraud: set[str] = set()
        self._newest = -np.inf
        self._pruned_at = -np.inf

    def fetch(self, entity: str, keys: np.ndarray, since: float) -> History:
        by_key = self._events.get(entity, {})
        rows: list[_Event] = []
        owners: list[str] = []
        for key in keys:
            for event in by_key.get(key, ()):
                if event[1] >= since:  # type: ignore[operator]
                    rows.append(event)
                    owners.append(key)
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in EVENT_FIELDS]
        events = {
            name: np.array(col, dtype=np.float64 if name in _FLOATS else object)
            for name, col in zip(EVENT_FIELDS, columns, strict=True)
        }
        labels = self._labels.get(entity, {})
        l_key, l_tx, l_time = [], [], []
        for key in keys:
            for tx_time, label_time in labels.get(key, ()):
                if tx_time >= since:
                    l_key.append(key)
                    l_tx.append(tx_time)
                    l_time.append(label_time)
        return History(
            key=np.array(owners, dtype=object),
            events=events,
            label_key=np.array(l_key, dtype=object),
            label_tx_time=np.array(l_tx, dtype=np.float64),
            label_time=np.array(l_time, dtype=np.float64),
        )

    def record(self, batch: TransactionBatch, entities: Mapping[str, str]) -> np.ndarray:
        new = np.zeros(len(batch), dtype=bool)
        columns = [getattr(batch, name).tolist() for name in EVENT_FIELDS]
        entity_keys = {entity: getattr(batch, column).tolist() for entity, column in entities.items()}
        for i, event in enumerate(zip(*columns, strict=True)):
            tx_id = event[0]
            if tx_id in self._tx:
                continue
            new[i] = True
            keys = {entity: values[i] for entity, values in entity_keys.items() if values[i] is not None}
            self._tx[tx_id] = (event[1], keys)
            for entity, key in keys.items():
                self._insert(self._events[entity][key], event)
        if len(batch):
            self._newest = max(self._newest, float(np.nanmax(batch.timestamp)))
        self._maybe_prune()
        return new

    @staticmethod
    def _insert(log: list[_Event], event: _Event) -> None:
        if not log or log[-1][1] <= event[1]:  # type: ignore[operator]
            log.append(event)
            return
        i = len(log)
        while i > 0 and log[i - 1][1] > event[1]:  # type: ignore[operator]
            i -= 1
        log.insert(i, event)

    def record_labels(
        self, transaction_ids: np.ndarray, label_times: np.ndarray, is_fraud: np.ndarray
    ) -> int:
        added = 0
        for tx_id, label_time, fraud in zip(
            transaction_ids.tolist(), label_times.tolist(), is_fraud.tolist(), strict=True
        ):
            if not fraud or tx_id in self._fraud or tx_id not in self._tx:
                continue
            self._fraud.add(tx_id)
            tx_time, keys = self._tx[tx_id]
            for entity, key in keys.items():
                self._labels[entity][key].append((tx_time, label_time))
            added += 1
        return added

    def _maybe_prune(self) -> None:
        if self._newest - self._pruned_at < self.grace:
            return
        horizon = self._newest - self.retention - self.grace
        for logs in self._events.values():
            for key in [k for k, log in logs.items() if log[-1][1] < horizon]:  # type: ignore[operator]
                del logs[key]
            for log in logs.values():
                if log[0][1] < horizon:  # type: ignore[operator]
                    log[:] = [e for e in log if e[1] >= horizon]  # type: ignore[operator]
        for labels in self._labels.values():
            for key in list(labels):
                labels[key] = [x for x in labels[key] if x[0] >= horizon]
                if not labels[key]:
                    del labels[key]
        for tx_id in [t for t, (ts, _) in self._tx.items() if ts < horizon]:
            del self._tx[tx_id]
            self._fraud.discard(tx_id)
        self._pruned_at = self._newest

    def close(self) -> None:
        self._events.clear()
        self._labels.clear()
        self._tx.clear()
        self._fraud.clear()


_FLOATS = {"timestamp", "amount", "latitude", "longitude"}
