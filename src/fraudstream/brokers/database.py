"""The embedded, durable broker: a queue table in the application's own database.

Because a transaction and its queue entry are written in one database transaction (the
transactional outbox), an HTTP ``202 Accepted`` means the transaction survives a crash. Consumers
claim messages with a lease; a consumer that dies leaves its claim to expire and the messages are
delivered again.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from fraudstream.brokers.base import Broker, Message
from fraudstream.storage.store import Store


class DatabaseBroker(Broker):
    """Queue on the :class:`Store`'s ``queue`` table; needs no server beyond the database itself."""

    def __init__(self, store: Store, *, lease_seconds: float = 30.0, poll_interval: float = 0.02) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"

    def publish(self, topic: str, messages: Sequence[tuple[str | None, Any]]) -> None:
        self.store.queue.publish(topic, list(messages))

    def consume(self, topic: str, max_messages: int, max_wait: float) -> list[Message]:
        deadline = time.monotonic() + max_wait
        while True:
            # A plain read first: claiming takes SQLite's write lock, which an idle poll must not.
            claimed = (
                self.store.queue.claim(topic, self.consumer, max_messages, self.lease_seconds)
                if self.store.queue.pending(topic)
                else []
            )
            if claimed or time.monotonic() >= deadline:
                return [Message(str(m.id), m.key, m.payload, m.deliveries) for m in claimed]
            time.sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0)))

    def ack(self, topic: str, messages: Sequence[Message]) -> None:
        if messages:
            self.store.queue.ack([int(m.id) for m in messages])

    def release(self, topic: str, messages: Sequence[Message]) -> None:
        if messages:
            self.store.queue.release([int(m.id) for m in messages], self.consumer)

    def ping(self) -> str:
        return f"queue in {self.store.ping()}"

    def close(self) -> None:
        """The store belongs to the caller; nothing to release here."""
