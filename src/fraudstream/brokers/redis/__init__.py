"""Redis Streams, chosen by ``redis://host:port/db``: :class:`RedisStreamsBroker` and how it reads and
writes stream entries."""

from fraudstream.brokers.redis.broker import RedisStreamsBroker

__all__ = ["RedisStreamsBroker"]
