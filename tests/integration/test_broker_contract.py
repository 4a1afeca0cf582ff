"""One contract every broker keeps, run against each backend; then what only Redis Streams promises.

Each backend opens brokers through :func:`open_broker` with short leases, so a consumer that dies
holding messages hands them to the next one within a second. Topic names are unique per test, so
parallel runs against one Redis or Kafka never see each other's messages.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fraudstream.brokers import Broker, BrokerError, Message, open_broker, publishes_results
from fraudstream.brokers.memory import MemoryBroker
from fraudstream.events.batch import TransactionBatch
from fraudstream.storage import Store, open_store
from tests.forwarding import forwarded

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
T0_TX = {"transaction_id": "gone", "timestamp": T0.isoformat(), "customer_id": "c", "amount": 5.0}

#: Longest a test polls for messages that should arrive (a Kafka group join takes seconds).
PATIENCE = 60.0
LEASE = 0.5


@dataclass
class Backend:
    """How to open another consumer of the same topics, and how a consumer dies holding messages."""

    name: str
    open: Callable[[], Broker]
    die: Callable[[Broker, str], None]
    opened: list[Broker] = field(default_factory=list)

    def consumer(self) -> Broker:
        broker = self.open()
        self.opened.append(broker)
        return broker


def _memory(request: pytest.FixtureRequest, store: Store) -> Backend:
    shared = MemoryBroker()  # in-process: every "consumer" is the one broker; no leases, so a death
    return Backend("memory", lambda: shared, lambda b, topic: shared.requeue_unacked(topic))  # requeues


def _database(request: pytest.FixtureRequest, store: Store) -> Backend:
    return Backend(
        "database",
        lambda: open_broker("database://", store, lease_seconds=LEASE),
        lambda b, topic: time.sleep(LEASE * 1.2),  # the lease runs out
    )


def _redis(request: pytest.FixtureRequest, store: Store) -> Backend:
    import redis

    url = request.getfixturevalue("redis_url")
    prefix = f"fraudstream-test-{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(url)
    request.addfinalizer(lambda: _drop(client, prefix))

    def die(broker: Broker, topic: str) -> None:
        broker.close()  # its pending entries stay with its consumer name until reclaimed
        time.sleep(LEASE * 1.2)

    return Backend(
        "redis",
        lambda: open_broker(f"{url}?prefix={prefix}", store, group="contract", claim_idle_seconds=LEASE),
        die,
    )


def _kafka(request: pytest.FixtureRequest, store: Store) -> Backend:
    url = request.getfixturevalue("kafka_url")
    group = f"contract-{uuid.uuid4().hex[:12]}"
    return Backend(
        "kafka",
        lambda: open_broker(url, store, group=group),
        lambda broker, topic: broker.close(),  # leaves the group without committing: a rebalance
    )


def _drop(client: Any, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


BACKENDS = {"memory": _memory, "database": _database, "redis": _redis, "kafka": _kafka}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path}/broker.db")
    store.migrate()
    yield store
    store.close()


@pytest.fixture(
    params=[
        "memory",
        "database",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("kafka", marks=pytest.mark.kafka),
    ]
)
def backend(request: pytest.FixtureRequest, store: Store) -> Iterator[Backend]:
    backend = BACKENDS[request.param](request, store)
    yield backend
    for broker in backend.opened:
        broker.close()


@pytest.fixture
def broker(backend: Backend) -> Broker:
    return backend.consumer()


@pytest.fixture
def topic() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}"


def drain(
    broker: Broker, topic: str, want: int, *, ack: bool = True, batch: int = 100, patience: float = PATIENCE
) -> list[Message]:
    """Consume until ``want`` messages arrived (or ``patience`` ran out), acking each batch if asked."""
    got: list[Message] = []
    deadline = time.monotonic() + patience
    while len(got) < want and time.monotonic() < deadline:
        messages = broker.consume(topic, batch, 0.2)
        if ack:
            broker.ack(topic, messages)
        got += messages
    return got


def numbered(n: int, keys: int = 4, start: int = 0) -> list[tuple[str | None, Any]]:
    return [(f"k{i % keys}", {"n": i, "text": f"message {i}"}) for i in range(start, start + n)]


# --- the contract -------------------------------------------------------------------------------


def test_publish_then_consume_returns_keys_and_payloads(broker: Broker, topic: str) -> None:
    sent: list[tuple[str | None, Any]] = [
        ("c-1", {"n": 0, "amount": 12.5, "tags": ["a", "b"], "nested": {"ok": True, "none": None}}),
        (None, {"n": 1}),
        ("c-2", {"n": 2, "text": "grüße"}),
        ("kunde-ÿ", {"n": 3}),  # a key of any text, "ÿ" too, is not confused with no key
    ]
    broker.publish(topic, sent)
    got = sorted(drain(broker, topic, 4), key=lambda m: m.payload["n"])
    assert [(m.key, m.payload) for m in got] == sent
    assert len({m.id for m in got}) == 4 and all(isinstance(m.id, str) and m.id for m in got)


def test_batches_never_exceed_max_messages(broker: Broker, topic: str) -> None:
    broker.publish(topic, numbered(25))
    sizes, got = [], []
    deadline = time.monotonic() + PATIENCE
    while len(got) < 25 and time.monotonic() < deadline:
        messages = broker.consume(topic, 10, 0.2)
        broker.ack(topic, messages)
        sizes.append(len(messages))
        got += messages
    assert max(sizes) <= 10
    assert sorted(m.payload["n"] for m in got) == list(range(25))


def test_a_batch_larger_than_any_internal_chunk_arrives_whole_in_order(broker: Broker, topic: str) -> None:
    broker.publish(topic, numbered(12_001, keys=1))
    got = drain(broker, topic, 12_001, batch=5000)
    assert [m.payload["n"] for m in got] == list(range(12_001))


def test_consume_returns_empty_handed_when_nothing_comes(broker: Broker, topic: str) -> None:
    result: list[list[Message]] = []
    waiter = threading.Thread(target=lambda: result.append(broker.consume(topic, 10, 0.2)))
    waiter.start()
    waiter.join(PATIENCE)
    assert not waiter.is_alive(), "consume kept waiting past max_wait"
    assert result == [[]]


def test_consume_waits_for_a_message_published_meanwhile(broker: Broker, topic: str) -> None:
    broker.consume(topic, 1, 0.0)  # subscribe first (Kafka), so the waiting call is a plain wait
    result: list[Message] = []

    def wait() -> None:
        deadline = time.monotonic() + PATIENCE
        while not result and time.monotonic() < deadline:
            result.extend(broker.consume(topic, 10, 5.0))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    broker.publish(topic, [("k", {"n": 1})])
    waiter.join(PATIENCE + 10)
    assert [m.payload for m in result] == [{"n": 1}]
    broker.ack(topic, result)


def test_unacked_messages_go_to_the_next_consumer(backend: Backend, topic: str) -> None:
    first = backend.consumer()
    first.publish(topic, numbered(20))
    held = drain(first, topic, 20, ack=False)
    assert len(held) == 20
    backend.die(first, topic)
    again = drain(backend.consumer(), topic, 20)
    assert sorted(m.payload["n"] for m in again) == list(range(20))
    assert {(m.key, m.payload["n"]) for m in again} == {(m.key, m.payload["n"]) for m in held}
    assert {m.deliveries for m in held} == {1}
    assert {m.deliveries for m in again} == {2}


def test_acked_messages_are_never_delivered_again(backend: Backend, topic: str) -> None:
    first = backend.consumer()
    first.publish(topic, numbered(10))
    held = sorted(drain(first, topic, 10, ack=False), key=lambda m: m.payload["n"])
    first.ack(topic, held[:5])  # the first five published: a prefix of every key (and partition)
    backend.die(first, topic)
    second = backend.consumer()
    rest = drain(second, topic, 5)
    assert sorted(m.payload["n"] for m in rest) == [5, 6, 7, 8, 9]
    backend.die(second, topic)
    assert drain(backend.consumer(), topic, 1, patience=3.0) == []


def test_messages_with_one_key_keep_their_order(broker: Broker, topic: str) -> None:
    for lo in range(0, 120, 30):
        broker.publish(topic, numbered(30, keys=3, start=lo))
    got = drain(broker, topic, 120, batch=17)
    assert len(got) == 120
    for key in ("k0", "k1", "k2"):
        ns = [m.payload["n"] for m in got if m.key == key]
        assert ns == sorted(ns) and len(ns) == 40


def test_text_payloads_come_back_as_text(broker: Broker, topic: str) -> None:
    broker.publish(topic, [("k", "not json {"), ("k", "")])
    assert [m.payload for m in drain(broker, topic, 2)] == ["not json {", ""]


def test_close_is_idempotent(backend: Backend, topic: str) -> None:
    broker = backend.open()
    broker.publish(topic, numbered(3))
    broker.close()
    broker.close()
    if backend.name != "memory":  # closing a durable broker loses nothing
        assert sorted(m.payload["n"] for m in drain(backend.consumer(), topic, 3)) == [0, 1, 2]


# --- choosing a broker --------------------------------------------------------------------------


def test_released_messages_come_back_to_the_same_consumer(backend: Backend, topic: str) -> None:
    broker = backend.consumer()
    broker.publish(topic, numbered(6))
    held = drain(broker, topic, 6, ack=False)
    broker.release(topic, held)
    again = drain(broker, topic, 6)
    assert sorted(m.payload["n"] for m in again) == list(range(6))
    assert {m.deliveries for m in again} == {1}  # nothing was tried: an outage is not the messages' fault
    assert drain(broker, topic, 1, patience=2.0) == []


def test_a_batch_whose_store_failed_is_decided_once_the_store_is_back(
    backend: Backend, topic: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Kafka the batch would otherwise wait for a rebalance or a restart, holding its partition's
    commit back; elsewhere for a lease or an idle time to run out."""
    from fraudstream.pipeline.decider import Decider, StoreLedger
    from fraudstream.storage import StorageError
    from fraudstream.worker import Worker
    from tests.unit.fakes import BlockingScorer

    real, failures = store.decisions.save, [1]

    def save_decisions(*args: Any, **kw: Any) -> Any:
        if failures:
            failures.pop()
            raise StorageError("the database is unreachable")
        return real(*args, **kw)

    monkeypatch.setattr(store.decisions, "save", save_decisions)
    broker = backend.consumer()
    txs = [
        {"transaction_id": f"s{i}", "timestamp": T0.isoformat(), "customer_id": "c", "amount": 1.0}
        for i in range(5)
    ]
    broker.publish(topic, [("c", t) for t in txs])
    decider = Decider(BlockingScorer(), StoreLedger(store))  # type: ignore[arg-type]
    worker = Worker(broker, decider, store, topic=topic, max_wait=0.2)
    deadline = time.monotonic() + PATIENCE
    while worker.stats.decided < 5 and time.monotonic() < deadline:
        worker.run(burst=True)
    assert (worker.stats.errors, worker.stats.decided) == (1, 5)
    assert store.decisions.decided_ids([t["transaction_id"] for t in txs]) == {
        t["transaction_id"] for t in txs
    }


def test_requeued_dead_letters_are_decided_once(
    backend: Backend,
    topic: str,
    store: Store,
    tmp_path: Path,
    bundle_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transaction that could not be scored is sent back once fixed, on every broker, and decided
    once even when it is published twice (a crash between publishing and removing its dead letter)."""
    from fraudstream.config import Settings
    from fraudstream.events.transaction import Transaction
    from fraudstream.pipeline.decider import Decider, StoreLedger
    from fraudstream.pipeline.scorer import Scorer
    from fraudstream.runtime import open_services
    from fraudstream.worker import Worker
    from fraudstream.worker.redrive import requeue

    services = open_services(
        Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/scorer.db", model_path=bundle_path)
    )
    broker = backend.consumer()
    txs = [
        Transaction(transaction_id=f"r{i}", timestamp=T0, customer_id="c", amount=5.0 + i) for i in range(3)
    ]
    real = Scorer.score

    def sick(self: Scorer, batch: TransactionBatch, **kw: Any) -> Any:
        if "r1" in batch.transaction_id.tolist():
            raise ValueError("the model cannot score this")
        return real(self, batch, **kw)

    def work(until: Callable[[], bool]) -> None:
        deadline = time.monotonic() + PATIENCE
        while not until() and time.monotonic() < deadline:
            worker.run_once()

    decider = Decider(services.scorer, StoreLedger(store))  # decisions go where the dead letters are
    worker = Worker(broker, decider, store, topic=topic, max_wait=0.2)
    try:
        monkeypatch.setattr(Scorer, "score", sick)
        broker.publish(topic, [(t.customer_id, t.model_dump(mode="json")) for t in txs])
        broker.publish(topic, [(None, {"transaction_id": "bad", "amount": -1})])
        work(lambda: worker.stats.decided + worker.stats.dead >= 4)
        assert (worker.stats.decided, worker.stats.dead) == (2, 2)

        monkeypatch.setattr(Scorer, "score", real)
        done = requeue(store, broker)
        assert done.transaction_ids == ["r1"] and len(done.invalid) == 1 and done.missing == []
        broker.publish(topic, [("c", txs[1].model_dump(mode="json"))])  # published twice
        work(lambda: worker.stats.decided + worker.stats.duplicates >= 4)
        assert (worker.stats.decided, worker.stats.duplicates) == (3, 1)
        assert sorted(store.decisions.get_many([t.transaction_id for t in txs])) == ["r0", "r1", "r2"]
        (left,) = store.dead_letters.list()
        assert json.loads(left["payload"])["transaction_id"] == "bad"
    finally:
        services.close()


def test_a_message_that_keeps_killing_workers_is_dead_lettered_on_every_broker(
    backend: Backend, topic: str, store: Store, tmp_path: Path, bundle_path: Path
) -> None:
    """Three workers take it and die before acking; the fourth sees it delivered a fourth time."""
    from fraudstream.config import Settings
    from fraudstream.events.transaction import Transaction
    from fraudstream.runtime import open_services
    from fraudstream.worker import Worker

    poison = Transaction(transaction_id="poison", timestamp=T0, customer_id="c", amount=5.0)
    backend.consumer().publish(topic, [("c", poison.model_dump(mode="json"))])
    for n in range(1, 4):
        doomed = backend.consumer()
        assert [m.deliveries for m in drain(doomed, topic, 1, ack=False)] == [n]
        backend.die(doomed, topic)
    services = open_services(
        Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/scorer.db", model_path=bundle_path)
    )
    worker = Worker(backend.consumer(), services.decider, store, topic=topic, max_wait=0.2, max_deliveries=3)
    try:
        deadline = time.monotonic() + PATIENCE
        while worker.stats.dead == 0 and time.monotonic() < deadline:
            worker.run_once()
        assert (worker.stats.dead, worker.stats.decided) == (1, 0)
        (letter,) = store.dead_letters.list()
        assert letter["reason"].startswith("delivered 4 times and never acknowledged")
    finally:
        services.close()


def test_unknown_scheme_names_every_supported_one(store: Store) -> None:
    with pytest.raises(BrokerError) as error:
        open_broker("nats://127.0.0.1:4222", store)
    for scheme in ("database://", "memory://", "redis://", "kafka://"):
        assert scheme in str(error.value)


def test_only_server_brokers_carry_results() -> None:
    assert publishes_results("redis://127.0.0.1:6380/0") and publishes_results("kafka://127.0.0.1:9093")
    assert not publishes_results("database://") and not publishes_results("memory://")


def test_unreachable_redis_is_one_line_saying_what_to_do(store: Store) -> None:
    shown = re.escape("redis://:***@127.0.0.1:1/0")
    with pytest.raises(BrokerError, match=rf"cannot reach Redis at {shown} .*make services"):
        open_broker("redis://:secret@127.0.0.1:1/0", store)


def test_missing_redis_package_says_what_to_install(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(BrokerError, match=r"pip install 'fraudstream\[redis\]'"):
        open_broker("redis://127.0.0.1:6380/0", store)


# --- Redis Streams only -------------------------------------------------------------------------


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    import redis

    prefix = f"fraudstream-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    _drop(redis.Redis.from_url(redis_url), prefix)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    """A client of the test Redis of its own, to look at the streams or write to them as another
    producer would."""
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def streams(redis_url: str, redis_prefix: str) -> Iterator[Callable[..., Any]]:
    """Open Redis brokers under this test's prefix; closed at the end."""
    from fraudstream.brokers.redis import RedisStreamsBroker

    opened: list[RedisStreamsBroker] = []

    def make(**options: Any) -> RedisStreamsBroker:
        opened.append(RedisStreamsBroker(redis_url, prefix=redis_prefix, **options))
        return opened[-1]

    yield make
    for broker in opened:
        broker.close()


@pytest.mark.redis
def test_a_dead_consumers_messages_are_reclaimed_once_idle(
    streams: Callable[..., Any], topic: str, redis_client: Any
) -> None:
    dead, alive = streams(claim_idle_seconds=2.0), streams(claim_idle_seconds=2.0)
    dead.publish(topic, numbered(10))
    assert len(dead.consume(topic, 100, 1.0)) == 10  # then it dies without acking
    assert alive.consume(topic, 100, 0.1) == []  # not idle long enough yet: the owner may be busy
    time.sleep(2.2)
    reclaimed = drain(alive, topic, 10, ack=False)
    assert sorted(m.payload["n"] for m in reclaimed) == list(range(10))
    client, stream = redis_client, alive.stream(topic)
    owners = client.xpending_range(stream, alive.group, "-", "+", 100)
    assert {o["consumer"].decode() for o in owners} == {alive.consumer}
    assert {o["times_delivered"] for o in owners} == {2}
    assert {m.deliveries for m in reclaimed} == {2}  # the broker says so too
    alive.ack(topic, reclaimed)
    assert alive.pending(topic) == 0


DIES_HOLDING = """
import sys, time
from fraudstream.brokers.redis import RedisStreamsBroker
broker = RedisStreamsBroker(sys.argv[1], prefix=sys.argv[2], dead_after_seconds=0.5)
print(len(broker.consume(sys.argv[3], 100, 5.0)), flush=True)
time.sleep(600)
"""


@pytest.mark.redis
def test_a_killed_consumers_messages_are_decided_next_before_newer_ones(
    streams: Callable[..., Any], topic: str, redis_url: str, redis_prefix: str
) -> None:
    """A worker killed mid-batch: once it has missed two beats, other consumers read nothing newer,
    and once its heartbeat has stopped for ``dead_after_seconds`` (not the much longer claim idle
    time), the next read of another consumer returns its batch, and only then what came after it."""
    import signal
    import subprocess

    first = streams()
    first.publish(topic, numbered(10))
    dying = subprocess.Popen(
        [sys.executable, "-c", DIES_HOLDING, redis_url, redis_prefix, topic],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert dying.stdout is not None and dying.stdout.readline().strip() == "10"
    dying.send_signal(signal.SIGKILL)
    dying.wait()
    killed = time.monotonic()
    first.publish(topic, numbered(10, start=10))
    time.sleep(0.3)  # two beats of a consumer found dead after 0.5 s are 250 ms
    alive = streams(dead_after_seconds=0.5, claim_idle_seconds=300)
    got: list[Message] = []
    while not got:
        assert time.monotonic() - killed < 5.0, "the dead consumer's batch was not taken over"
        got = alive.consume(topic, 100, 0.1)
    assert [m.payload["n"] for m in got] == list(range(10))  # its batch, in order, and nothing newer
    assert {m.deliveries for m in got} == {2}
    alive.ack(topic, got)
    assert [m.payload["n"] for m in drain(alive, topic, 10)] == list(range(10, 20))
    assert alive.pending(topic) == 0


@pytest.mark.redis
def test_a_busy_consumer_keeps_its_batch_past_the_dead_after_time(
    streams: Callable[..., Any], topic: str
) -> None:
    """Its heartbeat runs beside the work: a batch longer than ``dead_after_seconds`` is not taken."""
    busy, other = streams(dead_after_seconds=0.3), streams(dead_after_seconds=0.3)
    busy.publish(topic, numbered(5))
    assert len(busy.consume(topic, 5, 1.0)) == 5
    time.sleep(0.9)  # three times the dead-after time, deciding
    busy.publish(topic, numbered(2, start=5))
    assert [m.payload["n"] for m in drain(other, topic, 2, ack=False)] == [5, 6]
    assert drain(other, topic, 1, patience=1.0) == []


@pytest.mark.redis
def test_a_consumer_closed_while_holding_messages_hands_them_over_at_once(
    streams: Callable[..., Any], topic: str
) -> None:
    leaving, staying = streams(), streams(dead_after_seconds=60, claim_idle_seconds=300)
    leaving.publish(topic, numbered(4))
    assert len(leaving.consume(topic, 4, 1.0)) == 4
    leaving.close()
    staying.publish(topic, numbered(1, start=4))
    assert [m.payload["n"] for m in staying.consume(topic, 10, 1.0)] == [0, 1, 2, 3]


@pytest.mark.redis
def test_a_consumer_waits_for_earlier_messages_another_consumer_holds(
    streams: Callable[..., Any], topic: str
) -> None:
    """Batches are decided in the stream's order: the consumer of the later batch waits until the
    earlier one is acknowledged."""
    first, second = streams(), streams()
    first.publish(topic, numbered(6))
    earlier, later = first.consume(topic, 3, 1.0), second.consume(topic, 3, 1.0)
    assert [m.payload["n"] for m in later] == [3, 4, 5]
    assert first.earlier_done(topic, earlier)  # nothing before it
    answer: list[bool] = []
    waiting = threading.Thread(target=lambda: answer.append(second.earlier_done(topic, later)))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive() and not answer
    first.ack(topic, earlier)
    waiting.join(10)
    assert answer == [True]


@pytest.mark.redis
def test_earlier_messages_that_can_only_come_again_are_read_first(
    streams: Callable[..., Any], topic: str
) -> None:
    """The consumer of the earlier batch closed (or died) holding it: the later batch is handed back
    and the next read returns the earlier one first."""
    first, second = streams(), streams()
    first.publish(topic, numbered(6))
    first.consume(topic, 3, 1.0)
    later = second.consume(topic, 3, 1.0)
    first.close()
    assert second.earlier_done(topic, later) is False
    second.release(topic, later)
    assert [m.payload["n"] for m in second.consume(topic, 10, 1.0)] == [0, 1, 2, 3, 4, 5]


@pytest.mark.redis
def test_trimming_never_drops_what_the_group_has_not_acked(
    streams: Callable[..., Any], topic: str, redis_client: Any
) -> None:
    broker = streams(maxlen=100, trim_interval=0.0, claim_idle_seconds=0.2, input_topics=[topic])
    client, stream = redis_client, broker.stream(topic)
    for lo in range(0, 1000, 100):
        broker.publish(topic, numbered(100, start=lo))
    assert client.xlen(stream) == 1000  # over maxlen, but nobody has read any of it
    done = drain(broker, topic, 600)
    assert sorted(m.payload["n"] for m in done) == list(range(600))
    assert 400 <= client.xlen(stream) < 1000  # processed entries trimmed, unread ones kept
    assert len(drain(broker, topic, 200, ack=False)) == 200  # in flight when its consumer dies
    broker.publish(topic, numbered(10, start=1000))  # trims again: must keep the pending ones
    time.sleep(0.3)
    rest = drain(streams(claim_idle_seconds=0.2), topic, 410)
    assert sorted(m.payload["n"] for m in rest) == list(range(600, 1010))


@pytest.mark.redis
@pytest.mark.parametrize("protocol", [2, 3])
def test_either_redis_protocol_reads_the_same(
    redis_url: str, redis_prefix: str, topic: str, protocol: int
) -> None:
    from fraudstream.brokers.redis import RedisStreamsBroker

    broker = RedisStreamsBroker(f"{redis_url}?protocol={protocol}&prefix={redis_prefix}")
    try:
        broker.publish(topic, numbered(5))
        assert [(m.key, m.payload["n"]) for m in drain(broker, topic, 5)] == [
            (f"k{i}", i) for i in range(4)
        ] + [("k0", 4)]
    finally:
        broker.close()


@pytest.mark.redis
def test_a_stream_no_group_reads_is_a_capped_log(
    streams: Callable[..., Any], topic: str, redis_client: Any
) -> None:
    broker = streams(maxlen=100, trim_interval=0.0)
    for lo in range(0, 1000, 100):
        broker.publish(topic, numbered(100, start=lo))
    assert 100 <= redis_client.xlen(broker.stream(topic)) < 1000


@pytest.mark.redis
def test_entries_from_other_producers_are_read_as_they_are(
    streams: Callable[..., Any], topic: str, redis_client: Any
) -> None:
    broker = streams()
    stream = broker.stream(topic)
    redis_client.xadd(stream, {"p": b"not json {", "k": b"c-9"})
    redis_client.xadd(stream, {"amount": b"3.5", "customer_id": b"c-1"})
    got = drain(broker, topic, 2)
    assert [(m.key, m.payload) for m in got] == [
        ("c-9", "not json {"),
        (None, {"amount": "3.5", "customer_id": "c-1"}),
    ]


def redis_services(tmp_path: Path, bundle_path: Path, broker_url: str) -> Any:
    """The services a worker on this Redis broker uses, with a SQLite store of its own."""
    from fraudstream.config import Settings
    from fraudstream.runtime import open_services

    database_url = f"sqlite:///{tmp_path / 'fraud.db'}"
    settings = Settings(
        data_dir=tmp_path, database_url=database_url, model_path=bundle_path, broker_url=broker_url
    )
    return open_services(settings)


@pytest.mark.redis
def test_worker_publishes_decisions_and_dead_letters(
    tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame, redis_url: str, redis_prefix: str
) -> None:
    from fraudstream.brokers.redis import RedisStreamsBroker
    from fraudstream.events.transaction import Transaction
    from fraudstream.worker import Worker
    from fraudstream.worker.worker import DEAD_LETTERS, RESULTS, TRANSACTIONS

    services = redis_services(tmp_path, bundle_path, f"{redis_url}?prefix={redis_prefix}")
    keep = [c for c in small_frame.columns if c not in ("is_fraud", "label_time", "fraud_scenario")]
    rows = small_frame.iloc[-50:][keep].to_dict("records")
    txs = [Transaction.model_validate({k: v for k, v in r.items() if v is not None and v == v}) for r in rows]
    services.broker.publish(TRANSACTIONS, [(t.customer_id, t.model_dump(mode="json")) for t in txs])
    services.broker.publish(TRANSACTIONS, [(None, {"transaction_id": "bad", "amount": -1}), (None, "oops")])
    worker = Worker(
        services.broker, services.decider, services.store, batch_size=100, max_wait=0.01,
        results_topic=RESULTS, dead_letters_topic=DEAD_LETTERS,
    )  # fmt: skip
    stats = worker.run(burst=True)
    assert stats.decided == 50 and stats.dead == 2
    assert isinstance(services.broker, RedisStreamsBroker) and services.broker.pending(TRANSACTIONS) == 0

    reader = RedisStreamsBroker(redis_url, prefix=redis_prefix, group="downstream")
    try:
        decisions = drain(reader, RESULTS, 50)
        letters = drain(reader, DEAD_LETTERS, 2)
    finally:
        reader.close()
        services.close()
    by_id = {m.payload["transaction_id"]: m for m in decisions}
    assert set(by_id) == {t.transaction_id for t in txs}
    for t in txs:
        message = by_id[t.transaction_id]
        assert message.key == t.customer_id
        assert message.payload["decision"] in ("APPROVE", "FLAG", "BLOCK")
        assert 0.0 <= message.payload["probability"] <= 1.0
        assert datetime.fromisoformat(message.payload["timestamp"]) == t.timestamp
        assert set(message.payload) == {
            "transaction_id", "decision", "probability", "reasons", "rules", "model_version", "timestamp",
        }  # fmt: skip
    reasons = sorted(m.payload["reason"] for m in letters)
    assert any("amount: Input should be greater than or equal to 0" in r for r in reasons)
    assert any("valid dictionary" in r for r in reasons)
    assert {m.payload["topic"] for m in letters} == {TRANSACTIONS}


@pytest.mark.redis
def test_a_message_that_keeps_killing_workers_is_dead_lettered_and_stored_decisions_published_again(
    tmp_path: Path, bundle_path: Path, redis_url: str, redis_prefix: str, streams: Callable[..., Any]
) -> None:
    from fraudstream.brokers.redis import RedisStreamsBroker
    from fraudstream.events.transaction import Transaction
    from fraudstream.worker import Worker
    from fraudstream.worker.worker import DEAD_LETTERS, RESULTS, TRANSACTIONS

    services = redis_services(tmp_path, bundle_path, f"{redis_url}?prefix={redis_prefix}")
    poison = Transaction(transaction_id="poison", timestamp=T0, customer_id="c", amount=5.0)
    stored = Transaction(transaction_id="stored", timestamp=T0, customer_id="c", amount=6.0)
    scored = services.scorer.score(TransactionBatch.from_transactions([stored]))
    names, version = services.scorer.engine.names, services.scorer.version
    services.store.decisions.save(scored.columns(names, version), [stored])  # stored, then the worker died
    services.broker.publish(TRANSACTIONS, [("c", t.model_dump(mode="json")) for t in (poison, stored)])
    for _ in range(3):  # three workers take the messages and die before acking
        assert len(streams(claim_idle_seconds=0.05).consume(TRANSACTIONS, 10, 1.0)) == 2
        time.sleep(0.1)
    broker = RedisStreamsBroker(f"{redis_url}?prefix={redis_prefix}", claim_idle_seconds=0.05)
    worker = Worker(
        broker, services.decider, services.store, max_wait=0.01, max_deliveries=3,
        results_topic=RESULTS, dead_letters_topic=DEAD_LETTERS,
    )  # fmt: skip
    try:
        assert worker.run_once() == 2
        assert broker.pending(TRANSACTIONS) == 0
        assert worker.stats.dead == 1 and worker.stats.decided == 0
        (letter,) = services.store.dead_letters.list()
        assert letter["reason"].startswith("delivered 4 times and never acknowledged")
        row = services.store.decisions.get_transaction("poison")
        assert services.store.decisions.get("poison") is None and (row is None or row["status"] == "dead")
        reader = streams(group="downstream")
        assert [m.payload["transaction_id"] for m in drain(reader, RESULTS, 1)] == ["stored"]
        assert [
            json.loads(m.payload["payload"])["transaction_id"] for m in drain(reader, DEAD_LETTERS, 1)
        ] == ["poison"]
    finally:
        broker.close()
        services.close()


@pytest.mark.redis
def test_the_api_answers_503_when_redis_goes_away_and_keeps_nothing(
    tmp_path: Path, bundle_path: Path, redis_url: str, redis_prefix: str
) -> None:
    from fastapi.testclient import TestClient

    from fraudstream.api import create_app

    with forwarded(redis_url) as redis:
        services = redis_services(tmp_path, bundle_path, f"{redis.url}?prefix={redis_prefix}")
        redis.cut()  # Redis goes away
        try:
            with TestClient(create_app(services.settings, services)) as client:
                response = client.post("/v1/transactions", json=T0_TX)
                assert response.status_code == 503 and response.headers["retry-after"] == "5"
                assert response.json() == {"detail": "the message broker is unavailable; try again later"}
                assert services.store.decisions.get_transaction("gone") is None  # a retry is accepted afresh
        finally:
            services.close()
