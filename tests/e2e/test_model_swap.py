"""A promotion reaches a running server without a restart, against a real MLflow server: traffic through
/v1/score and the embedded worker is decided exactly once, by the old model before and the new one after,
and a server polling its alias follows a promotion made by the CLI in another process."""

from __future__ import annotations

import copy
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fraudstream.cli import app as cli
from fraudstream.config import Settings
from fraudstream.events.transaction import Transaction
from fraudstream.models.bundle import load_bundle
from fraudstream.registry import register
from fraudstream.storage import open_store
from tests.e2e.apitools import Api, stored, tx
from tests.integration.conftest import MLFLOW_URL, require
from tests.waiting import wait_for

pytestmark = pytest.mark.mlflow
NEW = "swap-new-model"


@pytest.fixture
def two_versions(tmp_path: Path, bundle_path: Path) -> tuple[Settings, str]:
    """Version 1 (champion) is the test bundle; version 2 the same features reweighted, as model NEW."""
    url = require(MLFLOW_URL, "The MLflow tracking server")
    name = f"fs-swap-{secrets.token_hex(4)}"
    settings = Settings(data_dir=tmp_path / "reg", mlflow_tracking_uri=url, model_registry_name=name)
    old = load_bundle(bundle_path)
    new = copy.copy(old)
    new.manifest = copy.deepcopy(old.manifest)
    new.manifest.version = NEW
    new.manifest.weights = {"xgboost": 0.2, "logistic": 0.5, "isolation_forest": 0.3}
    register(bundle_path, {"average_precision": 0.6}, settings=settings)
    register(new.save(tmp_path / "new.fsb"), {"average_precision": 0.7}, settings=settings)
    return settings, old.manifest.version


def _serve(make_api: Callable[..., Api], settings: Settings, **overrides: Any) -> Api:
    name = settings.model_registry_name
    return make_api(
        mlflow_tracking_uri=settings.mlflow_tracking_uri,
        model_registry_name=name,
        model_uri=f"models:/{name}@champion",
        **overrides,
    )


def _version(client: Any, transaction_id: str) -> str:
    got = client.get(f"/v1/transactions/{transaction_id}").json()
    assert got["status"] == "decided", got
    return str(got["decision"]["model_version"])


def test_a_promotion_over_http_swaps_the_model_under_traffic_deciding_each_transaction_once(
    make_api: Callable[..., Api], two_versions: tuple[Settings, str]
) -> None:
    settings, old = two_versions
    client, services, _ = _serve(make_api, settings, run_worker=True, model_poll_seconds=0)
    assert client.get("/v1/model").json()["version"] == old

    def queue(ids: list[str]) -> None:
        for lo in range(0, len(ids), 5):
            assert client.post("/v1/transactions", json=[tx(i, f"C{i}") for i in ids[lo : lo + 5]]).is_success

    before = [f"q-before-{i}" for i in range(15)]
    queue(before)
    wait_for(lambda: stored(services) == len(before), "queued transactions decided")

    scored: list[tuple[float, float, str]] = []  # (sent, answered, model_version) per /v1/score
    promoted_at: list[float] = []

    def score() -> None:  # until 10 transactions were sent after the promotion answered
        for i in range(5000):
            sent = time.monotonic()
            answer = client.post("/v1/score", json=tx(f"s-{i}", f"S{i % 7}"))
            assert answer.status_code == 200 and answer.json()["duplicate"] is False, answer.text
            scored.append((sent, time.monotonic(), answer.json()["model_version"]))
            if promoted_at and sum(s > promoted_at[0] for s, _, _ in scored) >= 10:
                return

    sender = threading.Thread(target=score)
    sender.start()
    wait_for(lambda: len(scored) >= 10, "some transactions scored before the promotion")
    promoting = time.monotonic()
    done = client.post("/v1/models/promote", json={"version": "2"})
    promoted_at.append(time.monotonic())
    assert done.status_code == 200, done.text
    after = [f"q-after-{i}" for i in range(15)]
    queue(after)
    sender.join(timeout=120)
    assert not sender.is_alive()

    sent = len(before) + len(scored) + len(after)
    wait_for(lambda: stored(services) == sent, "every transaction decided")
    assert stored(services) == sent  # each decided once: no loss, no second decision
    versions = [v for _, _, v in scored]
    assert set(versions) == {old, NEW} and versions == sorted(versions, key=[old, NEW].index)
    assert all(v == old for s, a, v in scored if a < promoting)
    assert all(v == NEW for s, a, v in scored if s > promoted_at[0])
    assert [_version(client, i) for i in before] == [old] * len(before)
    assert [_version(client, i) for i in after] == [NEW] * len(after)
    served = client.get("/v1/model").json()
    assert served["version"] == NEW and served["registry"]["version"] == "2"


def test_a_server_polling_its_alias_follows_a_cli_promotion_in_another_process(
    make_api: Callable[..., Api], two_versions: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, old = two_versions
    client, _, _ = _serve(make_api, settings, model_poll_seconds=1)
    assert client.post("/v1/score", json=tx("w-1")).json()["model_version"] == old

    env = {
        **os.environ,
        "FRAUD_DATA_DIR": str(tmp_path / "cli"),
        "FRAUD_MLFLOW_TRACKING_URI": str(settings.mlflow_tracking_uri),
        "FRAUD_MODEL_REGISTRY_NAME": settings.model_registry_name,
    }
    cli = [sys.executable, "-m", "fraudstream", "models", "promote", "2"]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr

    wait_for(lambda: client.get("/v1/model").json()["version"] == NEW, "the new champion served", 30)
    assert client.get("/v1/model").json()["registry"]["version"] == "2"
    assert client.post("/v1/score", json=tx("w-2")).json()["model_version"] == NEW


def test_the_worker_command_follows_a_promotion_between_batches(
    two_versions: tuple[Settings, str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, old = two_versions
    db = workdir / "swap.db"
    env = {
        "FRAUD_DATABASE_URL": f"sqlite:///{db}",
        "FRAUD_MLFLOW_TRACKING_URI": str(settings.mlflow_tracking_uri),
        "FRAUD_MODEL_REGISTRY_NAME": settings.model_registry_name,
        "FRAUD_MODEL_URI": f"models:/{settings.model_registry_name}@champion",
        "FRAUD_MODEL_POLL_SECONDS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()

    def enqueue(prefix: str, n: int) -> None:  # as POST /v1/transactions does on the database broker
        store = open_store(f"sqlite:///{db}")
        try:
            txs = [Transaction.model_validate(tx(f"{prefix}-{i}", f"C{i % 9}")) for i in range(n)]
            assert len(store.queue.accept(txs)) == n
        finally:
            store.close()

    def by_version() -> dict[str, int]:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT model_version, count(*) FROM decisions GROUP BY model_version")
            return dict(rows.fetchall())

    log = workdir / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "fraudstream", "worker"], env=dict(os.environ), stdout=out, stderr=out
        )
    try:
        wait_for((workdir / "data" / "worker-health.json").exists, "the worker's first heartbeat", 120)
        enqueue("before", 40)
        wait_for(lambda: by_version() == {old: 40}, "the first transactions decided by version 1", 120)
        promoted = runner.invoke(cli, ["models", "promote", "2"])
        assert promoted.exit_code == 0, promoted.stderr
        wait_for(lambda: "swapped in place" in log.read_text(), "the worker's swap", 60)
        enqueue("after", 40)
        wait_for(lambda: sum(by_version().values()) == 80, "every transaction decided", 120)
    finally:
        worker.terminate()
        assert worker.wait(30) == 0
    assert by_version() == {old: 40, NEW: 40}  # each decided once, by the model served at the time
    assert f"version 1 (model {old}) -> version 2 (model {NEW})" in log.read_text()
