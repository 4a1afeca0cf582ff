"""The Kafka broker against a real Kafka: keys and order, manual commits, redelivery, rebalances."""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fraudstream.brokers.base import BrokerError, Message
from fraudstream.brokers.kafka import KafkaBroker

pytestmark = pytest.mark.kafka
TOPIC = "transactions"
PARTITIONS = 2
OpenKafka = Callable[..., KafkaBroker]


def bootstrap(url: str) -> str:
    return url.removeprefix("kafka://")


@pytest.fixture
def prefix(kafka_url: str) -> Iterator[str]:
    """A topic prefix (and group name root) of this test's own; its topics and groups are deleted after."""
    from confluent_kafka.admin import AdminClient

    prefix = f"test-{uuid.uuid4().hex[:10]}-"
    yield prefix
    admin = AdminClient({"bootstrap.servers": bootstrap(kafka_url)})
    topics = [t for t in admin.list_topics(timeout=5).topics if t.startswith(prefix)]
    listed = admin.list_consumer_groups().result(timeout=5).valid
    groups = [g.group_id for g in listed if g.group_id.startswith(prefix)]
    for futures in (
        admin.delete_topics(topics) if topics else {},
        admin.delete_consumer_groups(groups) if groups else {},
    ):
        for future in futures.values():
            future.exception(timeout=10)


@pytest.fixture
def open_kafka(kafka_url: str, prefix: str) -> Iterator[OpenKafka]:
    """Open brokers on this test's topics with short timeouts; all are closed after the test."""
    opened: list[KafkaBroker] = []

    def open_(name: str = "a", group: str = "g", **options: Any) -> KafkaBroker:
        options = {"partitions": PARTITIONS, "session_timeout_ms": 6000, **options}
        broker = KafkaBroker(kafka_url, group=prefix + group, consumer=name, topic_prefix=prefix, **options)
        opened.append(broker)
        return broker

    yield open_
    for broker in opened:
        broker.close()


def drain(broker: KafkaBroker, count: int, seconds: float = 30.0) -> list[Message]:
    """Consume until ``count`` messages arrived (the first consume also joins the group)."""
    out: list[Message] = []
    deadline = time.monotonic() + seconds
    while len(out) < count and time.monotonic() < deadline:
        out += broker.consume(TOPIC, count - len(out), 0.5)
    return out


def rest(broker: KafkaBroker, seconds: float = 30.0) -> list[Message]:
    """Everything a new group member gets: consume until it owns partitions, then once more."""
    out: list[Message] = []
    deadline = time.monotonic() + seconds
    while not broker.assigned(TOPIC) and time.monotonic() < deadline:
        out += broker.consume(TOPIC, 500, 0.2)
    return out + broker.consume(TOPIC, 500, 1.0)


def partition(m: Message) -> int:
    return int(m.id.split(":")[0])


def committed(kafka_url: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (negative: nothing committed), read without joining."""
    from confluent_kafka import Consumer, TopicPartition

    reader = Consumer({"bootstrap.servers": bootstrap(kafka_url), "group.id": group})
    try:
        parts = reader.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in parts}
    finally:
        reader.close()


def ends(kafka_url: str, topic: str) -> dict[int, int]:
    """The offset after the last message of each partition."""
    from confluent_kafka import Consumer, TopicPartition

    reader = Consumer({"bootstrap.servers": bootstrap(kafka_url), "group.id": "unused"})
    try:
        return {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        reader.close()


def lag(kafka_url: str, group: str, topic: str) -> int:
    """How many messages the group has not committed past."""
    done = committed(kafka_url, group, topic)
    return sum(end - max(done[p], 0) for p, end in ends(kafka_url, topic).items())


def test_round_trip_keeps_keys_payloads_and_raw_text(
    kafka_url: str, prefix: str, open_kafka: OpenKafka
) -> None:
    from confluent_kafka import Producer

    broker = open_kafka()
    sent = [
        ("c1", {"transaction_id": "t1", "amount": 12.5}),
        (None, {"transaction_id": "t2"}),
        ("c2", "plain"),
    ]
    broker.publish(TOPIC, sent)
    raw = Producer({"bootstrap.servers": bootstrap(kafka_url)})
    raw.produce(prefix + TOPIC, b"not json {", b"c3")
    assert raw.flush(10) == 0

    got = drain(broker, 4)
    assert sorted(((m.key or ""), repr(m.payload)) for m in got) == sorted(
        [("c1", repr(sent[0][1])), ("", repr(sent[1][1])), ("c2", "'plain'"), ("c3", "'not json {'")]
    )
    assert len({m.id for m in got}) == 4
    broker.ack(TOPIC, got)
    broker.close()
    assert lag(kafka_url, prefix + "g", prefix + TOPIC) == 0
    assert rest(open_kafka("again")) == []  # acked: not delivered again


def test_messages_with_one_key_stay_in_one_partition_in_order(open_kafka: OpenKafka) -> None:
    broker = open_kafka()
    keys = [f"customer-{k}" for k in range(6)]
    broker.publish(TOPIC, [(keys[i % 6], {"seq": i}) for i in range(300)])

    got = drain(broker, 300)
    assert len(got) == 300
    for key in keys:
        mine = [m for m in got if m.key == key]
        assert len({partition(m) for m in mine}) == 1, key
        assert [m.payload["seq"] for m in mine] == list(range(keys.index(key), 300, 6))
        offsets = [int(m.id.split(":")[1]) for m in mine]
        assert offsets == sorted(offsets)


def test_unacked_messages_are_redelivered_and_acked_ones_are_not(open_kafka: OpenKafka) -> None:
    first = open_kafka("first")
    first.publish(TOPIC, [(f"c{i % 4}", {"seq": i}) for i in range(40)])
    got = drain(first, 40)
    first.ack(TOPIC, [m for m in got if m.payload["seq"] < 20])  # the earlier half of every partition
    first.close()  # leaves the group without committing the rest

    second = open_kafka("second")
    again = rest(second)
    assert sorted(m.payload["seq"] for m in again) == list(range(20, 40))


def test_acking_past_an_unacked_message_commits_nothing_beyond_it(open_kafka: OpenKafka) -> None:
    first = open_kafka("first")
    first.publish(TOPIC, [(f"c{i % 4}", {"seq": i}) for i in range(40)])
    got = drain(first, 40)
    first.ack(TOPIC, [m for m in got if m.payload["seq"] >= 10])  # each partition's first messages stay out
    first.close()

    again = rest(open_kafka("second"))
    assert sorted(m.payload["seq"] for m in again) == list(range(40))


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_rebalance_loses_nothing_and_decides_nothing_twice(
    kafka_url: str, prefix: str, open_kafka: OpenKafka, strategy: str
) -> None:
    a = open_kafka("a", assignment_strategy=strategy)
    published = [(f"c{i % 16}", {"transaction_id": f"t{i}"}) for i in range(200)]
    a.publish(TOPIC, published)
    store: dict[str, str] = {}  # the worker's idempotent store: one decision per transaction_id
    decisions: Counter[str] = Counter()
    redelivered, acked = 0, set()

    def process(who: str, messages: list[Message]) -> None:
        nonlocal redelivered
        for m in messages:
            tid = m.payload["transaction_id"]
            if tid in store:
                redelivered += 1
            else:
                store[tid] = who
                decisions[tid] += 1

    batch = drain(a, 200)
    assert {partition(m) for m in batch} == set(range(PARTITIONS))
    process("a", batch)  # stored, but the ack comes only after the rebalance

    b = open_kafka("b", assignment_strategy=strategy)
    during: list[tuple[KafkaBroker, list[Message]]] = []
    deadline = time.monotonic() + 30
    while not (b.assigned(TOPIC) and a.assigned(TOPIC)) and time.monotonic() < deadline:
        during += [(b, b.consume(TOPIC, 500, 0.2)), (a, a.consume(TOPIC, 500, 0.2))]
    kept = a.assigned(TOPIC)
    lost = set(range(PARTITIONS)) - kept
    assert lost and b.assigned(TOPIC) == lost

    name = prefix + TOPIC
    before = committed(kafka_url, prefix + "g", name)
    a.ack(TOPIC, batch)  # late: part of it belongs to partitions b owns now; must not raise
    after = committed(kafka_url, prefix + "g", name)
    assert all(after[p] == before[p] for p in lost)
    # cooperative: a kept its other partition throughout, so the ack commits it. Eager (range): a gave up
    # every partition, forgetting what it had in flight; it commits only if it re-read its partition since.
    if strategy == "cooperative-sticky":
        assert all(after[p] == ends(kafka_url, name)[p] for p in kept)
    assert all(after[p] in (before[p], ends(kafka_url, name)[p]) for p in kept)
    acked |= {m.payload["transaction_id"] for m in batch if after[partition(m)] > before[partition(m)]}

    for broker, messages in during:
        process(broker.consumer_name, messages)
        broker.ack(TOPIC, messages)
        acked |= {m.payload["transaction_id"] for m in messages}
    more = [(f"c{i % 16}", {"transaction_id": f"t{i}"}) for i in range(200, 300)]
    a.publish(TOPIC, more)
    deadline = time.monotonic() + 30
    while lag(kafka_url, prefix + "g", name) and time.monotonic() < deadline:
        for broker in (a, b):
            messages = broker.consume(TOPIC, 500, 0.3)
            process(broker.consumer_name, messages)
            broker.ack(TOPIC, messages)
            acked |= {m.payload["transaction_id"] for m in messages}

    ids = {payload["transaction_id"] for _, payload in published + more}
    assert lag(kafka_url, prefix + "g", name) == 0
    assert set(store) == ids and acked == ids
    assert set(decisions.values()) == {1}
    assert redelivered >= sum(1 for m in batch if partition(m) in lost) > 0
    assert {"a", "b"} <= set(store.values())


def test_unreachable_kafka_is_one_clear_error_and_close_is_idempotent() -> None:
    broker = KafkaBroker("kafka://127.0.0.1:1", connect_timeout=1.0)
    with pytest.raises(BrokerError, match=r"cannot reach Kafka at kafka://127\.0\.0\.1:1: .*make services"):
        broker.publish(TOPIC, [("k", {"transaction_id": "t"})])
    with pytest.raises(BrokerError, match="cannot reach Kafka"):
        broker.consume(TOPIC, 10, 0.1)
    broker.close()
    broker.close()
    with pytest.raises(BrokerError, match="closed"):
        broker.consume(TOPIC, 10, 0.1)


def test_missing_client_library_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    with pytest.raises(BrokerError, match=r"pip install 'fraudstream\[kafka\]'"):
        KafkaBroker("kafka://127.0.0.1:9093")


def test_the_url_sets_how_many_partitions_a_new_topic_gets(kafka_url: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    from fraudstream.brokers import open_broker

    for partitions, option in ((1, ""), (4, "&partitions=4")):
        name = f"{TOPIC}-{partitions}"
        url = f"{kafka_url}?prefix={prefix}{option}"
        broker = open_broker(url, None, group=prefix + "g")  # type: ignore[arg-type]  # Kafka needs no store
        try:
            broker.publish(name, [("c1", {"n": 1})])
        finally:
            broker.close()
        topics = AdminClient({"bootstrap.servers": bootstrap(kafka_url)}).list_topics(timeout=10).topics
        assert len(topics[prefix + name].partitions) == partitions
