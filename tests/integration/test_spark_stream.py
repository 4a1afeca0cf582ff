"""The Spark streaming job on real servers: Kafka → Spark (local mode) → Redis state, PostgreSQL decisions,
the decisions topic; killed with SIGKILL mid-stream and restarted on its checkpoint, it decides every
transaction exactly once and counts each in the feature state once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
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

from fraudstream.brokers import open_broker
from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine
from fraudstream.storage import Store, open_store
from fraudstream.worker.worker import RESULTS, TRANSACTIONS
from tests.e2e.test_pipeline import transactions
from tests.integration.conftest import scratch_database

N = 300
ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.spark,
    pytest.mark.slow,
]


def unavailable(reason: str) -> None:
    if os.environ.get("FRAUD_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def connector_jars() -> Path:
    """The Kafka connector's jars, fetched once by services/spark/fetch.sh (a no-op when current)."""
    if importlib.util.find_spec("pyspark") is None:
        unavailable("PySpark is not installed: pip install 'fraudstream[spark]'")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        unavailable("Spark needs Java 17+: apt-get install openjdk-17-jre-headless")
    fetched = subprocess.run(
        [str(ROOT / "services" / "spark" / "fetch.sh")], capture_output=True, text=True, timeout=600
    )
    if fetched.returncode != 0:
        unavailable(f"cannot fetch the Spark Kafka connector: {fetched.stderr.strip()}")
    return Path(fetched.stdout.strip().splitlines()[-1])


@dataclass
class Job:
    env: dict[str, str]
    store: Store
    broker_url: str
    logs: Path

    def start(self, *options: str) -> subprocess.Popen[bytes]:
        """``fraudstream spark stream`` in a process group of its own (with its JVM and Python workers)."""
        log = (self.logs / f"job-{time.monotonic_ns()}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "fraudstream", "spark", "stream", *options],
            env=os.environ | self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.logs.glob("job-*.log")))


@pytest.fixture
def job(
    tmp_path: Path,
    bundle_path: Path,
    connector_jars: Path,
    postgres_url: str,
    redis_url: str,
    kafka_url: str,
) -> Iterator[Job]:
    token = secrets.token_hex(4)
    broker_url = f"{kafka_url}?prefix=fs-{token}-&partitions=3"
    with scratch_database(postgres_url) as database_url:
        env = {
            "FRAUD_DATA_DIR": str(tmp_path),
            "FRAUD_DATABASE_URL": database_url,
            "FRAUD_MODEL_PATH": str(bundle_path),
            "FRAUD_BROKER_URL": broker_url,
            "FRAUD_STATE_URL": f"{redis_url}?prefix=fs-{token}-state:",
            "FRAUD_SPARK_JARS": str(connector_jars),
            "FRAUD_SPARK_CHECKPOINT": str(tmp_path / "checkpoint"),
            "FRAUD_WORKER_THREADS": "1",
        }
        (tmp_path / "logs").mkdir()
        with open_store(database_url) as store:
            store.migrate()
            yield Job(env, store, broker_url, tmp_path / "logs")


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the job's whole process group: the driver, its JVM and the JVM's Python workers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(60)


def decision_count(store: Store) -> int:
    return int(store.decisions.stats(pd.Timestamp("2000-01-01", tz="UTC").to_pydatetime())["total"])


def test_killed_mid_stream_and_restarted_on_its_checkpoint_it_decides_each_transaction_once(
    job: Job, small_frame: pd.DataFrame
) -> None:
    txs = transactions(small_frame, N)
    ids = [t.transaction_id for t in txs]
    producer = open_broker(job.broker_url, job.store)
    try:
        producer.publish(TRANSACTIONS, [(t.customer_id, t.model_dump(mode="json")) for t in txs])
        producer.publish(TRANSACTIONS, [("bad", {"transaction_id": "bad-1", "amount": "lots"})])
    finally:
        producer.close()

    # Micro-batches of about 15, one after another: the job is killed once a few are stored (some
    # committed to the checkpoint, the next maybe half done), long before all are.
    first = job.start("--trigger-seconds", "0", "--max-offsets-per-trigger", "15")
    try:
        deadline = time.monotonic() + 300
        while len(job.store.decisions.decided_ids(ids)) < 40:
            assert first.poll() is None, f"the job exited with {first.returncode}:\n{job.output()}"
            assert time.monotonic() < deadline, f"nothing decided in time:\n{job.output()}"
            time.sleep(0.02)  # soon after a micro-batch is stored: before Spark commits it, mostly
    finally:
        kill(first)
    decided = len(job.store.decisions.decided_ids(ids))
    assert 0 < decided < N, f"{decided} of {N} decided before the kill: not mid-stream"

    second = job.start("--available-now", "--max-offsets-per-trigger", "100")
    try:
        assert second.wait(400) == 0, job.output()
    finally:
        kill(second)
    assert "spark stream stopped" in job.output()

    assert job.store.decisions.decided_ids(ids) == set(ids)
    assert decision_count(job.store) == N  # none decided twice, the replayed micro-batch included

    # The Redis state counted each transaction once: every stored customer feature (counts, sums over
    # the customer's history) equals its offline point-in-time value.
    engine = FeatureEngine()
    offline = engine.compute(TransactionBatch.from_transactions(txs), labels_from_batch=False)
    stored = np.array(
        [
            [np.nan if v is None else v for v in job.store.decisions.get(t).features.values()]  # type: ignore[union-attr]
            for t in ids
        ]
    )
    customer = [i for i, name in enumerate(engine.names) if name.startswith("customer_")]
    assert customer
    np.testing.assert_allclose(stored[:, customer], offline[:, customer], rtol=1e-9, atol=1e-9)

    # The invalid message went to the dead letters, saying which field is wrong.
    letters = job.store.dead_letters.list(10)
    assert letters and all("amount" in letter["reason"] for letter in letters)

    # Every decision reached the decisions topic (a replayed micro-batch may publish one again).
    reader = open_broker(job.broker_url, job.store, group=f"reader-{secrets.token_hex(4)}")
    try:
        published: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while len(published) < N and time.monotonic() < deadline:
            messages = reader.consume(RESULTS, 1000, 0.5)
            reader.ack(RESULTS, messages)
            published |= {str(m.payload["transaction_id"]): str(m.payload["decision"]) for m in messages}
    finally:
        reader.close()
    assert set(published) == set(ids)
    decisions = job.store.decisions.get_many(ids)
    assert all(published[i] == str(decisions[i].decision) for i in ids)


def test_sigterm_stops_the_job_cleanly_and_a_restart_carries_on_from_the_checkpoint(
    job: Job, small_frame: pd.DataFrame
) -> None:
    txs = transactions(small_frame, 60)
    ids = [t.transaction_id for t in txs]
    producer = open_broker(job.broker_url, job.store)
    try:
        producer.publish(TRANSACTIONS, [(t.customer_id, t.model_dump(mode="json")) for t in txs[:40]])
        running = job.start("--trigger-seconds", "0.5")
        try:
            deadline = time.monotonic() + 300
            while len(job.store.decisions.decided_ids(ids[:40])) < 40:
                assert running.poll() is None, f"the job exited with {running.returncode}:\n{job.output()}"
                assert time.monotonic() < deadline, f"not all decided in time:\n{job.output()}"
                time.sleep(0.2)
            # The job beats where `fraudstream worker --check` (a container health check) looks.
            check = subprocess.run(
                [sys.executable, "-m", "fraudstream", "worker", "--check"],
                env=os.environ | job.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert check.returncode == 0, check.stderr
            assert "alive" in check.stderr
            running.send_signal(signal.SIGTERM)
            assert running.wait(120) == 0, job.output()
        finally:
            kill(running)
        assert "spark stream stopped: 40 decided" in job.output()
        # A retried publish of the first ten, and twenty new ones: only the new are decided.
        again = txs[:10] + txs[40:]
        producer.publish(TRANSACTIONS, [(t.customer_id, t.model_dump(mode="json")) for t in again])
    finally:
        producer.close()
    catch_up = job.start("--available-now")
    try:
        assert catch_up.wait(400) == 0, job.output()
    finally:
        kill(catch_up)
    assert "stopped: 20 decided, 10 duplicates" in job.output()
    assert job.store.decisions.decided_ids(ids) == set(ids)
    assert decision_count(job.store) == 60
