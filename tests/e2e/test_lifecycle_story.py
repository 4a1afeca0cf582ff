"""The model lifecycle of issue 32 as an operator lives it, over HTTP against a real ``fraudstream serve``
process and a real MLflow server: a champion serves with a challenger in shadow, traffic is scored, labels
arrive, the comparison shows both models, the challenger is promoted while traffic keeps flowing, and
every transaction is decided exactly once, by the model that was champion at the time."""

from __future__ import annotations

import copy
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fraudstream.config import Settings
from fraudstream.models.bundle import load_bundle
from fraudstream.registry import register
from tests.e2e.apitools import NOW, tx
from tests.e2e.test_score_crash import free_port, is_ready
from tests.integration.conftest import MLFLOW_URL, require
from tests.waiting import wait_for

pytestmark = pytest.mark.mlflow
CHALLENGER = "story-challenger"
KEY, ADMIN = "story-user-key-0", "story-admin-key-"


def _challenger(bundle_path: Path, into: Path) -> Path:
    """The champion's features under another version, weights and much lower thresholds: it flags more,
    so the two models' decisions differ."""
    bundle = load_bundle(bundle_path)
    other = copy.copy(bundle)
    other.manifest = copy.deepcopy(bundle.manifest)
    other.manifest.version = CHALLENGER
    other.manifest.weights = {"xgboost": 0.3, "logistic": 0.4, "isolation_forest": 0.3}
    other.manifest.thresholds = {"flag": 0.001, "block": 0.2}
    return other.save(into / "challenger.fsb")


def _body(transaction_id: str, i: int) -> dict[str, Any]:
    return tx(transaction_id, f"C{i % 9}", minutes_ago=30 - (i % 200) * 0.1, amount=float(5 + 97 * i % 900))


def _rows(db: Path) -> list[tuple[str, str, str | None]]:
    """(transaction_id, model_version, shadow_version) of every stored decision row."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT transaction_id, model_version, shadow_version FROM decisions").fetchall()


@contextmanager
def _serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """``fraudstream serve`` (with its embedded worker) in its own process; its base URL once ready."""
    port = free_port()
    with log.open("w") as out:
        command = [sys.executable, "-m", "fraudstream", "serve", "--port", str(port)]
        server = subprocess.Popen(command, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not is_ready(f"{base}/ready"):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        # a clean shutdown: uvicorn ends by re-raising the SIGTERM it handled
        assert server.wait(30) in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text()


class Traffic:
    """Senders scoring new transactions over ``POST /v1/score``, each on its own connection, until each
    has sent ``after`` transactions past :meth:`mark`; every answer is kept with its send and answer times."""

    def __init__(self, base: str, key: str, senders: int = 2, after: int = 10) -> None:
        self.base, self.key, self.after = base, key, after
        self.scored: list[tuple[float, float, str, str]] = []  # (sent, answered, transaction_id, version)
        self.failures: list[str] = []
        self.marked: float | None = None
        self.threads = [threading.Thread(target=self._send, args=(n,)) for n in range(senders)]
        for thread in self.threads:
            thread.start()

    def mark(self) -> None:
        self.marked = time.monotonic()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in self.threads) and not self.failures, self.failures

    def versions(self, sender: int) -> list[str]:
        """The model versions one sender's answers carried, in the order it sent them."""
        return [v for _, _, t, v in sorted(self.scored) if t.startswith(f"st-{sender}-")]

    def _send(self, sender: int) -> None:
        past_mark = 0
        with httpx.Client(base_url=self.base, headers={"X-API-Key": self.key}, timeout=60) as client:
            for i in range(5000):
                transaction_id = f"st-{sender}-{i}"
                sent = time.monotonic()
                answer = client.post("/v1/score", json=_body(transaction_id, i))
                if answer.status_code != 200 or answer.json()["duplicate"]:
                    self.failures.append(answer.text)
                    return
                self.scored.append((sent, time.monotonic(), transaction_id, answer.json()["model_version"]))
                past_mark += self.marked is not None and sent > self.marked
                if past_mark >= self.after:
                    return


def test_shadow_compare_promote_under_traffic_and_every_transaction_decided_once(
    bundle_path: Path, tmp_path: Path
) -> None:
    url = require(MLFLOW_URL, "The MLflow tracking server")
    name = f"fs-story-{secrets.token_hex(4)}"
    data = tmp_path / "data"
    settings = Settings(data_dir=data, mlflow_tracking_uri=url, model_registry_name=name)
    champion = load_bundle(bundle_path).manifest.version
    register(bundle_path, {"average_precision": 0.6}, settings=settings)  # version 1: champion
    challenger = _challenger(bundle_path, tmp_path)
    register(challenger, {"average_precision": 0.7}, settings=settings)  # version 2: challenger
    env = {k: v for k, v in os.environ.items() if k not in ("FRAUD_DATABASE_URL", "FRAUD_MODEL_PATH")}
    env |= {
        "FRAUD_DATA_DIR": str(data),
        "FRAUD_MLFLOW_TRACKING_URI": url,
        "FRAUD_MODEL_REGISTRY_NAME": name,
        "FRAUD_MODEL_URI": f"models:/{name}@champion",
        "FRAUD_CHALLENGER_URI": f"models:/{name}@challenger",
        "FRAUD_API_KEYS": KEY,
        "FRAUD_ADMIN_KEYS": ADMIN,
        "FRAUD_MAX_WAIT": "0.01",
    }
    with (
        _serve(env, tmp_path / "serve.log") as base,
        httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=60) as client,
    ):
        # 1. the champion serves, the challenger shadows it
        served = client.get("/v1/model").json()
        assert (served["version"], served["registry"]["version"]) == (champion, "1")
        assert (served["challenger"]["version"], served["challenger"]["registry_version"]) == (
            CHALLENGER,
            "2",
        )

        # 2. traffic, then its labels
        first = [f"st-a{i}" for i in range(30)]
        for i, transaction_id in enumerate(first):
            answer = client.post("/v1/score", json=_body(transaction_id, i))
            assert answer.status_code == 200 and answer.json()["model_version"] == champion, answer.text
        labels = [
            {"transaction_id": t, "is_fraud": i % 3 == 0, "label_time": NOW.isoformat()}
            for i, t in enumerate(first)
        ]
        assert client.post("/v1/labels", json=labels).is_success

        # 3. the comparison shows both models on the same labelled decisions
        report = client.get("/v1/models/compare", params={"since": "1d"}).json()
        assert report["labelled"] == len(first)
        models = {m["version"]: m for m in report["models"]}
        assert {v: (m["decided"], m["in_shadow"]) for v, m in models.items()} == {
            champion: (len(first), 0),
            CHALLENGER: (0, len(first)),
        }
        for m in models.values():
            assert m["labelled"] == len(first) and m["frauds"] == 10
            assert 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["average_precision"] <= 1.0
        (pair,) = report["pairs"]
        assert (pair["decided_by"], pair["other"]) == (champion, CHALLENGER)
        assert 0.0 <= pair["agreement"] < 1.0  # the challenger's low thresholds flag more

        # 4. promote over HTTP, with the admin key only, while two senders keep scoring
        traffic = Traffic(base, KEY)
        wait_for(lambda: len(traffic.scored) >= 20 or bool(traffic.failures), "traffic before promoting", 30)
        body = {"challenger": True, "by": "story", "comparison": {"pairs": report["pairs"]}}
        refused = client.post("/v1/models/promote", json=body)
        assert refused.status_code == 403, refused.text  # an API key is not an admin key
        promoting = time.monotonic()
        done = client.post("/v1/models/promote", json=body, headers={"X-API-Key": ADMIN})
        traffic.mark()
        assert done.status_code == 200, done.text
        assert (done.json()["from_version"], done.json()["to_version"]) == ("1", "2")
        queued = [_body(f"st-q{i}", i) for i in range(20)]  # the embedded worker's path, after the swap
        assert client.post("/v1/transactions", json=queued).status_code == 202
        traffic.join()

        # 5. answers before the promotion are the old champion's, later ones the new
        scored, promoted = traffic.scored, traffic.marked or 0.0
        assert {v for _, a, _, v in scored if a < promoting} == {champion}
        assert {v for s, _, _, v in scored if s > promoted} == {CHALLENGER}
        for n in range(2):  # each sender sees the old model, then the new, never back
            assert traffic.versions(n) == sorted(traffic.versions(n), key=[champion, CHALLENGER].index)
        served = client.get("/v1/model").json()
        assert (served["version"], served["registry"]["version"]) == (CHALLENGER, "2")
        assert served["challenger"] is None  # the promoted challenger's alias is gone: nothing shadows
        for item in queued:
            status = client.get(f"/v1/transactions/{item['transaction_id']}", params={"wait": 10}).json()
            assert status["status"] == "decided" and status["decision"]["model_version"] == CHALLENGER, status
        answered = {t: v for _, _, t, v in scored}
        for transaction_id in list(answered)[::10]:
            status = client.get(f"/v1/transactions/{transaction_id}").json()
            assert status["decision"]["model_version"] == answered[transaction_id]
        recorded = client.get("/v1/models", params={"history": 5}).json()["promotions"][0]
        assert (recorded["action"], recorded["from_version"], recorded["to_version"]) == ("promote", "1", "2")
        assert recorded["promoted_by"].startswith("story")
        assert recorded["comparison"]["pairs"] == report["pairs"]

    # 6. none lost, none decided twice: one stored decision per transaction sent, by the version answered
    rows = _rows(data / "fraudstream.db")
    sent = first + list(answered) + [q["transaction_id"] for q in queued]
    assert len(rows) == len(sent) == len(set(sent)) and {t for t, _, _ in rows} == set(sent)
    stored = {t: (model, shadow) for t, model, shadow in rows}
    assert all(stored[t] == (champion, CHALLENGER) for t in first)
    assert all(stored[t][0] == v for t, v in answered.items())
    assert all(stored[t] == (CHALLENGER, None) for s, _, t, _ in scored if s > promoted)
