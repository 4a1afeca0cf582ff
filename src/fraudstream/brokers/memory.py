"""An in-process broker: no durability, for one-process pipelines, tests and benchmarks."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fraudstream.brokers.base import Broker, Message


class MemoryBroker(Broker):
    """Topics as in-memory queues; :meth:`requeue_unacked` redelivers what was consumed but not acked."""

    def __init__(self) -> None:
        self._ready: dict[str, deque[Message]] = {}
        self._unacked: dict[str, OrderedDict[str, Message]] = {}
        self._ids = itertools.count(1)
        self._cond = threading.Condition()

    def publish(self, topic: str, messages: Sequence[tuple[str | None, Any]]) -> None:
        with self._cond:
            queue = self._ready.setdefault(topic, deque())
            queue.extend(Message(str(next(self._ids)), key, payload) for key, payload in messages)
            self._cond.notify_all()

    def consume(self, topic: str, max_messages: int, max_wait: float) -> list[Message]:
        with self._cond:
            queue = self._ready.setdefault(topic, deque())
            if not queue:
                self._cond.wait_for(lambda: bool(queue), timeout=max_wait)
            out = [queue.popleft() for _ in range(min(max_messages, len(queue)))]
            pending = self._unacked.setdefault(topic, OrderedDict())
            pending.update((m.id, m) for m in out)
            return out

    def ack(self, topic: str, messages: Sequence[Message]) -> None:
        with self._cond:
            pending = self._unacked.setdefault(topic, OrderedDict())
            for m in messages:
                pending.pop(m.id, None)

    def release(self, topic: str, messages: Sequence[Message]) -> None:
        with self._cond:
            pending = self._unacked.setdefault(topic, OrderedDict())
            back = [m for m in messages if pending.pop(m.id, None) is not None]
            self._ready.setdefault(topic, deque()).extendleft(reversed(back))  # not tried: no delivery
            self._cond.notify_all()

    def requeue_unacked(self, topic: str) -> int:
        """Put every unacknowledged message back at the front, as after a consumer crash; each counts
        one more delivery when it is handed out again."""
        with self._cond:
            pending = self._unacked.setdefault(topic, OrderedDict())
            again = [replace(m, deliveries=m.deliveries + 1) for m in reversed(list(pending.values()))]
            self._ready.setdefault(topic, deque()).extendleft(again)
            count = len(pending)
            pending.clear()
            self._cond.notify_all()
            return count

    def pending(self, topic: str) -> int:
        with self._cond:
            return len(self._ready.get(topic, ())) + len(self._unacked.get(topic, {}))

    def close(self) -> None:
        with self._cond:
            self._ready.clear()
            self._unacked.clear()
