"""One Kafka group member for one topic: its rebalance callbacks, commits and batched reads.

Split from :mod:`fraudstream.brokers.kafka`; imported only when a ``kafka://`` URL is chosen.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import orjson

from fraudstream.brokers.base import BrokerError
from fraudstream.brokers.kafka._offsets import OffsetTracker

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, TopicPartition

log = logging.getLogger("fraudstream.brokers.kafka")

# A commit refused because the group is rebalancing or moved on: the partitions' new owner re-reads.
REBALANCING = {"REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "FENCED_INSTANCE_ID"}
REBALANCING |= {"STALE_MEMBER_EPOCH", "_ASSIGNMENT_LOST", "_NO_OFFSET"}


class TopicConsumer:
    """One group member for one topic, and the offsets it may commit."""

    def __init__(self, consumer: Consumer, name: str) -> None:
        self.consumer, self.name = consumer, name
        self.offsets = OffsetTracker()
        self.lock = threading.RLock()  # rebalance callbacks run inside consume() on the same thread

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self.lock:
            self.offsets.assign(tp.partition for tp in partitions)
        log.info("kafka %s: assigned partitions %s", self.name, sorted(tp.partition for tp in partitions))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Still the owner until this returns: commit what was acked, then forget what was in flight."""
        with self.lock:
            leaving = {tp.partition for tp in partitions}
            floors = self.offsets.floors(leaving)
            if floors:  # what was acked, with the delivery counts of what is in flight, before both go
                self.commit(floors, quiet=True)
            self.offsets.revoke(leaving)
        log.info("kafka %s: revoked partitions %s", self.name, sorted(tp.partition for tp in partitions))

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Already someone else's: commit nothing, forget everything in flight."""
        with self.lock:
            self.offsets.revoke(tp.partition for tp in partitions)
        log.warning("kafka %s: lost partitions %s", self.name, sorted(tp.partition for tp in partitions))

    def commit(self, offsets: dict[int, int], *, quiet: bool = False) -> None:
        """Commit synchronously; a refusal caused by a rebalance is skipped, not raised."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            listed = [
                TopicPartition(self.name, p, o, metadata=self.offsets.metadata(p, o))
                for p, o in offsets.items()
            ]
            result = self.consumer.commit(offsets=listed, asynchronous=False)
        except KafkaException as error:
            err: KafkaError = error.args[0]
            if quiet or err.name() in REBALANCING:
                log.info("kafka %s: commit skipped (%s); the partitions' owner re-delivers", self.name, err)
                return
            raise BrokerError(f"cannot commit Kafka offsets on {self.name!r}: {err.str()}") from None
        failed = {tp.partition: tp.error for tp in result if tp.error is not None}
        self.offsets.committed({p: o for p, o in offsets.items() if p not in failed})
        for p, e in failed.items():
            if not quiet and e.name() not in REBALANCING:
                raise BrokerError(f"cannot commit Kafka offsets on {self.name!r} partition {p}: {e.str()}")

    def count_deliveries(self, spans: dict[int, tuple[int, int]], timeout: float) -> None:
        """Count a delivery of each partition's ``(lowest, highest)`` offsets and store the counts with
        the committed offsets before anyone processes the messages. First reads what Kafka holds for
        partitions not read since they were assigned. Never raises: the messages are already fetched,
        and losing them here would stall their partitions; a count that cannot be kept starts over."""
        from confluent_kafka import KafkaException, TopicPartition

        unread = self.offsets.unread(spans)
        if unread:
            try:
                held = self.consumer.committed(
                    [TopicPartition(self.name, p) for p in unread], timeout=timeout
                )
            except KafkaException as error:
                log.warning("kafka %s: cannot read committed offsets (%s); counting afresh", self.name, error)
                held = [TopicPartition(self.name, p) for p in unread]
            for tp in held:
                self.offsets.read(tp.partition, tp.offset, tp.metadata if tp.error is None else None)
        self.commit(self.offsets.hand_out(spans), quiet=True)


def take(consumer: Consumer, count: int, max_wait: float) -> list[Any]:
    """What is already fetched; else the first to arrive within ``max_wait`` and what came with it.

    ``Consumer.consume(count, max_wait)`` alone would hold a half-full batch for all of ``max_wait``.
    """
    raw = consumer.consume(count, 0)
    if raw or max_wait <= 0:
        return raw
    raw = consumer.consume(1, max_wait)
    if raw and count > 1:
        raw += consumer.consume(count - 1, 0)
    return raw


def load(value: bytes | None) -> Any:
    """The decoded JSON; text when another producer wrote something that is not JSON."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", errors="replace")
