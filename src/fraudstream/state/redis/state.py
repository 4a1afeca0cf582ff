"""Feature state in Redis: shared by every worker and the API, and surviving their restarts.

Redis holds a log of what was recorded (see :mod:`fraudstream.state.redis._lua`): one entry per batch,
appended by one script call that also claims each ``transaction_id`` with ``SET NX``, so redelivered or
concurrently recorded transactions count once and a batch's update is atomic. Every process replays the
log, in its order, into an in-memory replica, and answers fetches from it after reading what arrived
since its last read (one round trip, usually a few entries). Each process's replica therefore holds
exactly what a single :class:`~fraudstream.state.memory.MemoryFeatureState` fed the same batches would,
which is what keeps live features identical whichever backend holds the state.

A state found absent is initialised before anything is read from it or written to it: rebuilt from
storage by the ``rebuild`` callback when the process has one (the API and the workers do: the decided
transactions and fraud labels within retention, as the in-memory state is warmed), else created empty.
That is what keeps a Redis that came back empty (restarted without persistence, flushed, failed over to
a replica without it) from silently scoring on empty histories: one process rebuilds while the others
refuse to score (:class:`StateError`, so a worker retries and the API answers 503), and a write
computed against the lost state is refused too. A process without ``rebuild`` that had read the state
refuses to score until another process initialises it again.

Why a log and not a key per entity: a batch then costs Redis one claim per transaction and one append,
instead of a sorted-set insert and a read per entity key and a script that formats every member
(docs/decisions/0014-redis-feature-state-as-one-log.md). The price is memory: each
process keeps the whole retained history, as the embedded state does.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

import numpy as np

from fraudstream._urls import without_password
from fraudstream.state.base import (
    DEFAULT_SCHEMA,
    EventColumns,
    EventSchema,
    FeatureState,
    History,
    KeyIndex,
    StateError,
)
from fraudstream.state.memory import MemoryFeatureState
from fraudstream.state.redis import _codec as codec
from fraudstream.state.redis import _lua as lua

try:
    import redis
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise StateError(
        "the redis:// feature state needs the redis package: pip install 'fraudstream[redis]'"
    ) from exc

log = logging.getLogger("fraudstream.state.redis")
DEFAULT_PREFIX = "fraudstream:state:"
READ_COUNT = 1_000
"""Log entries read per round trip when catching up."""
BUILDING = b"b:"
"""How the epoch of a state being rebuilt starts."""


TURN_SECONDS = 5.0
"""How long a process may hold the state's turn before it expires (see :meth:`RedisFeatureState.turn`)."""
TURN_WAIT = 30.0
"""How long a process waits for the turn before giving up with a :class:`StateError`."""


class _Turn:
    """The state's turn as a context manager, with Redis's errors as :class:`StateError`."""

    def __init__(self, lock: Any, state: RedisFeatureState) -> None:
        self._lock, self._state = lock, state

    def __enter__(self) -> None:
        with self._state._guard():
            if not self._lock.acquire():
                raise StateError(
                    f"another process has held the turn of the Redis feature state at {self._state.url} "
                    f"for more than {TURN_WAIT:g} s"
                )

    def __exit__(self, *exc: object) -> None:
        try:
            self._lock.release()
        except redis.exceptions.LockError:  # held past TURN_SECONDS: it expired, another has it now
            log.warning("the feature state's turn expired before this batch was recorded")
        except redis.RedisError as error:  # unreachable: the turn expires by itself
            log.warning("could not give the feature state's turn back: %s", error)


def _new_epoch() -> bytes:
    """A fresh epoch: when, and a random part, so no two initialisations share one."""
    return f"{time.time():.6f}-{secrets.token_hex(4)}".encode()


def _newest(times: np.ndarray) -> str:
    """The newest of these event times as an exact string, or ``""`` when none is a number."""
    finite = times[~np.isnan(times)]
    return repr(float(finite.max())) if finite.size else ""


class RedisFeatureState(FeatureState):
    """Feature state in Redis under ``prefix``, pruned to ``retention + grace`` behind the newest event.

    Pruning follows memory's rule exactly: every ``max(grace, retention / 4)`` of event time the horizon
    moves to ``retention + grace`` behind the newest event; replicas forget what is behind it, labels for
    it are ignored, and the log's entries wholly behind it are trimmed. A state nobody writes to for
    ``ttl`` seconds of wall-clock time expires whole, as does each transaction's idempotency mark
    ``ttl`` after it was recorded. By default ``ttl`` is the longest a replica holds an event
    (``retention + grace`` and a pruning step) and ``grace`` more, so a mark outlives its event.

    ``rebuild(state)`` fills an absent state from storage and returns how many transactions it
    recorded (see the module's docstring); without it an absent state is created empty.
    """

    def __init__(
        self,
        url: str,
        *,
        retention: float,
        grace: float = 86400.0,
        prefix: str = DEFAULT_PREFIX,
        ttl: float | None = None,
        schema: EventSchema = DEFAULT_SCHEMA,
        rebuild: Callable[[FeatureState], int] | None = None,
    ) -> None:
        self.url = without_password(url)
        self.rebuild = rebuild
        self.schema = schema
        self.retention = retention
        self.grace = grace
        self.prefix = prefix
        self._span = repr(float(retention + grace))
        self._every = repr(float(max(grace, retention / 4)))
        held = retention + grace + max(grace, retention / 4)
        self._ttl = str(max(1, math.ceil(ttl if ttl is not None else held + grace)))
        self._lock = threading.RLock()
        self._steady = False
        self._replica = MemoryFeatureState(retention, grace, schema)
        self._epoch: bytes | None = None
        self._seen = False  # this process has read an initialised state: its absence is a loss
        self._last = b""
        self._pruned = -math.inf
        self._names_seen, self._schema_seen = b"", schema
        try:
            self._client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=60)
        except ValueError as exc:
            raise StateError(f"invalid Redis URL {self.url!r}: {exc}") from exc
        self._record = self._client.register_script(lua.RECORD)
        self._labels = self._client.register_script(lua.LABELS)
        self._read = self._client.register_script(lua.READ)
        self._swap = self._client.register_script(lua.SWAP)
        with self._guard():
            self._client.ping()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StateError(f"cannot reach Redis at {self.url}: is it running? `make services`") from exc
        except redis.ResponseError as exc:
            if str(exc).startswith(lua.STALE):
                raise StateError(
                    f"the Redis feature state at {self.url} was lost or rebuilt while this batch was scored: "
                    "not recorded, and scoring it again reads the state as it is now"
                ) from exc
            raise StateError(f"Redis feature state at {self.url} failed: {exc}") from exc
        except redis.RedisError as exc:
            raise StateError(f"Redis feature state at {self.url} failed: {exc}") from exc

    def fetch(self, entity: str, keys: np.ndarray, since: float) -> History:
        with self._lock:
            self._fresh()
            return self._replica.fetch(entity, keys, since)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Catch up once, then answer every fetch inside from that one view (the entities of one batch
        then come from one moment, in one round trip instead of one per entity)."""
        with self._lock:
            self._catch_up()
            self._steady = True
            try:
                yield
            finally:
                self._steady = False

    def turn(self) -> AbstractContextManager[None]:
        """A Redis lock on the state (``<prefix>turn``) taken by every process deciding on it, so that
        each batch reads what the batches decided before it recorded, whichever process decided them.

        It expires :data:`TURN_SECONDS` after it was taken, so a process killed while holding it stops
        the others no longer than that; a batch that takes longer (a database that hangs) lets the next
        one in. Waiting longer than :data:`TURN_WAIT` for it is a :class:`StateError`: the caller
        retries (a worker) or answers 503 (the API)."""
        return _Turn(
            self._client.lock(
                f"{self.prefix}turn", timeout=TURN_SECONDS, sleep=0.0005, blocking_timeout=TURN_WAIT,
                thread_local=False,
            ),
            self,
        )  # fmt: skip

    def _fresh(self) -> None:
        if not self._steady:
            self._catch_up()

    def columns(self) -> EventColumns:
        """The replica's events (see :meth:`MemoryFeatureState.columns`)."""
        with self._lock:
            self._fresh()
            return self._replica.columns()

    def index(self, entity: str) -> KeyIndex | None:
        """The replica's index of ``entity`` (see :meth:`MemoryFeatureState.index`)."""
        with self._lock:
            self._fresh()
            return self._replica.index(entity)

    def positions(self, transaction_ids: np.ndarray) -> np.ndarray:
        """Where the replica holds these transactions (see :meth:`MemoryFeatureState.positions`)."""
        with self._lock:
            self._fresh()
            return self._replica.positions(transaction_ids)

    def codes(self, field: str, values: np.ndarray) -> np.ndarray:
        """The replica's codes (see :meth:`MemoryFeatureState.codes`)."""
        with self._lock:
            return self._replica.codes(field, values)

    def _catch_up(self) -> None:
        """Replay what the log gained since the last read; start afresh when the state was initialised
        again (its epoch changed) or restored from an older copy (the entry read last is gone, yet not
        trimmed); initialise it when it is absent (see :meth:`_initialise`)."""
        while True:
            with self._guard():
                epoch, kept, entries = self._read(args=[self.prefix, self._last, READ_COUNT])
            if epoch != self._epoch or not kept:
                if not epoch:
                    self._initialise()
                    continue
                if epoch.startswith(BUILDING):
                    raise StateError(
                        f"the Redis feature state at {self.url} (keys {self.prefix}*) is being rebuilt from "
                        "storage by another process; scoring resumes once it is done"
                    )
                fresh = self._epoch is None and not self._last
                if not fresh and epoch != self._epoch:
                    log.warning("the Redis feature state at %s was initialised again: read afresh", self.url)
                self._epoch, self._seen = epoch, True
                if not fresh:
                    self._reset()
                    continue
            try:
                self._apply(entries)
            except BaseException:
                self._reset()  # a half-applied entry is not to be trusted: read it all again next time
                raise
            if len(entries) < READ_COUNT:
                return

    def _initialise(self) -> None:
        """The state is absent: rebuild it from storage, or create it empty without ``rebuild``.

        Absent while this process had read it means it was lost (Redis restarted without persistence,
        was flushed or failed over, or the state expired unused): said loudly, and without ``rebuild``
        refused, since scoring on would use empty histories. One process rebuilds, holding the epoch
        ``b:<token>`` meanwhile; others find it so and refuse to score until it is done.
        """
        lost = self._seen
        self._reset()
        if lost:
            log.error(
                "the Redis feature state at %s (keys %s*) is gone: Redis restarted without persistence, was "
                "flushed or failed over, or the state expired unused; %s",
                self.url, self.prefix, "rebuilding it from storage" if self.rebuild else "scoring stops",
            )  # fmt: skip
        if self.rebuild is None:
            if lost:
                raise StateError(
                    f"the Redis feature state at {self.url} (keys {self.prefix}*) is gone (Redis restarted "
                    "without persistence, was flushed or failed over) and this process cannot rebuild it: "
                    "scoring on would use empty histories. Restart the API or a worker (they rebuild it from "
                    "the database when it is missing) and run Redis with appendonly yes"
                )
            with self._guard():
                self._swap(args=[self.prefix, "", _new_epoch(), self._ttl])
            return
        token = BUILDING + secrets.token_hex(8).encode()
        with self._guard():
            if not self._swap(args=[self.prefix, "", token, lua.BUILD_TTL]):
                return  # another process got there first: the next read finds its epoch
        self._epoch = token
        try:
            started = time.monotonic()
            count = self.rebuild(self)
            final = _new_epoch()
            with self._guard():
                finished = self._swap(args=[self.prefix, token, final, self._ttl])
            if not finished:
                raise StateError(
                    f"rebuilding the Redis feature state at {self.url} took over {lua.BUILD_TTL} s between "
                    "writes, and another process took it over"
                )
        except BaseException:
            with suppress(redis.RedisError):  # give it up at once, for another process to rebuild
                self._swap(args=[self.prefix, token, "", 0])
            self._reset()
            raise
        self._epoch, self._seen = final, True
        log.warning(
            "rebuilt the Redis feature state at %s from %d stored transactions in %.1f s",
            self.url, count, time.monotonic() - started,
        )  # fmt: skip

    def _reset(self) -> None:
        self._replica.close()
        self._replica = MemoryFeatureState(self.retention, self.grace, self.schema)
        self._last, self._pruned, self._epoch = b"", -math.inf, None

    def _apply(self, entries: list[Any]) -> None:
        """Replay entries in log order. Consecutive batches under one horizon go to the replica as one."""
        pending: list[dict[str, np.ndarray]] = []
        names: bytes | None = None
        for entry_id, raw in entries:
            fields = dict(zip(raw[::2], raw[1::2], strict=True))
            if b"l" in fields:
                self._append(pending, names)
                pending = []
                ids, times = codec.decode_labels(fields[b"l"], fields[b"lt"])
                self._replica.record_labels(ids, times, np.ones(len(ids), dtype=bool))
            else:
                if names is not None and fields[b"n"] != names:
                    self._append(pending, names)
                    pending = []
                names = fields[b"n"]
                written = self._written(names)
                columns = codec.decode_events(fields[b"x"], fields[b"f"], fields[b"s"], written, self.schema)
                new = np.frombuffer(fields[b"m"], dtype=np.uint8) == ord("1")
                pending.append(columns if new.all() else {f: c[new] for f, c in columns.items()})
                pruned = float(fields[b"p"]) if fields[b"p"] else -math.inf
                if pruned != self._pruned:
                    self._append(pending, names)
                    pending = []
                    self._pruned = pruned
                    self._replica.prune(pruned)
            self._last = entry_id
        self._append(pending, names)

    def _append(self, pending: list[dict[str, np.ndarray]], names: bytes | None) -> None:
        """The pending entries' new rows into the replica; a row it holds already (its mark expired
        while the replica still held it) is dropped, as memory would drop it."""
        if not pending or names is None:
            return
        columns = (
            pending[0]
            if len(pending) == 1
            else {f: np.concatenate([p[f] for p in pending]) for f in self.schema.fields}
        )
        unseen = self._replica.unseen(columns["transaction_id"])
        if not unseen.all():
            columns = {f: c[unseen] for f, c in columns.items()}
        self._replica.append_events(columns, codec.decode_entity_map(names)[0])

    def _written(self, names: bytes) -> EventSchema:
        """The schema an entry was written with (cached: every entry of a writer names the same)."""
        if names != self._names_seen:
            self._names_seen, self._schema_seen = names, codec.decode_entity_map(names)[1]
        return self._schema_seen

    def record(self, events: Mapping[str, np.ndarray], entities: Mapping[str, str]) -> np.ndarray:
        n = len(events["transaction_id"])
        if n == 0:
            return np.zeros(0, dtype=bool)
        floats, text = codec.encode_events(events, self.schema)
        epoch = self._current_epoch()
        args: list[str | bytes] = [
            self.prefix,
            self._ttl,
            self._span,
            self._every,
            codec.entity_map(entities, self.schema),
            codec.joined(codec.strings(events["transaction_id"])),
            _newest(events["timestamp"]),
            floats,
            text,
            epoch,
        ]
        with self._guard():
            flags = self._record(args=args)
        return np.frombuffer(flags, dtype=np.uint8) == ord("1")

    def _current_epoch(self) -> bytes:
        """The epoch this process read, reading (and if need be initialising) the state first."""
        with self._lock:
            if self._epoch is None:
                self._catch_up()
            assert self._epoch is not None
            return self._epoch

    def recorded(self, transaction_ids: np.ndarray) -> np.ndarray:
        """Which of these transactions the state holds (recorded by any process, not pruned), from the
        caught-up replica: what the in-memory state answers."""
        with self._lock:
            self._fresh()
            return self._replica.recorded(transaction_ids)

    def record_labels(
        self, transaction_ids: np.ndarray, label_times: np.ndarray, is_fraud: np.ndarray
    ) -> int:
        """Labels count for transactions this process's replica holds once it has caught up: recorded by
        anybody and not pruned, as in memory; Redis then says which were not labelled already."""
        fraud = np.asarray(is_fraud).astype(bool)
        if not fraud.any():
            return 0
        ids = np.asarray(transaction_ids, dtype=object)[fraud]
        times = np.asarray(label_times, dtype=np.float64)[fraud]
        with self._lock:
            self._fresh()
            held, tx_times = self._replica.held(ids)
            epoch = self._current_epoch()
        if not held.any():
            return 0
        args: list[str | bytes] = [
            self.prefix,
            self._ttl,
            codec.joined(codec.strings(ids[held])),
            codec.exact(times[held]),
            _newest(tx_times),
            epoch,
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
            self._reset()
            self._seen = False  # deleted on purpose: not a loss
        deleted = 0
        with self._guard():
            keys = list(self._client.scan_iter(match=f"{self.prefix}*", count=1000))
            for lo in range(0, len(keys), 1000):
                deleted += int(self._client.unlink(*keys[lo : lo + 1000]))
        return deleted

    def close(self) -> None:
        with self._lock:
            self._replica.close()
        self._client.close()
        self._client.connection_pool.disconnect()
