"""Feature state in Redis: shared by every worker and the API, and surviving their restarts.

Each call is one Lua script over the whole batch (see :mod:`fraudstream.state._redis_lua`), so a
batch's updates are atomic and cost one round trip; a ``transaction_id`` is claimed with ``SET NX``
before its event is appended, so redelivered or concurrently recorded transactions count once. Fetches
return exactly what :class:`~fraudstream.state.memory.MemoryFeatureState` returns for the same calls,
which is what keeps live features identical whichever backend holds the state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlparse

import numpy as np

from fraudstream.events.batch import TransactionBatch
from fraudstream.state import _redis_codec as codec
from fraudstream.state import _redis_lua as lua
from fraudstream.state.base import FeatureState, History, StateError

try:
    import redis
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise StateError(
        "the redis:// feature state needs the redis package: pip install 'fraudstream[redis]'"
    ) from exc

DEFAULT_PREFIX = "fraudstream:state:"


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@")).geturl()


class RedisFeatureState(FeatureState):
    """Feature state in Redis under ``prefix``, pruned to ``retention + grace`` behind the newest event.

    Pruning follows memory's rule exactly: every ``max(grace, retention / 4)`` of event time the horizon
    moves to ``retention + grace`` behind the newest event; older events and labels are trimmed when their
    entity is next written, are never returned, and labels for them are ignored. An entity (or
    transaction) not written for ``ttl`` seconds of wall-clock time expires (``retention + grace`` by
    default), so idle keys do not accumulate.
    """

    def __init__(
        self,
        url: str,
        *,
        retention: float,
        grace: float = 86400.0,
        prefix: str = DEFAULT_PREFIX,
        ttl: float | None = None,
    ) -> None:
        self.url = _safe(url)
        self.retention = retention
        self.grace = grace
        self.prefix = prefix
        self._span = repr(float(retention + grace))
        self._every = repr(float(max(grace, retention / 4)))
        self._ttl = str(max(1, math.ceil(ttl if ttl is not None else retention + grace)))
        try:
            self._client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=60)
        except ValueError as exc:
            raise StateError(f"invalid Redis URL {self.url!r}: {exc}") from exc
        self._record = self._client.register_script(lua.RECORD)
        self._labels = self._client.register_script(lua.LABELS)
        self._fetch = self._client.register_script(lua.FETCH)
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
        if len(keys) == 0:
            return History.empty()
        args = [self.prefix, entity, repr(float(since)), self._span, codec.joined(codec.strings(keys))]
        with self._guard():
            raw_counts, raw_events, raw_lcounts, raw_labels = self._fetch(args=args)
        n_events, n_labels = codec.counts(raw_counts), codec.counts(raw_lcounts)
        owners = np.asarray(keys, dtype=object)
        tx_time, label_time = codec.decode_labels(b"\x1f".join(raw_labels), int(n_labels.sum()))
        return History(
            key=np.repeat(owners, n_events),
            events=codec.decode_events(b"\x1f".join(raw_events), int(n_events.sum())),
            label_key=np.repeat(owners, n_labels),
            label_tx_time=tx_time,
            label_time=label_time,
        )

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

    def clear(self) -> int:
        """Delete every key under the prefix (tests, resets); returns how many were deleted."""
        deleted = 0
        with self._guard():
            keys = list(self._client.scan_iter(match=f"{self.prefix}*", count=1000))
            for lo in range(0, len(keys), 1000):
                deleted += int(self._client.unlink(*keys[lo : lo + 1000]))
        return deleted

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()
