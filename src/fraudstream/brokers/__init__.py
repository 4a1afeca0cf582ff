"""Brokers, chosen by URL: ``database://`` (durable, embedded default), ``memory://`` (in-process),
``redis://host:port/db`` (Redis Streams) or ``kafka://host:port``. A server broker's client library is
imported only when its URL is chosen."""

from __future__ import annotations

from urllib.parse import urlparse

from fraudstream._urls import split_prefix
from fraudstream.brokers.base import Broker, BrokerError, Message
from fraudstream.storage.store import Store

SCHEMES = {
    "database": "database:// (embedded, durable)",
    "memory": "memory:// (in-process)",
    "redis": "redis://host:port/db (Redis Streams)",
    "kafka": "kafka://host:port (Kafka)",
}
#: Brokers other processes subscribe to: the worker publishes its decisions and dead letters there too.
RESULT_SCHEMES = frozenset({"redis", "rediss", "kafka"})


def open_broker(
    url: str,
    store: Store,
    *,
    lease_seconds: float = 30.0,
    group: str = "fraudstream",
    claim_idle_seconds: float = 30.0,
    dead_after_seconds: float = 3.0,
    maxlen: int = 1_000_000,
    consumer: str | None = None,
    publish_timeout: float = 5.0,
    schema_registry: str | None = None,
) -> Broker:
    """Open the broker at ``url``; ``database://`` queues in ``store``'s own database.

    ``lease_seconds`` is how long a ``database://`` consumer may hold messages before they go to
    another consumer; Redis hands a consumer's pending messages to the next read of another once its
    heartbeat has stopped for ``dead_after_seconds``, takes over any held ``claim_idle_seconds``, and keeps
    streams near ``maxlen`` entries without trimming unprocessed ones. ``group`` is the Redis/Kafka
    consumer group of the workers. A Kafka publish fails after ``publish_timeout`` seconds without the
    broker's acknowledgement, so that a caller waiting on it (the API) can answer instead of hanging.
    ``schema_registry`` is where a Kafka consumer finds the schemas of messages in the Confluent wire
    format (Avro).
    """
    scheme = urlparse(url).scheme
    if scheme == "database":
        from fraudstream.brokers.database import DatabaseBroker

        return DatabaseBroker(store, lease_seconds=lease_seconds)
    if scheme == "memory":
        from fraudstream.brokers.memory import MemoryBroker

        return MemoryBroker()
    if scheme in ("redis", "rediss"):
        from fraudstream.brokers.redis import RedisStreamsBroker

        return RedisStreamsBroker(
            url,
            group=group,
            consumer=consumer,
            claim_idle_seconds=claim_idle_seconds,
            dead_after_seconds=dead_after_seconds,
            maxlen=maxlen,
        )
    if scheme == "kafka":
        from fraudstream.brokers.kafka import KafkaBroker
        from fraudstream.brokers.kafka._urls import partitions_option

        return KafkaBroker(
            url,
            group=group,
            consumer=consumer,
            topic_prefix=split_prefix(url)[1] or "",
            partitions=partitions_option(url),
            delivery_timeout_ms=max(1, round(publish_timeout * 1000)),
            schema_registry=schema_registry,
        )
    raise BrokerError(f"unsupported broker URL {url!r}: use {', '.join(SCHEMES.values())}")


def publishes_results(broker_url: str) -> bool:
    """Whether workers on this broker publish decisions and dead letters to it (``decisions``,
    ``dead-letters``); the embedded queues keep them in the database only, so the queue never fills."""
    return urlparse(broker_url).scheme in RESULT_SCHEMES


__all__ = ["SCHEMES", "Broker", "BrokerError", "Message", "open_broker", "publishes_results"]
