"""Feature state in Redis: shared by every worker and the API, and surviving their restarts.

Each call is one Lua script over the whole batch (see :mod:`fraudstream.state._redis_lua`), so a
batch's updates are atomic and cost one round trip; a ``transaction_id`` is claimed with ``SET NX``
before its event is appended, so redelivered or concurrently recorded transactions count once.

A fetch reads only what arrived since this process last read each key (see
:mod:`fraudstream.state._redis_cache`): a 60-day history crosses the network once, not with every batch.
Redis also says how many events each key holds, so a copy that Redis has since lost (expired, cleared)
is noticed and read again. Fetches return exactly what
:class:`~fraudstream.state.memory.MemoryFeatureState` returns for the same calls, which is what keeps live
features identical whichever backend holds the state.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from fraudstream._urls import without_password
from fraudstream.events.batch import TransactionBatch
from fraudstream.state import _redis_codec as codec
from fraudstream.state import _redis_lua as lua
from fraudstream.state._redis_cache import EntityCache, Entry
from fraudstream.state.base import FeatureState, History, StateError

try:
    import redis
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise StateError(
        "the redis:// feature state needs the redis package: pip install 'fraudstream[redis]'"
    ) from exc

DEFAULT_PREFIX = "fraudstream:state:"
RECORDED_CHUNK = 10_000
"""Transaction ids asked about per script call by :meth:`RedisFeatureState.recorded`."""


class RedisFeatureState(FeatureState):
    """Feature state in Redis under ``prefix``, pruned to ``retention + grace`` behind the newest event.

    Pruning follows memory's rule exactly: every ``max(grace, retention / 4)`` of event time the horizon
    moves to ``retention + grace`` behind the newest event; older events and labels are trimmed when their
    entity is next written, are never returned, and labels for them are ignored. An entity (or
    transaction) not written for ``ttl`` seconds of wall-clock time expires (``retention + grace`` by
    default), so idle keys do not accumulate.

    Each process keeps up to ``cache_size`` events, labels and keys per entity kind that it has read
    (roughly 100–150 bytes each), evicting the least recently fetched keys beyond that.
    """

    def __init__(
        self,
        url: str,
        *,
        retention: float,
        grace: float = 86400.0,
        prefix: str = DEFAULT_PREFIX,
        ttl: float | None = None,
        cache_size: int = 1_000_000,
    ) -> None:
        self.url = without_password(url)
        self.retention = retention
        self.grace = grace
        self.prefix = prefix
        self._span = repr(float(retention + grace))
        self._every = repr(float(max(grace, retention / 4)))
        self._ttl = str(max(1, math.ceil(ttl if ttl is not None else retention + grace)))
        self.cache_size = cache_size
        self._caches: dict[str, EntityCache] = {}
        self._lock = threading.Lock()
        self._epoch: bytes | None = None
        self._seen = 0
        try:
            self._client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=60)
        except ValueError as exc:
            raise StateError(f"invalid Redis URL {self.url!r}: {exc}") from exc
        self._record = self._client.register_script(lua.RECORD)
        self._labels = self._client.register_script(lua.LABELS)
        self._fetch = self._client.register_script(lua.FETCH)
        self._recorded = self._client.register_script(lua.RECORDED)
        with self._guard():
            self._client.ping()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StateError(f"cannot reach Redis at {self.url}: is it running? `make services`") from exc
        except redis.RedisError as exc:
            raise StateError(f"Redis feature state at {self.url} failed: {exc}") from exc

    def fetch(self, entity: str, keys: np.ndarray, since: float) -> History:
        asked = keys.tolist()
        wanted = [k for k in dict.fromkeys(asked) if k is not None]
        if not wanted:
            return History.empty()
        with self._lock:
            cache = self._cache(entity)
            entries = cache.entries_for(wanted)
            reply = self._read(entity, wanted, entries)
            if reply[0] != self._epoch or int(reply[1]) < self._seen:
                # First read, or the state was deleted or restored from an older copy: start afresh.
                self._caches.clear()
                cache = self._cache(entity)
                entries = cache.entries_for(wanted)
                reply = self._read(entity, wanted, entries)
                self._epoch = reply[0]
            try:
                self._apply(cache, entries, reply)
            except BaseException:
                del self._caches[entity]  # a half-merged copy is not to be trusted
                raise
            self._seen = int(reply[1])
            history = cache.history(asked, max(since, cache.horizon))
            cache.evict()
        return history

    def _cache(self, entity: str) -> EntityCache:
        cache = self._caches.get(entity)
        if cache is None:
            cache = self._caches[entity] = EntityCache(self.cache_size)
        return cache

    def _read(self, entity: str, keys: list[object], entries: list[Entry]) -> list[Any]:
        """What arrived for ``keys`` since each entry last read them: one script call."""
        lasts = codec.FIELD.join(str(e.last) for e in entries)
        names = codec.joined(codec.strings(np.array(keys, dtype=object)))
        with self._guard():
            return list(self._fetch(args=[self.prefix, entity, self._span, names, lasts]))

    @staticmethod
    def _apply(cache: EntityCache, entries: list[Entry], reply: list[Any]) -> None:
        """Merge a fetch reply into the cache; a key whose set was recreated since is replaced whole."""
        _, raw_seq, raw_h, raw_gens, raw_counts, raw_events, raw_lcounts, raw_labels = reply
        horizon = float(raw_h) if raw_h else -math.inf
        if horizon > cache.horizon:
            cache.prune(horizon)
        for entry, gen in zip(entries, raw_gens.split(b","), strict=True):
            if gen != entry.gen and not (gen and entry.gen and float(gen) == float(entry.gen)):
                cache.reset(entry)
                entry.gen = gen
        n_events, n_labels = codec.counts(raw_counts), codec.counts(raw_lcounts)
        if n_events.any():
            events = codec.decode_events(b"\x1f".join(raw_events), int(n_events.sum()))
            cache.add_events(entries, n_events, events)
        if n_labels.any():
            labels = codec.decode_labels(b"\x1f".join(raw_labels), int(n_labels.sum()))
            cache.add_labels(entries, n_labels, *labels)
        seq = int(raw_seq)
        for entry in entries:
            entry.last = seq

    def record(self, batch: TransactionBatch, entities: Mapping[str, str]) -> np.ndarray:
        n = len(batch)
        if n == 0:
            return np.zeros(0, dtype=bool)
        names = list(entities)
        args = [
            self.prefix,
            self._ttl,
            self._span,
            self._every,
            str(n),
            str(len(names)),
            *names,
            codec.joined(codec.strings(batch.transaction_id)),
            codec.FIELD.join(map(repr, batch.timestamp.astype(np.float64).tolist())),
            codec.encode_events(batch),
            *(codec.joined(codec.strings(getattr(batch, entities[e]))) for e in names),
        ]
        with self._guard():
            flags = self._record(args=args)
        return np.frombuffer(flags, dtype=np.uint8) == ord("1")

    def recorded(self, transaction_ids: np.ndarray) -> np.ndarray:
        """Which of these transactions are recorded, from their ``x:`` markers: one script call per
        :data:`RECORDED_CHUNK` ids. It spares a worker looking up stored decisions for transactions
        no process has recorded. An id holding the separator, which :meth:`record` refuses, is
        answered True ("cannot say") rather than refused."""
        ids = codec.strings(np.asarray(transaction_ids, dtype=object))
        out = np.ones(len(ids), dtype=bool)
        ask: slice | np.ndarray = slice(None)
        asked = ids
        if codec.FIELD in "".join(ids):  # rare: ask only about the ids ``record`` accepts
            ask = np.flatnonzero([codec.FIELD not in t for t in ids])
            asked = [ids[i] for i in ask.tolist()]
        flags, marker = [], f"{self.prefix}x:"
        with self._guard():
            for lo in range(0, len(asked), RECORDED_CHUNK):
                chunk = marker + (codec.FIELD + marker).join(asked[lo : lo + RECORDED_CHUNK])
                flags.append(self._recorded(args=[chunk]))
        out[ask] = np.frombuffer(b"".join(flags), dtype=np.uint8) == ord("1")
        return out

    def record_labels(
        self, transaction_ids: np.ndarray, label_times: np.ndarray, is_fraud: np.ndarray
    ) -> int:
        fraud = np.asarray(is_fraud).astype(bool)
        if not fraud.any():
            return 0
        ids = np.asarray(transaction_ids, dtype=object)[fraud]
        times = np.asarray(label_times, dtype=np.float64)[fraud]
        args = [
            self.prefix,
            self._ttl,
            self._span,
            str(len(ids)),
            codec.joined(codec.strings(ids)),
            codec.hex_floats(times),
        ]
        with self._guard():
            return int(self._labels(args=args))

    def ping(self) -> str:
        """``Redis <version>`` of the server holding the state; :class:`StateError` when unreachable."""
        with self._guard():
            info = self._client.info("server")
        return f"Redis {info.get('redis_version', '?')}"

    def clear(self) -> int:
        """Delete every key under the prefix (tests, resets); returns how many were deleted."""
        with self._lock:
            self._caches.clear()
        deleted = 0
        with self._guard():
            keys = list(self._client.scan_iter(match=f"{self.prefix}*", count=1000))
            for lo in range(0, len(keys), 1000):
                deleted += int(self._client.unlink(*keys[lo : lo + 1000]))
        return deleted

    def close(self) -> None:
        with self._lock:
            self._caches.clear()
        self._client.close()
        self._client.connection_pool.disconnect()
