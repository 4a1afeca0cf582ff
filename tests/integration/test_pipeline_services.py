"""End to end on real servers: API → Redis Streams or Kafka → worker processes → PostgreSQL.

Every transaction is decided exactly once, through duplicates, a worker killed mid-batch and its
restart, and the feature state counts each transaction once (stored feature vectors equal the
offline point-in-time values).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraudstream.api.app import create_app
from fraudstream.config import Settings
from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine
from fraudstream.storage import Store, open_store
from tests.e2e.test_pipeline import CRASHING_WORKER, transactions
from tests.integration.conftest import scratch_database

N = 400
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@dataclass
class Stack:
    kind: str
    settings: Settings
    env: dict[str, str]
    store: Store


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("kafka", marks=[pytest.mark.kafka, pytest.mark.redis]),
    ]
)
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, bundle_path: Path, postgres_url: str
) -> Iterator[Stack]:
    kind = request.param
    redis_url = request.getfixturevalue("redis_url")
    token = secrets.token_hex(4)
    broker_url = (
        f"{redis_url}?prefix=fs-{token}:"
        if kind == "redis"
        else f"{request.getfixturevalue('kafka_url')}?prefix=fs-{token}-"
    )
    with scratch_database(postgres_url) as database_url:
        env = {
            "FRAUD_DATA_DIR": str(tmp_path),
            "FRAUD_DATABASE_URL": database_url,
            "FRAUD_MODEL_PATH": str(bundle_path),
            "FRAUD_BROKER_URL": broker_url,
            "FRAUD_STATE_URL": f"{redis_url}?prefix=fs-{token}-state:",
            "FRAUD_CONSUMER_GROUP": f"fs-{token}",
            "FRAUD_CLAIM_IDLE_SECONDS": "1",
            "FRAUD_BATCH_SIZE": "100",
            "FRAUD_MAX_WAIT": "0.5",
        }
        settings = Settings(**{k.removeprefix("FRAUD_").lower(): v for k, v in env.items()})
        store = open_store(database_url)
        store.migrate()
        yield Stack(kind, settings, env, store)
        store.close()


def start_worker(stack: Stack, crash_on: int = 0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CRASHING_WORKER, str(crash_on)], env=os.environ | stack.env
    )


def wait_decided(store: Store, ids: list[str], worker: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while len(store.decisions.decided_ids(ids)) < len(ids):
        assert worker.poll() is None, f"worker exited with {worker.returncode}"
        assert time.monotonic() < deadline, f"{len(store.decisions.decided_ids(ids))} of {len(ids)} decided"
        time.sleep(0.2)


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0


def decision_count(store: Store) -> int:
    return store.decisions.stats(pd.Timestamp("2000-01-01", tz="UTC").to_pydatetime())["total"]  # type: ignore[no-any-return]


def test_api_to_broker_to_worker_decides_each_transaction_once_through_a_crash(
    stack: Stack, small_frame: pd.DataFrame
) -> None:
    txs = transactions(small_frame, N)
    ids = [t.transaction_id for t in txs]
    bodies = [t.model_dump(mode="json") for t in txs]
    with TestClient(create_app(stack.settings)) as client:
        for lo in range(0, N, 100):
            response = client.post("/v1/transactions", json=bodies[lo : lo + 100])
            assert response.status_code == 202 and len(response.json()["accepted"]) == 100
        retried = client.post("/v1/transactions", json=bodies[:50])  # a client retry: no second message
        assert retried.json()["duplicates"] == ids[:50]

    crashed = start_worker(stack, crash_on=2)
    assert crashed.wait(180) == 9
    decided = stack.store.decisions.decided_ids(ids)
    assert 0 < len(decided) < N

    worker = start_worker(stack)
    wait_decided(stack.store, ids, worker)
    stop(worker)
    assert stack.store.decisions.decided_ids(ids) == set(ids)
    assert decision_count(stack.store) == N  # no transaction decided twice

    # The feature state counted every transaction once, crash and redelivery included. Customer
    # features are exact on every broker (a customer's events stay in order in one partition);
    # Redis Streams keep one total order, so there every feature equals its offline value.
    engine = FeatureEngine()
    batch = TransactionBatch.from_transactions(txs)
    offline = engine.compute(batch, labels_from_batch=False)
    stored = np.array(
        [[np.nan if v is None else v for v in stack.store.decisions.get(t).features.values()]  # type: ignore[union-attr]
         for t in ids]
    )  # fmt: skip
    columns = (
        slice(None)
        if stack.kind == "redis"
        else [i for i, n in enumerate(engine.names) if n.startswith("customer_")]
    )
    np.testing.assert_allclose(stored[:, columns], offline[:, columns], rtol=1e-9, atol=1e-9)


@pytest.mark.redis
@pytest.mark.parametrize("stack", ["redis"], indirect=True)
def test_the_worker_looks_up_only_recorded_transactions_and_keeps_decisions_made_elsewhere(
    stack: Stack, small_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the Redis state and PostgreSQL: transactions the API decided (recorded, then stored) are
    looked up and skipped; those stored by a process that never recorded them are found when storing.
    Either way the stored decision stands, counts as a duplicate and is published again."""
    from fraudstream.brokers import open_broker
    from fraudstream.runtime import open_services
    from fraudstream.worker import Worker
    from fraudstream.worker.worker import RESULTS, TRANSACTIONS

    txs = transactions(small_frame, 300)
    ids = [t.transaction_id for t in txs]
    services = open_services(stack.settings)
    reader = open_broker(stack.settings.broker_url, stack.store, group="downstream")
    try:
        scorer, store = services.scorer, services.store
        names = scorer.engine.names
        api = TransactionBatch.from_transactions(txs[:40])
        store.decisions.save(scorer.score(api).columns(names, "api"), txs[:40])
        scorer.engine.record(api, scorer.state)  # as the API's decider records what it stored
        other = TransactionBatch.from_transactions(txs[40:60])
        store.decisions.save(scorer.score(other).columns(names, "elsewhere"), txs[40:60])
        asked: list[str] = []
        real = store.decisions.known
        monkeypatch.setattr(store.decisions, "known", lambda some: asked.extend(some) or real(some))

        services.broker.publish(TRANSACTIONS, [(t.customer_id, t.model_dump(mode="json")) for t in txs])
        decider = services.decider
        worker = Worker(services.broker, decider, store, batch_size=100, max_wait=0.01, results_topic=RESULTS)
        stats = worker.run(burst=True)
        assert sorted(asked) == sorted(ids[:40])
        assert (stats.decided, stats.duplicates, stats.dead) == (240, 60, 0)
        assert decision_count(store) == 300
        versions = {i: store.decisions.get(i).model_version for i in ids}  # type: ignore[union-attr]
        assert [versions[i] for i in ids[:60]] == ["api"] * 40 + ["elsewhere"] * 20
        assert set(versions[i] for i in ids[60:]) == {scorer.version}

        published: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        while len(published) < 300 and time.monotonic() < deadline:
            messages = reader.consume(RESULTS, 500, 0.2)
            reader.ack(RESULTS, messages)
            published += [m.payload for m in messages]
        assert sorted(str(p["transaction_id"]) for p in published) == sorted(ids)
        assert all(p["model_version"] == versions[str(p["transaction_id"])] for p in published)
    finally:
        reader.close()
        services.close()
