"""What a ``kafka://`` URL says: the bootstrap servers, and how many partitions a new topic gets.

Split from :mod:`fraudstream.brokers.kafka`; needs no client library, so URLs are checked before one is
imported.
"""

from __future__ import annotations

from fraudstream._urls import url_option
from fraudstream.brokers.base import BrokerError

DEFAULT_PARTITIONS = 1
"""Partitions of a topic this broker creates, unless the URL says ``?partitions=N``. One, so that the
transactions are decided in one order and features over keys other than the partition key equal their
offline values (docs/decisions/0037-decisions-in-the-streams-order.md); more lets more workers of a
group work at once, at the cost of that."""


def partitions_option(url: str) -> int:
    """The ``?partitions=N`` option of a Kafka URL: how many partitions a new topic is created with.

    Workers of one group share a topic's partitions, so the count caps how many can work at once and
    should divide evenly among them: with 3 partitions, 2 workers split the load 2 to 1. Partitions are
    read in no common order, so with more than one, features over keys other than the partition key
    miss events another partition holds. A topic that exists keeps its count.
    """
    raw = url_option(url, "partitions")
    if raw is None:
        return DEFAULT_PARTITIONS
    try:
        partitions = int(raw)
    except ValueError:
        partitions = 0
    if partitions < 1:
        raise BrokerError(f"partitions={raw!r} in the Kafka URL must be a whole number of at least 1")
    return partitions


def bootstrap_servers(url: str) -> str:
    """``kafka://h1:9092,h2:9092`` → ``h1:9092,h2:9092`` (port 9092 when omitted)."""
    scheme, _, rest = url.partition("://")
    hosts = [h for h in rest.split("?", 1)[0].split("/", 1)[0].split(",") if h]
    if scheme != "kafka" or not hosts:
        raise BrokerError(f"not a Kafka URL: {url!r} (expected kafka://host:port)")
    return ",".join(h if ":" in h.rsplit("]", 1)[-1] else f"{h}:9092" for h in hosts)
