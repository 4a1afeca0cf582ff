"""Redis Streams: one stream per topic, read by a consumer group of workers that may die at any time.

A consumer group remembers what it gave each consumer (its pending entries) until ``XACK``, so a
worker killed mid-batch leaves its messages pending. Every consumer keeps itself marked alive from a
thread of its own (a heartbeat in a sorted set, by Redis's clock); one whose heartbeat has stopped for
``dead_after_seconds`` is dead, and the next read of any other consumer takes its pending messages
over and returns them, oldest first, before anything new. So a dead worker's batch is decided before
the messages published after it, bar those read in the seconds it took to notice. Messages a consumer
hands back (:meth:`~RedisStreamsBroker.release`) go the same way at once. Entries held longer than
``claim_idle_seconds`` by anyone (a hung worker that still beats, a client of another kind) are taken
over with ``XAUTOCLAIM``, now and then.

Streams are capped without ever losing work: once a stream holds more than ``maxlen`` entries, only
entries that every group has been given *and* has acknowledged are trimmed (``XTRIM MINID``), so
``maxlen`` is a soft target. A stream that no group reads (a results stream nobody subscribed to) is a
plain capped log.

A Redis that restarted without persistence, was flushed or failed over to a replica that lacked them has
lost the groups: wherever Redis answers ``NOGROUP`` the group is created again and the call retried, and
every publish to a stream the workers read creates it when missing, in the same script call, so such a
stream is never capped unread.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fraudstream._urls import split_prefix, without_password
from fraudstream.brokers.base import Broker, BrokerError, Message
from fraudstream.brokers.redis._entries import (
    BEAT,
    DEAD,
    NO_KEY,
    PUBLISH,
    PUBLISH_CHUNK,
    encode,
    entry_id,
    message_of,
    reply_entries,
    text,
    unparsed,
)

log = logging.getLogger("fraudstream.brokers.redis")
DEFAULT_PREFIX = "fraudstream:"
#: A longer ``max_wait`` blocks in slices of this, so the socket timeout can stay finite.
MAX_BLOCK_MS = 10_000
ACK_CHUNK = 10_000
LATE_POLL_MS = 50
"""How often a read waiting on a consumer that is late with its heartbeat looks again."""
EARLIER_POLL = (0.001, 0.008)
"""How soon a consumer waiting for earlier messages to be acknowledged looks again (seconds): first
after the shorter pause, then after twice the last, up to the longer, so a short wait ends soon and a
long one (another worker deciding a large batch) does not keep both processes and Redis busy asking."""
RELEASED = "~released"
"""The consumer that holds what consumers handed back until the next read of any consumer takes it."""


def beat_ms(dead_after_ms: int) -> int:
    """How often a consumer beats: four times within ``dead_after_ms``, and at least every 250 ms, so
    that a consumer two beats late (dead, most likely) is noticed within half a second."""
    return max(1, min(dead_after_ms // 4, 250))


class _Heartbeat:
    """Marks one consumer alive every :func:`beat_ms` from a daemon thread with its own connection, so
    that a batch however long, or a read blocked in Redis, never looks like death; a process that dies
    stops beating with it."""

    def __init__(self, client: Any, key: str, consumer: str, dead_after_ms: int) -> None:
        self._client, self._key, self._consumer, self._ms = client, key, consumer, dead_after_ms
        self._every = beat_ms(dead_after_ms) / 1000
        self._beat = client.register_script(BEAT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {consumer}", daemon=True)

    def start(self) -> None:
        self._beat(keys=[self._key], args=[self._consumer, self._ms])  # alive before its first read
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._beat(keys=[self._key], args=[self._consumer, self._ms])
            except Exception as error:  # Redis away for a while: the next beat tries again
                log.debug("redis heartbeat of %s failed: %s", self._consumer, error)

    def stop(self) -> None:
        """Stop beating and leave the set."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            self._client.zrem(self._key, self._consumer)
        except Exception:  # the server is gone: the beat runs out by itself
            pass
        finally:
            self._client.close()


class RedisStreamsBroker(Broker):
    """Topics as Redis streams ``<prefix><topic>``, consumed by the consumer group ``group``.

    ``url`` is ``redis://host:port/db``, optionally ``?prefix=name:`` to share one Redis between
    deployments. ``input_topics`` are the topics workers read: publishing to one creates the group
    first, so what is published before the first worker starts is never trimmed.
    """

    def __init__(
        self,
        url: str,
        *,
        group: str = "fraudstream",
        consumer: str | None = None,
        prefix: str | None = None,
        claim_idle_seconds: float = 30.0,
        dead_after_seconds: float = 3.0,
        maxlen: int = 1_000_000,
        input_topics: Collection[str] = ("transactions",),
        trim_interval: float = 1.0,
    ) -> None:
        try:
            import redis
        except ImportError as error:
            raise BrokerError("the Redis broker needs redis-py: pip install 'fraudstream[redis]'") from error
        target, url_prefix = split_prefix(url)
        self.url = without_password(urlunsplit(urlsplit(url)._replace(query="")))
        self.prefix = prefix if prefix is not None else url_prefix or DEFAULT_PREFIX
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.claim_idle_ms = max(1, round(claim_idle_seconds * 1000))
        self.dead_after_ms = max(1, round(dead_after_seconds * 1000))
        self._alive_key = f"{self.prefix}alive:{group}"
        self._target = target
        self._heartbeat: _Heartbeat | None = None
        self.maxlen = maxlen
        self.input_topics = frozenset(input_topics)
        self.trim_interval = trim_interval
        self._redis = redis
        self._groups: set[str] = set()
        self._claim_due: dict[str, float] = {}
        self._claim_from: dict[str, bytes | str] = {}
        self._trim_due: dict[str, float] = {}
        self._closed = False
        with self._errors():
            try:
                self._client: Any = redis.Redis.from_url(
                    target,
                    socket_connect_timeout=5,
                    socket_timeout=MAX_BLOCK_MS / 1000 + 10,
                    health_check_interval=30,
                )
            except ValueError as error:
                raise BrokerError(f"bad Redis URL {self.url}: {error}") from None
            self._client.ping()
        self._client.set_response_callback("XREADGROUP", unparsed)
        self._publish = self._client.register_script(PUBLISH)
        self._dead = self._client.register_script(DEAD)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._redis.ConnectionError as error:
            raise BrokerError(
                f"cannot reach Redis at {self.url} ({error}): is Redis running? `make services`"
            ) from error
        except self._redis.TimeoutError as error:
            raise BrokerError(f"Redis at {self.url} timed out ({error}): is it overloaded?") from error
        except self._redis.RedisError as error:
            raise BrokerError(f"Redis at {self.url}: {error}") from error

    def stream(self, topic: str) -> str:
        """The Redis key of ``topic``'s stream."""
        return f"{self.prefix}{topic}"

    def _ensure_group(self, stream: str) -> None:
        if stream in self._groups:
            return
        try:
            self._client.xgroup_create(stream, self.group, id="0", mkstream=True)
        except self._redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._groups.add(stream)

    def publish(self, topic: str, messages: Sequence[tuple[str | None, Any]]) -> None:
        """Append the batch with one script call per :data:`PUBLISH_CHUNK` messages, each chunk all at
        once; trims only what no group still needs."""
        if not messages:
            return
        stream = self.stream(topic)
        group = self.group if topic in self.input_topics else ""
        with self._errors():
            length = 0
            for lo in range(0, len(messages), PUBLISH_CHUNK):
                args: list[bytes | str] = [group]
                for key, payload in messages[lo : lo + PUBLISH_CHUNK]:
                    args += (encode(payload), NO_KEY if key is None else key)
                length = int(self._publish(keys=[stream], args=args))
            if length > self.maxlen:
                self._trim(stream)

    def _lost_group(self, stream: str, error: Exception) -> None:
        """After ``NOGROUP``: the group (or the whole stream) is gone; create it again. What it had
        handed out and not acknowledged went with it."""
        if "NOGROUP" not in str(error):
            raise error
        log.warning(
            "redis %s: consumer group %r of %s was gone (Redis restarted without persistence, was flushed "
            "or failed over); created again",
            self.url, self.group, stream,
        )  # fmt: skip
        self._groups.discard(stream)
        self._claim_due.pop(stream, None)
        self._claim_from.pop(stream, None)
        self._ensure_group(stream)

    def consume(self, topic: str, max_messages: int, max_wait: float) -> list[Message]:
        """Reclaimed messages of dead consumers first, else new ones (``XREADGROUP COUNT BLOCK``)."""
        if max_messages <= 0:
            return []
        stream = self.stream(topic)
        deadline = time.monotonic() + max_wait
        with self._errors():
            try:
                return self._consume(stream, max_messages, deadline)
            except self._redis.ResponseError as error:
                self._lost_group(stream, error)
            return self._consume(stream, max_messages, deadline)

    def _consume(self, stream: str, count: int, deadline: float) -> list[Message]:
        self._ensure_group(stream)
        if self._heartbeat is None:
            client = self._redis.Redis.from_url(self._target, socket_connect_timeout=5, socket_timeout=5)
            self._heartbeat = _Heartbeat(client, self._alive_key, self.consumer, self.dead_after_ms)
            self._heartbeat.start()
        while True:
            taken, late = self._take_over(stream, count)
            taken = taken or self._reclaim(stream, count)
            if taken:
                return taken
            left_ms = round((deadline - time.monotonic()) * 1000)
            if late:  # a consumer holding older messages missed its beats: dead or stalled, soon known
                if left_ms <= 0:
                    return []
                time.sleep(min(left_ms, LATE_POLL_MS) / 1000)
                continue
            block = min(left_ms, MAX_BLOCK_MS) if left_ms > 0 else None  # BLOCK 0 waits forever
            messages = self._read(stream, count, block)
            if messages or block is None or left_ms <= MAX_BLOCK_MS:
                return messages

    def _read(self, stream: str, count: int, block: int | None) -> list[Message]:
        reply = self._client.xreadgroup(self.group, self.consumer, {stream: ">"}, count=count, block=block)
        return [message_of(i, f) for i, f in reply_entries(reply) if f is not None]

    def earlier_done(self, topic: str, messages: Sequence[Message]) -> bool:
        """Wait while another live consumer holds an entry older than these (polling ``XPENDING``),
        at most ``claim_idle_seconds``, after which the entry is anyone's to take over anyway."""
        if not messages:
            return True
        stream = self.stream(topic)
        first = min((m.id for m in messages), key=entry_id)
        deadline = time.monotonic() + self.claim_idle_ms / 1000
        checked = 0.0
        pause, longest = EARLIER_POLL
        with self._errors():
            while time.monotonic() < deadline:
                try:
                    older = self._client.xpending_range(stream, self.group, min="-", max=f"({first}", count=1)
                except self._redis.ResponseError as error:
                    self._lost_group(stream, error)  # what was pending went with the group
                    return True
                if not older:
                    return True
                owner = text(older[0]["consumer"])
                if owner == RELEASED:
                    return False
                now = time.monotonic()
                if now - checked >= LATE_POLL_MS / 1000:  # is its holder dead?
                    checked = now
                    dead, _ = self._dead(keys=[stream, self._alive_key], args=self._dead_args())
                    if owner in {text(d) for d in dead}:
                        return False
                time.sleep(pause)
                pause = min(2 * pause, longest)
        return True

    def _dead_args(self) -> list[Any]:
        return [
            self.group, self.consumer, RELEASED, self.claim_idle_ms,
            self.dead_after_ms - 2 * beat_ms(self.dead_after_ms),
        ]  # fmt: skip

    def _take_over(self, stream: str, count: int) -> tuple[list[Message], bool]:
        """The pending messages of dead consumers and those handed back, oldest first, up to ``count``;
        and whether a consumer holding messages is late with its heartbeat (then nothing newer should be
        read until it beats again or is found dead)."""
        dead, late = self._dead(keys=[stream, self._alive_key], args=self._dead_args())
        if not dead:
            return [], bool(late)
        pipe = self._client.pipeline(transaction=False)
        for name in dead:
            pipe.xpending_range(stream, self.group, min="-", max="+", count=count, consumername=name)
        rows = sorted(
            (row for found in pipe.execute() for row in found), key=lambda r: entry_id(r["message_id"])
        )
        if not rows:
            return [], bool(late)
        counts = {text(r["message_id"]): int(r["times_delivered"]) + 1 for r in rows[:count]}
        # Held at least half the time it takes to be found dead: another consumer that took them over
        # just now (their idle time back to 0) keeps them.
        claimed = self._client.xclaim(
            stream, self.group, self.consumer, self.dead_after_ms // 2, list(counts)
        )
        entries = sorted(((i, f) for i, f in claimed if f is not None), key=lambda e: entry_id(e[0]))
        return [message_of(i, f, counts.get(text(i), 1)) for i, f in entries], bool(late)

    def _reclaim(self, stream: str, count: int) -> list[Message]:
        """Take over messages left pending longer than the idle time (a dead consumer's), now and then."""
        now = time.monotonic()
        if now < self._claim_due.get(stream, 0.0):
            return []
        reply = self._client.xautoclaim(
            stream,
            self.group,
            self.consumer,
            self.claim_idle_ms,
            start_id=self._claim_from.get(stream, "0-0"),
            count=count,
        )
        cursor, entries = reply[0], [(i, f) for i, f in reply[1] if f is not None]
        if entry_id(cursor) == (0, 0):  # scanned the whole pending list: look again in a while
            self._claim_from.pop(stream, None)
            self._claim_due[stream] = now + self.claim_idle_ms / 2000
        else:
            self._claim_from[stream] = cursor
        if not entries:
            return []
        counts = self._deliveries(stream, [i for i, _ in entries])
        return [message_of(i, f, counts.get(text(i), 1)) for i, f in entries]

    def _deliveries(
        self, stream: str, ids: Sequence[bytes | str], consumer: str | None = None
    ) -> dict[str, int]:
        """How often each of these pending entries has been delivered (one ``XPENDING`` range); with
        ``consumer``, only those that consumer holds."""
        first, last = min(ids, key=entry_id), max(ids, key=entry_id)
        wanted = {text(i) for i in ids}
        held = {} if consumer is None else {"consumername": consumer}
        rows = self._client.xpending_range(
            stream, self.group, min=first, max=last, count=len(ids) * 4 + 100, **held
        )
        return {
            text(row["message_id"]): int(row["times_delivered"])
            for row in rows
            if text(row["message_id"]) in wanted
        }

    def release(self, topic: str, messages: Sequence[Message]) -> None:
        """Hand those this consumer still holds to :data:`RELEASED`, for the next read of any consumer
        to take before new ones, with the delivery given back (``RETRYCOUNT``): nothing was tried.
        Entries another consumer has taken over since, or that were acked, are left alone."""
        if not messages:
            return
        stream = self.stream(topic)
        with self._errors():
            try:
                held = self._deliveries(stream, [m.id for m in messages], self.consumer)
            except self._redis.ResponseError as error:
                self._lost_group(stream, error)  # nothing is held any more: nothing to hand back
                return
            self._hand_back(stream, {entry: max(times - 1, 0) for entry, times in held.items()})

    def _hand_back(self, stream: str, retries: Mapping[str, int], *, keep_counts: bool = False) -> None:
        """Give these entries to :data:`RELEASED`, idle long enough for any consumer's next read to take
        them; with their delivery counts set to ``retries``, or as they are with ``keep_counts``."""
        idle = max(self.claim_idle_ms, self.dead_after_ms) + 1000
        by_count: dict[int, list[str]] = {}
        for entry, count in retries.items():
            by_count.setdefault(count, []).append(entry)
        for count, ids in by_count.items():
            for lo in range(0, len(ids), ACK_CHUNK):
                self._client.xclaim(
                    stream, self.group, RELEASED, 0, ids[lo : lo + ACK_CHUNK], idle=idle, justid=True,
                    **({} if keep_counts else {"retrycount": count}),
                )  # fmt: skip

    def ack(self, topic: str, messages: Sequence[Message]) -> None:
        """``XACK`` the batch (call once its results are stored), then trim what every group has done."""
        if not messages:
            return
        stream = self.stream(topic)
        ids = [m.id for m in messages]
        with self._errors():
            pipe = self._client.pipeline(transaction=False)
            for lo in range(0, len(ids), ACK_CHUNK):
                pipe.xack(stream, self.group, *ids[lo : lo + ACK_CHUNK])
            pipe.xlen(stream)
            length = pipe.execute()[-1]
            if length > self.maxlen:
                self._trim(stream)

    def _trim(self, stream: str) -> None:
        """Drop entries every group has been given and acknowledged; cap a stream no group reads, unless
        it is one the workers read (its group is gone and is created again by the next publish or read:
        everything in it is still to be done)."""
        now = time.monotonic()
        if now < self._trim_due.get(stream, 0.0):
            return
        self._trim_due[stream] = now + self.trim_interval
        groups = self._client.xinfo_groups(stream)
        if not groups:
            if stream not in {self.stream(t) for t in self.input_topics}:
                self._client.xtrim(stream, maxlen=self.maxlen, approximate=True)
            return
        # Everything up to a group's last-delivered id has been given out; what it has not acked is pending.
        safe = min(entry_id(g["last-delivered-id"]) for g in groups)
        safe = (safe[0], safe[1] + 1)
        pending = [g["name"] for g in groups if g["pending"]]
        if pending:
            pipe = self._client.pipeline(transaction=False)
            for name in pending:
                pipe.xpending(stream, name)
            lows = [entry_id(p["min"]) for p in pipe.execute() if p["pending"]]
            safe = min([safe, *lows])
        self._client.xtrim(stream, minid=f"{safe[0]}-{safe[1]}", approximate=True)

    def pending(self, topic: str) -> int:
        """Messages of ``topic`` the group has not acknowledged yet: pending plus not yet delivered."""
        stream = self.stream(topic)
        with self._errors():
            if not self._client.exists(stream):
                return 0
            mine = [g for g in self._client.xinfo_groups(stream) if text(g["name"]) == self.group]
            if not mine or mine[0].get("lag") is None:
                return int(self._client.xlen(stream))
            return int(mine[0]["pending"]) + int(mine[0]["lag"])

    def close(self) -> None:
        """Hand back what this consumer still holds (for the next read of another to take, before new
        messages), leave the group, stop the heartbeat and disconnect."""
        if self._closed:
            return
        self._closed = True
        try:
            for stream in self._groups:
                held = self._client.xpending_range(
                    stream, self.group, min="-", max="+", count=1_000_000, consumername=self.consumer
                )
                self._hand_back(stream, {text(row["message_id"]): 0 for row in held}, keep_counts=True)
                self._client.xgroup_delconsumer(stream, self.group, self.consumer)
        except self._redis.RedisError:
            pass  # the server is gone; what this consumer held is taken over when its heartbeat runs out
        finally:
            if self._heartbeat is not None:
                self._heartbeat.stop()
            self._client.close()
