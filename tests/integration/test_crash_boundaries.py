"""kill -9 at every boundary of the decider's order, through both entry points, on both kinds of backend.

A ``fraudstream worker`` (fed by the database queue) or a ``fraudstream serve`` (fed by a client that
retries as a payment service would) kills itself right after a batch is stored and before the feature
state records it, or right after the state recorded it and before anything is handed over; then the
same command runs again, untouched, and finishes the work. Every transaction must then be decided and
stored exactly once, answered with its stored decision, and counted exactly once in the feature state:
the live features of every customer equal their offline recomputation from what storage holds.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Transaction
from fraudstream.features import FeatureEngine
from fraudstream.storage import open_store, tables
from tests.conftest import REPO_ROOT
from tests.e2e.test_pipeline import transactions
from tests.integration.conftest import scratch_database

N = 120
BATCH = 30
CUSTOMERS = 6
LEASE = 2.0
"""Seconds a worker holds the queue's messages it took: a dead worker's batch is taken again after it."""


@dataclass
class Backend:
    env: dict[str, str]
    url: str


@pytest.fixture(
    params=["sqlite+memory", pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis])]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path, bundle_path: Path) -> Iterator[Backend]:
    env = {
        "FRAUD_DATA_DIR": str(tmp_path),
        "FRAUD_MODEL_PATH": str(bundle_path),
        "FRAUD_BROKER_URL": "database://",
        "FRAUD_LEASE_SECONDS": str(LEASE),
    }
    if request.param == "sqlite+memory":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
        yield Backend(env | {"FRAUD_DATABASE_URL": url, "FRAUD_STATE_URL": "memory://"}, url)
        return
    redis = request.getfixturevalue("redis_url")
    state = f"{redis}?prefix=crash-{secrets.token_hex(4)}:"
    with scratch_database(request.getfixturevalue("postgres_url")) as url:
        yield Backend(env | {"FRAUD_DATABASE_URL": url, "FRAUD_STATE_URL": state}, url)


def traffic(frame: pd.DataFrame) -> list[Transaction]:
    """The last transactions of a few customers, many to each, so that their features count each other."""
    busy = frame["customer_id"].value_counts().index[:CUSTOMERS]
    return transactions(frame[frame["customer_id"].isin(busy)], N)


def command(crash: tuple[str, int] | None) -> list[str]:
    """``fraudstream``, or the one that kills itself at ``crash`` (see :mod:`tests.crashing`)."""
    if crash is None:
        return [sys.executable, "-m", "fraudstream"]
    return [sys.executable, "-m", "tests.crashing", crash[0], str(crash[1])]


def run(
    args: list[str], env: dict[str, str], *, crash: tuple[str, int] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(crash), *args],
        env=os.environ | env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``fraudstream serve`` in a process of its own (no embedded worker)."""

    def __init__(self, env: dict[str, str], crash: tuple[str, int] | None = None) -> None:
        self.port = free_port()
        args = ["serve", "--port", str(self.port), "--no-with-worker"]
        self.process = subprocess.Popen(
            [*command(crash), *args], env=os.environ | env, cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 180
        while not self._ready():
            assert self.process.poll() is None, "the server exited while starting"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(30)


def send_all(
    txs: list[Transaction], env: dict[str, str], crash: tuple[str, int]
) -> dict[str, dict[str, Any]]:
    """POST every transaction, one request at a time, as a client that retries on a lost connection:
    against a server that dies at ``crash``, then against a new one."""
    answers: dict[str, dict[str, Any]] = {}
    server = Server(env, crash)
    try:
        for t in txs:
            body = t.model_dump(mode="json")
            while True:
                try:
                    response = httpx.post(f"{server.url}/v1/score", json=body, timeout=60)
                    break
                except httpx.TransportError:  # the server died: start another and send it again
                    assert server.process.wait(30) == -9, "the server died, but not of the crash"
                    server = Server(env)
            assert response.status_code == 200, response.text
            answers[t.transaction_id] = response.json()
    finally:
        server.close()
    return answers


def check_exactly_once(backend: Backend, txs: list[Transaction], bundle_path: Path) -> None:
    """Decided and stored once each, and counted once in the feature state: every customer's live
    features (a probe right after the traffic) equal their recomputation from the stored transactions."""
    ids = [t.transaction_id for t in txs]
    with open_store(backend.url) as store:
        with store.db.read() as conn:
            rows = conn.execute(select(func.count()).select_from(tables.decisions)).scalar_one()
        assert rows == len(ids)
        assert set(store.decisions.get_many(ids)) == set(ids)
        assert all(store.decisions.get_transaction(i)["status"] == "decided" for i in ids)  # type: ignore[index]
    from fraudstream.config import Settings
    from fraudstream.runtime import open_services

    settings = Settings(**{k.removeprefix("FRAUD_").lower(): v for k, v in backend.env.items()})
    services = open_services(settings)
    try:
        engine = FeatureEngine(services.scorer.engine.feature_set)
        end = max(t.timestamp for t in txs) + timedelta(seconds=1)
        customers = sorted({t.customer_id for t in txs})
        probes = [
            Transaction(transaction_id=f"probe-{c}", timestamp=end, customer_id=c, amount=1.0)
            for c in customers
        ]
        live = services.decider.score(TransactionBatch.from_transactions(probes)).features
        offline = engine.compute(TransactionBatch.from_transactions([*txs, *probes]))[len(txs) :]
        np.testing.assert_allclose(live, offline, rtol=1e-9, atol=1e-9, equal_nan=True)
    finally:
        services.close()


@pytest.mark.slow
@pytest.mark.parametrize(("boundary", "nth"), [("stored", 2), ("recorded", 3)])
def test_a_worker_killed_at_a_boundary_decides_and_counts_everything_once(
    backend: Backend, small_frame: pd.DataFrame, bundle_path: Path, boundary: str, nth: int
) -> None:
    txs = traffic(small_frame)
    with open_store(backend.url) as store:
        store.migrate()
        assert len(store.queue.accept(txs)) == N
    worker = ["worker", "--burst", "--batch-size", str(BATCH)]
    crashed = run(worker, backend.env, crash=(boundary, nth))
    assert crashed.returncode == -9, crashed.stderr
    time.sleep(LEASE + 0.5)  # the dead worker's claim on its batch runs out
    finished = run(worker, backend.env)
    assert finished.returncode == 0, finished.stderr
    check_exactly_once(backend, txs, bundle_path)


@pytest.mark.slow
@pytest.mark.parametrize(("boundary", "nth"), [("stored", 4), ("recorded", 7)])
def test_a_server_killed_at_a_boundary_answers_the_retry_and_counts_everything_once(
    backend: Backend, small_frame: pd.DataFrame, bundle_path: Path, boundary: str, nth: int
) -> None:
    txs = traffic(small_frame)[:40]
    with open_store(backend.url) as store:
        store.migrate()
    answers = send_all(txs, backend.env, crash=(boundary, nth))
    crashed_at = txs[nth - 1].transaction_id
    assert answers[crashed_at]["duplicate"] is True  # its decision was stored before the crash
    assert sum(a["duplicate"] for a in answers.values()) == 1
    with open_store(backend.url) as store:
        stored = store.decisions.get_many(list(answers))
        assert all(stored[i].decision == a["decision"] for i, a in answers.items())
    check_exactly_once(backend, txs, bundle_path)
