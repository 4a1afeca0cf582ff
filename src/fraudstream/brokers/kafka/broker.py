"""Kafka, chosen by ``kafka://host:port`` (confluent-kafka): partitioned, replicated, replayable.

Messages are keyed by the caller (the API keys transactions by customer), so one entity's events
stay in one partition and in order. Publishing waits for Kafka's acknowledgement of the whole batch
(idempotent producer, ``acks=all``), so a ``202`` means Kafka has the messages; it fails once
``delivery_timeout_ms`` passes without it (a broker down or restarting), so the API answers 503 within
seconds instead of holding the request. A message that timed out may still have reached Kafka: it is
decided once all the same, by ``transaction_id``. Consumers in one
group share the partitions and commit offsets by hand, only after the worker has stored the results;
a rebalance re-delivers what was in flight, and the worker's idempotence by ``transaction_id`` turns
that into exactly one decision. How often each message was handed out is kept in the committed offsets'
metadata (see :mod:`fraudstream.brokers.kafka._offsets`), so a message that keeps killing workers is
dead-lettered instead of stalling its partition.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from fraudstream.brokers.base import Broker, BrokerError, Message
from fraudstream.brokers.kafka._admin import cluster_summary, create_topic
from fraudstream.brokers.kafka._avro import SchemaRegistry, decode, wire_format
from fraudstream.brokers.kafka._member import TopicConsumer, load, take
from fraudstream.brokers.kafka._urls import DEFAULT_PARTITIONS, bootstrap_servers

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Producer

log = logging.getLogger("fraudstream.brokers.kafka")
client_log = logging.getLogger(
    "fraudstream.brokers.kafka.librdkafka"
)  # librdkafka's own lines, instead of stderr


def _client() -> Any:
    try:
        import confluent_kafka
    except ImportError:
        raise BrokerError("Kafka needs confluent-kafka: pip install 'fraudstream[kafka]'") from None
    return confluent_kafka


def _text(key: bytes | None) -> str | None:
    """A message key as text; one that is not UTF-8 (another producer's) is kept, not fatal."""
    return None if not key else key.decode("utf-8", errors="replace")


def _pairs(messages: Sequence[Message]) -> list[tuple[int, int]]:
    """``(partition, offset)`` of messages this broker delivered (their ids are ``partition:offset``)."""
    try:
        return [(int(p), int(o)) for p, _, o in (m.id.partition(":") for m in messages)]
    except ValueError:
        raise BrokerError("not Kafka message ids: pass messages this broker delivered") from None


class KafkaBroker(Broker):
    """Kafka topics ``topic_prefix + topic``, created on first use with ``partitions`` partitions.

    ``group`` is the consumer group the workers share; ``consumer`` names this member (default:
    host-pid). Nothing connects until the first publish or consume; an unreachable Kafka is reported
    within ``connect_timeout`` seconds, and a publish Kafka has not acknowledged within
    ``delivery_timeout_ms`` fails.
    """

    def __init__(
        self,
        url: str,
        *,
        group: str = "fraudstream",
        consumer: str | None = None,
        partitions: int = DEFAULT_PARTITIONS,
        replication_factor: int = -1,
        topic_prefix: str = "",
        session_timeout_ms: int = 10_000,
        delivery_timeout_ms: int = 5_000,
        connect_timeout: float = 5.0,
        assignment_strategy: str = "cooperative-sticky",
        schema_registry: str | None = None,
    ) -> None:
        self._kafka = _client()
        self._registry = None if not schema_registry else SchemaRegistry(schema_registry)
        self.url, self.group, self.partitions = url, group, partitions
        self.replication_factor, self.topic_prefix = replication_factor, topic_prefix
        self.consumer_name = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.delivery_timeout_ms, self.connect_timeout = delivery_timeout_ms, connect_timeout
        self._common: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers(url),
            "logger": client_log,
            "error_cb": self._on_error,
        }
        self._consumer_conf: dict[str, Any] = {
            **self._common,
            "group.id": group,
            "client.id": self.consumer_name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": max(min(3000, session_timeout_ms // 3), 100),
            "partition.assignment.strategy": assignment_strategy,
        }
        self._producer: Producer | None = None
        self._consumers: dict[str, TopicConsumer] = {}
        self._topics: set[str] = set()
        self._failure: str | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def unreachable(self) -> str:
        return f"cannot reach Kafka at {self.url}: is it running? `make services`"

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() == self._kafka.KafkaError._ALL_BROKERS_DOWN:
            self._failure = f"Kafka client failed: {error.str()}" if error.fatal() else self.unreachable
        client_log.warning("%s", error.str())

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure:
            raise BrokerError(failure)

    def _topic(self, topic: str) -> str:
        """The Kafka topic name, created when missing; the first call is the bounded reachability check."""
        name = self.topic_prefix + topic
        if name in self._topics:
            return name
        with self._lock:
            if self._closed:
                raise BrokerError("the Kafka broker is closed")
            if name not in self._topics:
                servers, timeout = self._common["bootstrap.servers"], self.connect_timeout
                create_topic(
                    servers, name, self.partitions, self.replication_factor, timeout, self.unreachable
                )
                self._topics.add(name)
        return name

    def ping(self) -> str:
        """The cluster's id and broker count, from one bounded metadata request."""
        return cluster_summary(self._common["bootstrap.servers"], self.connect_timeout, self.unreachable)

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = self._kafka.Producer(
                {
                    **self._common,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "compression.type": "lz4",
                    "partitioner": "murmur2_random",  # the Java client's: same key, same partition
                    "message.timeout.ms": self.delivery_timeout_ms,
                }
            )
        return self._producer

    def publish(self, topic: str, messages: Sequence[tuple[str | None, Any]]) -> None:
        """Produce every message, then wait once for all delivery reports; any failure raises."""
        if self._closed:
            raise BrokerError("the Kafka broker is closed")
        if not messages:
            return
        name = self._topic(topic)
        producer = self._get_producer()
        failed: list[KafkaError] = []

        def delivered(error: KafkaError | None, _: object) -> None:
            if error is not None:
                failed.append(error)

        opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        for key, payload in messages:
            value = orjson.dumps(payload, default=str, option=opts)
            while True:
                try:
                    producer.produce(name, value, key, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.1)
        left = producer.flush(self.delivery_timeout_ms / 1000 + 1)  # each message has failed by then
        if failed or left:
            fatal = any(e.fatal() for e in failed)
            if fatal:
                self._producer = None  # a fatal idempotence error needs a new producer
            first = failed[0].str() if failed else "timed out"
            self._failure = None
            raise BrokerError(
                f"Kafka did not take {len(failed) or left} of {len(messages)} messages on {name!r} "
                f"({first}); {self.unreachable}"
            )

    def _member(self, topic: str) -> TopicConsumer:
        member = self._consumers.get(topic)
        if member is None:
            name = self._topic(topic)
            member = TopicConsumer(self._kafka.Consumer(self._consumer_conf), name)
            member.consumer.subscribe(
                [name], on_assign=member.on_assign, on_revoke=member.on_revoke, on_lost=member.on_lost
            )
            self._consumers[topic] = member
        return member

    def consume(self, topic: str, max_messages: int, max_wait: float) -> list[Message]:
        """Up to ``max_messages`` of this member's partitions, waiting at most ``max_wait`` for the first."""
        if self._closed:
            raise BrokerError("the Kafka broker is closed")
        if max_messages <= 0:
            return []
        member = self._member(topic)
        with member.lock:
            try:
                raw = take(member.consumer, min(max_messages, 1_000_000), max(max_wait, 0.0))
            except self._kafka.KafkaException as error:
                raise BrokerError(f"cannot consume from Kafka topic {member.name!r}: {error}") from None
            kept = []
            spans: dict[int, tuple[int, int]] = {}
            for m in raw:
                problem = m.error()
                if problem is not None:
                    if problem.fatal():
                        raise BrokerError(f"Kafka consumer failed on {member.name!r}: {problem.str()}")
                    client_log.warning("%s", problem.str())
                    continue
                partition, offset = m.partition(), m.offset()
                if partition is None or offset is None or not member.offsets.consumed(partition, offset):
                    continue
                lo, hi = spans.get(partition, (offset, offset))
                spans[partition] = (min(lo, offset), max(hi, offset))
                kept.append((partition, offset, m))
            if spans:
                member.count_deliveries(spans, self.connect_timeout)
            count = member.offsets.deliveries
            out = [
                Message(f"{p}:{o}", _text(m.key()), self._load(m.value()), count(p, o)) for p, o, m in kept
            ]
        if not out:
            self._raise_failure()
        return out

    def _load(self, value: bytes | None) -> Any:
        """JSON, or a record in the Confluent wire format read with its schema from the registry."""
        if value is not None and wire_format(value):
            return decode(value, self._registry)
        return load(value)

    def ack(self, topic: str, messages: Sequence[Message]) -> None:
        """Commit, per partition, past the acked messages; those of partitions we lost are skipped."""
        member = self._consumers.get(topic)
        if member is None or not messages:
            return
        with member.lock:
            offsets = member.offsets.ack(_pairs(messages))
            if offsets:
                member.commit(offsets)

    def release(self, topic: str, messages: Sequence[Message]) -> None:
        """Seek each partition back to its lowest released message still in flight: everything from
        there is fetched and handed out again (and counted again)."""
        member = self._consumers.get(topic)
        if member is None or not messages:
            return
        from confluent_kafka import KafkaException, TopicPartition

        with member.lock:
            for partition, offset in member.offsets.releasing(_pairs(messages)).items():
                try:
                    member.consumer.seek(TopicPartition(member.name, partition, offset))
                except KafkaException as error:  # they stay in flight, holding the commit back
                    log.info("kafka %s: cannot seek partition %d back (%s)", member.name, partition, error)
                    continue
                member.offsets.released(partition, offset)

    def assigned(self, topic: str) -> frozenset[int]:
        """The partitions of ``topic`` this member owns now (empty before its first consume)."""
        member = self._consumers.get(topic)
        return member.offsets.owned() if member else frozenset()

    def close(self) -> None:
        """Leave the groups (unacked messages go to other members) and deliver what was published."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for member in self._consumers.values():
            with member.lock:
                try:
                    member.consumer.close()
                except (RuntimeError, self._kafka.KafkaException) as error:
                    log.warning("kafka %s: close: %s", member.name, error)
        self._consumers.clear()
        if self._producer is not None:
            left = self._producer.flush(self.delivery_timeout_ms / 1000)
            if left:
                log.warning("kafka: %d published messages were not delivered before close", left)
            self._producer = None
