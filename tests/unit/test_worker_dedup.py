"""The worker (through its decider) skips what is decided, asking storage only about what the feature
state has recorded, and parses a batch in one call: the same decisions, duplicates, republications and
dead letters."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudstream._gc import paused_gc
from fraudstream.brokers.base import Broker, Message
from fraudstream.events import Transaction
from fraudstream.events.decision import DecisionRecord
from fraudstream.pipeline.decider import Decider, StoreLedger
from fraudstream.state import MemoryFeatureState, StateError
from fraudstream.storage import StorageError, Store, open_store
from fraudstream.worker.worker import RESULTS, Worker
from tests.unit.fakes import BlockingScorer

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class ListBroker(Broker):
    """Hands out the messages queued with :meth:`deliver` (with their delivery counts) and keeps
    what is published."""

    def __init__(self) -> None:
        self.queued: list[Message] = []
        self.published: dict[str, list[Any]] = {}
        self.acked = 0

    def deliver(self, payloads: Sequence[Any], deliveries: int = 1) -> None:
        n = len(self.queued)
        self.queued += [Message(str(n + i), None, p, deliveries) for i, p in enumerate(payloads)]

    def publish(self, topic: str, messages: Sequence[tuple[str | None, Any]]) -> None:
        self.published.setdefault(topic, []).extend(payload for _, payload in messages)

    def consume(self, topic: str, max_messages: int, max_wait: float) -> list[Message]:
        out, self.queued = self.queued[:max_messages], self.queued[max_messages:]
        return out

    def ack(self, topic: str, messages: Sequence[Message]) -> None:
        self.acked += len(messages)

    def release(self, topic: str, messages: Sequence[Message]) -> None:
        self.queued[:0] = messages

    def close(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/worker.db") as s:
        s.migrate()
        asked: list[list[str]] = []
        real = s.decisions.known

        def known(ids: list[str]) -> dict[str, Any]:
            asked.append(list(ids))
            return real(ids)

        monkeypatch.setattr(s.decisions, "known", known)
        s.asked = asked  # type: ignore[attr-defined]
        yield s


def tx(i: int, amount: float = 5.0) -> dict[str, Any]:
    t = Transaction(
        transaction_id=f"w{i}", timestamp=T0 + timedelta(seconds=i), customer_id="c", amount=amount
    )
    return t.model_dump(mode="json")


def elsewhere(store: Store, i: int) -> None:
    """A decision stored by another process (the API's synchronous path) that this state never saw."""
    record = DecisionRecord(
        transaction_id=f"w{i}", customer_id="c", timestamp=T0, amount=5.0, decision="FLAG",
        probability=0.5, reasons=[], rules=[], model_version="api", features={"amount": 5.0},
        latency_ms={"total": 1.0},
    )  # fmt: skip
    assert store.decisions.save([record]) == [f"w{i}"]


class FailingScorer(BlockingScorer):
    """Raises ``error`` for its first ``times`` batches, as when what it depends on is down."""

    def __init__(self, error: Exception, times: int) -> None:
        super().__init__()
        self.error, self.times = error, times

    def score(self, batch: Any, **kw: Any) -> Any:
        if self.times:
            self.times -= 1
            raise self.error
        return super().score(batch, **kw)


def deciding(scorer: Any, store: Store, on_decided: Any = None) -> Decider:
    return Decider(scorer, StoreLedger(store), on_decided=on_decided)


def make_worker(store: Store, state: Any, **kw: Any) -> tuple[Worker, ListBroker, list[str]]:
    broker, handed = ListBroker(), []
    decider = deciding(BlockingScorer(state), store, lambda d: handed.extend(d.transaction_id.tolist()))
    worker = Worker(broker, decider, store, max_wait=0.0, results_topic=RESULTS, **kw)
    return worker, broker, handed


def test_only_transactions_the_state_recorded_are_looked_up(store: Store) -> None:
    worker, broker, handed = make_worker(store, MemoryFeatureState(retention=86400.0))
    broker.deliver([tx(0), tx(1), tx(2)])
    worker.run(burst=True)
    assert store.asked == []  # type: ignore[attr-defined]
    broker.deliver([tx(3), tx(1), tx(3)])
    worker.run(burst=True)
    assert store.asked == [["w1"]]  # type: ignore[attr-defined]
    assert (worker.stats.decided, worker.stats.duplicates) == (4, 2)
    assert handed == ["w0", "w1", "w2", "w3"]
    assert [m["transaction_id"] for m in broker.published[RESULTS]] == ["w0", "w1", "w2", "w3", "w1"]
    assert broker.acked == 6


@pytest.mark.parametrize("state", ["memory", "none"])
def test_a_decision_stored_elsewhere_is_kept_counted_as_a_duplicate_and_published_again(
    store: Store, state: str
) -> None:
    """Whether the worker looks it up first (no state to ask) or finds out when storing (the state
    never saw it), the other process's decision stands and the outcome is the same."""
    worker, broker, handed = make_worker(
        store, MemoryFeatureState(retention=86400.0) if state == "memory" else None
    )
    elsewhere(store, 1)
    broker.deliver([tx(0), tx(1), tx(2), tx(1)])
    worker.run(burst=True)
    assert (worker.stats.decided, worker.stats.duplicates, worker.stats.dead) == (2, 2, 0)
    assert handed == ["w0", "w2"]
    published = {m["transaction_id"]: m for m in broker.published[RESULTS]}
    assert sorted(published) == ["w0", "w1", "w2"] and len(broker.published[RESULTS]) == 3
    assert published["w1"]["decision"] == "FLAG" and published["w1"]["model_version"] == "api"
    assert store.decisions.get("w1").model_version == "api"  # type: ignore[union-attr]
    assert store.decisions.get("w0").decision == "BLOCK"  # type: ignore[union-attr]
    assert store.dead_letters.list() == []


def test_a_decided_transaction_delivered_too_often_is_still_published_not_dead_lettered(store: Store) -> None:
    worker, broker, _ = make_worker(store, MemoryFeatureState(retention=86400.0), max_deliveries=3)
    elsewhere(store, 1)
    broker.deliver([tx(1), tx(2)], deliveries=4)
    worker.run(burst=True)
    assert store.asked == [["w1", "w2"]]  # type: ignore[attr-defined]
    assert (worker.stats.decided, worker.stats.duplicates, worker.stats.dead) == (0, 1, 1)
    assert worker.decider.scorer.scored == []  # type: ignore[attr-defined]
    (letter,) = store.dead_letters.list()
    assert letter["reason"].startswith("delivered 4 times") and '"w2"' in letter["payload"]
    assert [m["transaction_id"] for m in broker.published[RESULTS]] == ["w1"]


def test_a_state_that_cannot_answer_has_every_transaction_looked_up(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    class Down(MemoryFeatureState):
        def recorded(self, transaction_ids: np.ndarray) -> np.ndarray:
            raise StateError("cannot reach Redis")

    worker, broker, _ = make_worker(store, Down(retention=86400.0))
    elsewhere(store, 1)
    broker.deliver([tx(0), tx(1)])
    worker.run(burst=True)
    assert store.asked == [["w0", "w1"]]  # type: ignore[attr-defined]
    assert (worker.stats.decided, worker.stats.duplicates) == (1, 1)
    assert "asking storage about every transaction" in caplog.text


def test_a_batch_is_parsed_in_one_call_and_invalid_messages_keep_their_own_reasons(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone: list[Any] = []
    real = Transaction.model_validate

    def model_validate(payload: Any, **kw: Any) -> Transaction:
        alone.append(payload)
        return real(payload, **kw)

    monkeypatch.setattr(Transaction, "model_validate", model_validate)
    valid, broker, _ = make_worker(store, MemoryFeatureState(retention=86400.0))
    broker.deliver([tx(i, amount=i + 0.5) for i in range(10, 14)], deliveries=2)
    valid.run(burst=True)
    assert alone == [] and (valid.stats.decided, valid.stats.dead) == (4, 0)
    stored = store.decisions.get_many([f"w{i}" for i in range(10, 14)])
    assert {i: r.amount for i, r in stored.items()} == {f"w{i}": i + 0.5 for i in range(10, 14)}

    worker, broker, _ = make_worker(store, MemoryFeatureState(retention=86400.0))
    good = [tx(i, amount=i + 0.5) for i in range(4)]

    bad = [{**tx(9), "amount": -1, "currency": "usd"}, "not json", {**tx(8), "surprise": 1}]
    broker.deliver([good[0], bad[0], bad[1], good[1], bad[2]])
    worker.run(burst=True)
    assert alone == bad  # only the invalid messages are validated again, one by one
    assert worker.stats.decided == 2 and worker.stats.dead == 3
    reasons = [letter["reason"] for letter in sorted(store.dead_letters.list(), key=lambda d: d["payload"])]
    assert reasons == [
        "message: Input should be a valid dictionary or instance of Transaction",
        "surprise: Extra inputs are not permitted",
        "amount: Input should be greater than or equal to 0; "
        "currency: String should match pattern '^[A-Z]{3}$'",
    ]


def test_an_idle_worker_waits_with_the_collector_running_and_a_busy_one_handles_without_it(
    store: Store,
) -> None:
    """The collector pause holds for the whole process: the API beside an idle embedded worker must
    still collect cycles, while a batch is still handled without the collector walking it (inside
    ``around_batch``, which the entry points set to the pause)."""
    from fraudstream.brokers.memory import MemoryBroker

    broker = MemoryBroker()
    seen: list[bool] = []

    class Watching(BlockingScorer):
        def score(self, batch: Any, **kw: Any) -> Any:
            seen.append(gc.isenabled())
            return super().score(batch, **kw)

    worker = Worker(broker, deciding(Watching(), store), store, max_wait=0.05, around_batch=paused_gc)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        samples = []
        for _ in range(200):
            samples.append(gc.isenabled())
            time.sleep(0.002)
        broker.publish("transactions", [(None, tx(i)) for i in range(3)])
        deadline = time.monotonic() + 10
        while worker.stats.decided < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop()
        thread.join(5)
    assert sum(samples) / len(samples) > 0.9
    assert seen and not any(seen)
    assert gc.isenabled()


def test_a_copy_published_again_is_decided_even_beside_one_delivered_too_often(store: Store) -> None:
    worker, broker, _ = make_worker(store, MemoryFeatureState(retention=86400.0), max_deliveries=5)
    broker.deliver([tx(5)], deliveries=6)  # the old copy kept killing workers...
    broker.deliver([tx(5)], deliveries=1)  # ...and someone published it again (a redrive)
    worker.run(burst=True)
    assert (worker.stats.decided, worker.stats.dead, worker.stats.duplicates) == (1, 0, 1)
    assert store.dead_letters.list() == []


def test_suspects_are_decided_one_at_a_time_in_event_time_and_the_first_goes_last_on_even_deliveries(
    store: Store,
) -> None:
    worker, broker, _ = make_worker(store, None)
    broker.deliver([tx(9), tx(1)])  # fresh: decided together, first
    broker.deliver([tx(7), tx(3)], deliveries=3)  # in another order than their event times
    worker.run(burst=True)
    assert worker.decider.scorer.scored == ["w9", "w1", "w3", "w7"]  # type: ignore[attr-defined]
    assert worker.stats.batches == 1
    broker.deliver([tx(8), tx(2), tx(6)], deliveries=4)
    worker.run(burst=True)
    assert worker.decider.scorer.scored[4:] == ["w6", "w8", "w2"]  # type: ignore[attr-defined]


def test_an_outage_of_the_feature_state_is_retried_never_dead_lettered(store: Store) -> None:
    """Redis going away mid-batch is not the messages' fault: the batch comes round again."""

    broker = ListBroker()
    worker = Worker(
        broker, deciding(FailingScorer(StateError("cannot reach Redis"), 3), store), store, max_wait=0.0
    )
    broker.deliver([tx(i) for i in range(4)])
    for _ in range(3):  # run() retries after each failure; bounded so that a regression fails, not hangs
        if worker.stats.decided + worker.stats.dead < 4:
            worker.run(burst=True)
    assert (worker.stats.errors, worker.stats.decided, worker.stats.dead) == (3, 4, 0)
    assert store.dead_letters.list() == []


class Instant(threading.Event):
    """A worker's stop event whose backoff waits return at once."""

    def wait(self, timeout: float | None = None) -> bool:
        return self.is_set()


def test_a_long_outage_hands_the_batch_back_without_counting_deliveries(store: Store) -> None:
    """Six failures in a row, more than max_deliveries: still nothing is dead-lettered or a suspect."""
    from fraudstream.brokers.memory import MemoryBroker

    broker = MemoryBroker()
    worker = Worker(
        broker, deciding(FailingScorer(StorageError("down"), 6), store), store, max_wait=0.0, max_deliveries=5
    )
    worker.stopping = Instant()
    broker.publish("transactions", [(None, tx(i)) for i in range(4)])
    worker.run(burst=True)
    assert (worker.stats.errors, worker.stats.decided, worker.stats.dead) == (6, 4, 0)
    assert worker.decider.scorer.scored == ["w0", "w1", "w2", "w3"]  # type: ignore[attr-defined]  # one batch


def test_a_broker_that_cannot_take_the_batch_back_does_not_end_the_worker(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    class Unreachable(ListBroker):
        def release(self, topic: str, messages: Sequence[Message]) -> None:
            raise StorageError("the queue's database is unreachable")

    broker = Unreachable()
    worker = Worker(broker, deciding(FailingScorer(StorageError("down"), 1), store), store, max_wait=0.0)
    worker.stopping = Instant()
    broker.deliver([tx(0)])
    worker.run(burst=True)
    assert worker.stats.errors == 1 and "cannot hand 1 messages back" in caplog.text
