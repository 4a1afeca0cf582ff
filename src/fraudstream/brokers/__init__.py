"""Brokers, chosen by URL: ``database://`` (durable, embedded default) or ``memory://`` (in-process)."""

from __future__ import annotations

from urllib.parse import urlparse

from fraudstream.brokers.base import Broker, BrokerError, Message
from fraudstream.storage.store import Store


def open_broker(url: str, store: Store, *, lease_seconds: float = 30.0) -> Broker:
    """Open the broker at ``url``; ``database://`` queues in ``store``'s own database.

    ``lease_seconds`` is how long a consumer may hold messages before they go to another consumer.
    """
    scheme = urlparse(url).scheme
    if scheme == "database":
        from fraudstream.brokers.database import DatabaseBroker

        return DatabaseBroker(store, lease_seconds=lease_seconds)
    if scheme == "memory":
        from fraudstream.brokers.memory import MemoryBroker

        return MemoryBroker()
    raise BrokerError(f"unsupported broker URL {url!r}: use database:// (embedded, durable) or memory://")


__all__ = ["Broker", "BrokerError", "Message", "open_broker"]
