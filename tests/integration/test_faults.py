"""Faults with real servers: Redis losing its memory, a message that would kill its workers, Kafka going
down, and producers that must write where the workers read.

A test that restarts, kills or flushes a server starts its own, by ``services/run.sh`` in a temporary
directory on free ports (as ``make services`` starts the shared ones, which are never touched here).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fraudstream.api.app import create_app
from fraudstream.brokers import BrokerError
from fraudstream.brokers.redis import RedisStreamsBroker
from fraudstream.cli import app as cli
from fraudstream.config import Settings
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Transaction
from fraudstream.features import FeatureEngine
from fraudstream.runtime import open_services
from fraudstream.storage import open_store
from fraudstream.worker import Worker
from fraudstream.worker.messages import transaction_message
from fraudstream.worker.worker import DEAD_LETTERS, RESULTS, TRANSACTIONS
from tests.conftest import REPO_ROOT
from tests.e2e.test_pipeline import transactions
from tests.servers import Private, missing


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Private]:
    servers = Private(tmp_path / "services")
    yield servers
    servers.close()


@pytest.fixture
def private_redis(private: Private) -> Private:
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed: run `make services` once (it installs it)")
    private.start("redis")
    return private


@pytest.fixture
def private_kafka(private: Private) -> Private:
    libs = Path(os.environ.get("FRAUD_SERVICES_DIR", REPO_ROOT / ".services")) / "kafka" / "libs"
    if shutil.which("java") is None or not (libs / ".pom-sha256").exists():
        missing(f"no Java or no Kafka jars in {libs}: run `make services` once (it fetches them)")
    private.env["FRAUD_SERVICES_KAFKA_LIBS"] = str(libs)
    private.start("kafka")
    return private


def lose_redis_memory(servers: Private, how: str) -> None:
    """What the issue saw: Redis restarted without persistence (its append-only file gone), or flushed."""
    if how == "restart":
        servers.kill("redis")
        shutil.rmtree(servers.root / "redis" / "appendonlydir", ignore_errors=True)
        servers.start("redis")
    else:
        import redis

        client = redis.Redis.from_url(servers.redis_url)
        client.flushall()
        client.close()


def consume_until(broker: RedisStreamsBroker, n: int, timeout: float = 20.0) -> list[Any]:
    """Payloads of ``n`` messages, acknowledged; a broker error (the connection a restart cut) is retried,
    as the worker retries it, and must not last."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, f"{len(got)} of {n} messages read"
        try:
            messages = broker.consume(TRANSACTIONS, n, 0.2)
        except BrokerError:
            time.sleep(0.1)
            continue
        broker.ack(TRANSACTIONS, messages)
        got += [m.payload for m in messages]
    return got


# ------------------------------------------------------------------ Redis: persistence and lost groups


@pytest.mark.redis
def test_make_services_redis_keeps_streams_and_groups_across_a_restart(private_redis: Private) -> None:
    producer = RedisStreamsBroker(private_redis.redis_url, group="g")
    producer.publish(TRANSACTIONS, [(None, {"n": i}) for i in range(3)])
    producer.close()
    private_redis.stop("redis")
    private_redis.start("redis")
    consumer = RedisStreamsBroker(private_redis.redis_url, group="g")
    assert consume_until(consumer, 3) == [{"n": 0}, {"n": 1}, {"n": 2}]
    consumer.close()


@pytest.mark.redis
@pytest.mark.parametrize("how", ["restart", "flush"])
def test_a_consumer_reads_on_after_redis_lost_its_group(private_redis: Private, how: str) -> None:
    """A consumer (and a publisher) that knew the group before Redis lost it carry on: the group is
    created again instead of every read failing with NOGROUP for ever."""
    consumer = RedisStreamsBroker(private_redis.redis_url, group="g", claim_idle_seconds=0.1)
    producer = RedisStreamsBroker(private_redis.redis_url, group="g")
    producer.publish(TRANSACTIONS, [(None, {"n": i}) for i in range(3)])
    in_flight = consumer.consume(TRANSACTIONS, 3, 1.0)
    assert len(in_flight) == 3  # taken, not acknowledged: lost with the group
    lose_redis_memory(private_redis, how)
    time.sleep(0.2)  # the consumer's look for idle messages to reclaim is due again: it finds no group
    for attempt in range(50):  # the publisher's first call after a restart may find the connection cut
        try:
            producer.publish(TRANSACTIONS, [(None, {"n": i}) for i in range(3, 6)])
            break
        except BrokerError:
            assert attempt < 49
            time.sleep(0.1)
    assert consume_until(consumer, 3) == [{"n": 3}, {"n": 4}, {"n": 5}]
    consumer.release(TRANSACTIONS, in_flight)  # their group is gone: nothing to hand back, no error
    consumer.ack(TRANSACTIONS, in_flight)
    assert consumer.pending(TRANSACTIONS) == 0
    producer.close()
    consumer.close()


@pytest.mark.redis
def test_a_stream_whose_group_was_lost_is_not_trimmed_unread(private_redis: Private) -> None:
    """A publisher that created the group once, publishing past ``maxlen`` after Redis lost the group,
    keeps every message for the workers."""
    producer = RedisStreamsBroker(private_redis.redis_url, group="g", maxlen=10, trim_interval=0)
    producer.publish(TRANSACTIONS, [(None, {"n": -1})])
    lose_redis_memory(private_redis, "flush")
    for lo in range(0, 300, 10):  # past maxlen by more than a node of 100 entries, which trimming drops
        producer.publish(TRANSACTIONS, [(None, {"n": i}) for i in range(lo, lo + 10)])
    consumer = RedisStreamsBroker(private_redis.redis_url, group="g")
    assert consume_until(consumer, 300) == [{"n": i} for i in range(300)]
    results = RedisStreamsBroker(private_redis.redis_url, group="g", maxlen=10, trim_interval=0)
    results.publish(RESULTS, [(None, {"n": i}) for i in range(300)])  # no group reads it: a capped log
    assert results.pending(RESULTS) < 300  # (approximately: whole nodes of 100 entries go)
    for broker in (producer, consumer, results):
        broker.close()


# ------------------------------------------------------------------ Redis feature state lost


def one_customer(frame: pd.DataFrame, n: int) -> list[Transaction]:
    """The last ``n`` transactions of the busiest customer, in time order."""
    busiest = frame["customer_id"].value_counts().index[0]
    rows = frame[frame["customer_id"] == busiest].sort_values("timestamp")
    keep = [c for c in frame.columns if c not in ("is_fraud", "label_time", "fraud_scenario")]
    records = rows.iloc[-n:][keep].to_dict("records")
    return [
        Transaction.model_validate({k: v for k, v in r.items() if v is not None and v == v}) for r in records
    ]


def state_on_redis(redis: Private, tmp_path: Path, bundle_path: Path) -> Settings:
    """An API on a SQLite file, with its feature state in ``redis``."""
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'fraud.db'}",
        model_path=bundle_path,
        state_url=f"{redis.redis_url}?prefix=fs-state:",
    )


@pytest.mark.redis
def test_lost_feature_state_is_rebuilt_from_storage_before_scoring(
    private_redis: Private, tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame
) -> None:
    """Scores after Redis lost the feature state (while the API ran, and before it started) use the
    histories storage holds, not empty ones: every stored feature vector equals the offline value."""
    txs = one_customer(small_frame, 8)
    settings = state_on_redis(private_redis, tmp_path, bundle_path)

    def score(client: TestClient, tx: Transaction) -> None:
        response = client.post("/v1/score", json=tx.model_dump(mode="json"))
        assert response.status_code == 200, response.text

    with TestClient(create_app(settings)) as client:
        for tx in txs[:4]:
            score(client, tx)
        lose_redis_memory(private_redis, "flush")  # under the running API
        for tx in txs[4:6]:
            score(client, tx)
    lose_redis_memory(private_redis, "restart")  # before the next start
    with TestClient(create_app(settings)) as client:
        for tx in txs[6:]:
            score(client, tx)

    offline = FeatureEngine().compute(TransactionBatch.from_transactions(txs), labels_from_batch=False)
    store = open_store(settings.db_url)
    decisions = store.decisions.get_many([t.transaction_id for t in txs])
    stored = np.array(
        [[np.nan if v is None else v for v in decisions[t.transaction_id].features.values()] for t in txs]
    )
    store.close()
    np.testing.assert_allclose(stored, offline, rtol=1e-9, atol=1e-9)


@pytest.mark.redis
def test_scoring_waits_while_another_process_rebuilds_the_state(
    private_redis: Private, tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame
) -> None:
    """While the state's marker says another process is rebuilding it, scoring answers 503; once that
    process is gone (its marker expired or given up), the next request rebuilds the state and scores."""
    import redis

    txs = one_customer(small_frame, 2)
    settings = state_on_redis(private_redis, tmp_path, bundle_path)
    client = redis.Redis.from_url(private_redis.redis_url)
    with TestClient(create_app(settings)) as api:
        assert api.post("/v1/score", json=txs[0].model_dump(mode="json")).status_code == 200
        client.flushall()
        client.set("fs-state:epoch", "b:another-process", ex=60)
        refused = api.post("/v1/score", json=txs[1].model_dump(mode="json"))
        assert refused.status_code == 503 and "feature state" in refused.json()["detail"], refused.text
        client.delete("fs-state:epoch")
        scored = api.post("/v1/score", json=txs[1].model_dump(mode="json"))
        assert scored.status_code == 200, scored.text
    client.close()
    store = open_store(settings.db_url)
    assert store.decisions.decided_ids([t.transaction_id for t in txs]) == {t.transaction_id for t in txs}
    store.close()


# ------------------------------------------------------------------ a message that kills workers


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.fixture(
    params=[pytest.param("redis", marks=pytest.mark.redis), pytest.param("kafka", marks=pytest.mark.kafka)]
)
def broker_url(request: pytest.FixtureRequest) -> str:
    token = secrets.token_hex(4)
    if request.param == "redis":
        return f"{request.getfixturevalue('redis_url')}?prefix=fs-{token}:"
    return f"{request.getfixturevalue('kafka_url')}?prefix=fs-{token}-"


def publish_raw(broker_url: str, payloads: list[bytes]) -> None:
    """Payloads written straight onto the broker as another producer would, bypassing the API."""
    if broker_url.startswith("redis"):
        import redis

        plain, _, prefix = broker_url.partition("?prefix=")
        client = redis.Redis.from_url(plain)
        for payload in payloads:
            client.xadd(f"{prefix}{TRANSACTIONS}", {"p": payload})
        client.close()
        return
    from confluent_kafka import Producer

    servers, _, prefix = broker_url.removeprefix("kafka://").partition("?prefix=")
    producer = Producer({"bootstrap.servers": servers})
    for payload in payloads:
        producer.produce(f"{prefix}{TRANSACTIONS}", payload)
    assert producer.flush(30) == 0


@pytest.mark.slow
def test_a_message_nested_too_deep_is_dead_lettered_without_killing_the_worker(
    broker_url: str, tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame
) -> None:
    """``extra`` nested far deeper than validation allows, written onto the broker directly: as JSON the
    broker decodes (1,000 deep) and as JSON too deep to decode (3,000). Each becomes a dead letter holding
    the message as it came, and the worker decides everything else."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'fraud.db'}",
        model_path=bundle_path,
        broker_url=broker_url,
        consumer_group=f"fs-{secrets.token_hex(4)}",
        batch_size=100,
    )
    services = open_services(settings)
    good = transactions(small_frame, 30)
    services.broker.publish(TRANSACTIONS, [transaction_message(t, "customer_id") for t in good])
    fields = good[0].model_dump(mode="json", exclude={"extra"})
    poison = [
        orjson.dumps(fields | {"transaction_id": f"deep-{depth}"}).decode()[:-1]
        + f',"extra":{nested(depth)}}}'
        for depth in (1000, 3000)
    ]
    publish_raw(broker_url, [text.encode() for text in poison])
    worker = Worker(
        services.broker, services.decider, services.store,
        batch_size=100, max_wait=0.2, results_topic=RESULTS, dead_letters_topic=DEAD_LETTERS,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while worker.stats.decided + worker.stats.dead < len(good) + 2:
        assert time.monotonic() < deadline, f"{worker.stats.decided} decided, {worker.stats.dead} dead"
        worker.run_once()  # an exception here is the worker dying
    letters = services.store.dead_letters.list(10)
    services.close()
    assert worker.stats.decided == len(good) and worker.stats.dead == 2
    assert sorted("".join(letter["payload"].split()) for letter in letters) == sorted(poison)
    reasons = sorted(letter["reason"] for letter in letters)
    assert "nested more than 4 deep" in reasons[0] and reasons[1].startswith("message:"), reasons


# ------------------------------------------------------------------ producers write where workers read


@pytest.mark.redis
def test_simulate_without_url_publishes_to_the_configured_broker(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{redis_url}?prefix=fs-{secrets.token_hex(4)}:"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FRAUD_BROKER_URL", url)
    monkeypatch.setenv("FRAUD_CONSUMER_GROUP", "fs-sim")
    result = CliRunner().invoke(
        cli, ["simulate", "--rate", "5000", "--limit", "50", "--customers", "20", "--days", "1"]
    )
    assert result.exit_code == 0, result.stderr
    assert "sent 50" in result.stderr and "errors 0" in result.stderr
    broker = RedisStreamsBroker(url, group="fs-sim")
    assert broker.pending(TRANSACTIONS) == 50  # on the stream the workers read
    broker.close()
    store = open_store(f"sqlite:///{tmp_path / 'fraudstream.db'}")
    assert store.queue.pending(TRANSACTIONS) == 0  # not in the database's queue, which no worker reads
    store.close()


# ------------------------------------------------------------------ Kafka down


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_going_down_answers_503_within_seconds(
    private_kafka: Private, tmp_path: Path, bundle_path: Path
) -> None:
    """Accepting transactions while Kafka is killed: 503 within seconds (not after the producer's
    whole retry time), and the refused transaction is not kept, so the client's retry is accepted."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'fraud.db'}",
        model_path=bundle_path,
        broker_url=private_kafka.kafka_url,
    )
    now = pd.Timestamp.now(tz="UTC").isoformat()

    def body(tx_id: str) -> dict[str, Any]:
        return {"transaction_id": tx_id, "timestamp": now, "customer_id": "c1", "amount": 10.0}

    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/transactions", json=body("before")).status_code == 202
        private_kafka.kill("kafka")
        started = time.monotonic()
        refused = client.post("/v1/transactions", json=body("during"))
        took = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        assert "broker" in refused.json()["detail"] and refused.headers["Retry-After"]
        assert took < 20, f"took {took:.1f} s"  # the producer alone would have retried for 30 s
        assert client.get("/v1/transactions/during").status_code == 404
