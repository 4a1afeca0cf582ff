"""Drift through the API and the CLI: a shifted stream raises the score's and features' PSI and a drift
alert, a stable one does neither, and ``fraudstream drift`` reports the same from stored decisions.

The stable stream is the reference data itself, sent again: the test model's reference is built from
these transactions scored by the serving path, so a stable stream is drawn exactly like it, and the
shifted one is the same stream with every amount ten times larger.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.config import Settings
from fraudstream.dashboard.drift import drift_frame, headline
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Transaction
from fraudstream.models.bundle import load_bundle
from fraudstream.models.reference import NO_REFERENCE, Reference, build_reference
from fraudstream.runtime import open_services
from tests.e2e.apitools import Api, metric, stored

N = 2000
CHUNK = 1000


def stream(frame: pd.DataFrame, amount_factor: float = 1.0) -> list[dict[str, Any]]:
    """The last ``N`` transactions of ``frame`` as request bodies, amounts scaled."""
    keep = [c for c in frame.columns if c not in ("is_fraud", "label_time", "fraud_scenario")]
    rows = frame.iloc[-N:][keep].copy()
    rows["amount"] = rows["amount"] * amount_factor
    rows["timestamp"] = rows["timestamp"].map(lambda t: t.isoformat())
    if "account_created_at" in rows:
        rows["account_created_at"] = rows["account_created_at"].map(
            lambda t: None if pd.isna(t) else t.isoformat()
        )
    return [{k: v for k, v in r.items() if v is not None and v == v} for r in rows.to_dict("records")]


@pytest.fixture(scope="module")
def drift_model(
    tmp_path_factory: pytest.TempPathFactory, bundle_path: Path, small_frame: pd.DataFrame
) -> Path:
    """The test model, with a reference built from the stream as the serving path scores it."""
    folder = tmp_path_factory.mktemp("drift")
    settings = Settings(data_dir=folder, database_url=f"sqlite:///{folder}/ref.db", model_path=bundle_path)
    services = open_services(settings)
    try:
        batch = TransactionBatch.from_transactions(
            [Transaction.model_validate(b) for b in stream(small_frame)]
        )
        scored = services.scorer.score(batch)
    finally:
        services.close()
    bundle = load_bundle(bundle_path)
    assert bundle.reference is not None
    trained = Reference.from_dict(bundle.reference)
    names = bundle.manifest.feature_names
    reference = build_reference(
        scored.features, names, scored.probability, bundle.manifest.thresholds, important=trained.important
    )
    bundle.reference = reference.to_dict()
    return bundle.save(folder / "model.fsb")


def send(client: TestClient, bodies: list[dict[str, Any]], services: Any) -> None:
    """Queue the stream for the embedded worker and wait until every transaction is decided."""
    for lo in range(0, len(bodies), CHUNK):
        response = client.post("/v1/transactions", json=bodies[lo : lo + CHUNK])
        assert response.status_code == 202, response.text
    deadline = time.monotonic() + 120
    while stored(services) < len(bodies):
        assert time.monotonic() < deadline, f"{stored(services)} of {len(bodies)} decided"
        time.sleep(0.2)


def drift_alerts(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/v1/alerts", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return [a for a in response.json() if a["kind"] == "drift"]


def test_a_shifted_stream_drifts_and_alerts(
    make_api: Callable[..., Api], drift_model: Path, small_frame: pd.DataFrame
) -> None:
    client, services, _ = make_api(run_worker=True, model_path=drift_model, drift_min_count=N)
    before = client.get("/v1/drift").json()
    assert before["count"] == 0 and before["score_psi"] is None and f"at least {N}" in before["message"]

    send(client, stream(small_frame, amount_factor=10.0), services)
    drift = client.get("/v1/drift").json()
    assert drift["count"] == N and drift["threshold"] == 0.2 and drift["window_seconds"] == 3600
    assert drift["score_psi"] > 0.2 and drift["score_drifting"]
    assert "amount" in drift["drifting"]
    psis = [f["psi"] for f in drift["features"]]
    assert psis == sorted(psis, reverse=True) and drift["features"][0]["drifting"]
    assert metric(client, 'fraudstream_feature_psi{feature="amount"}') > 0.2
    panel = drift_frame(drift)  # what the dashboard's drift panel lists: drifting features first
    drifting = panel["drifting"].tolist()
    assert (
        drifting[0] and drifting == sorted(drifting, reverse=True) and "amount" in panel["feature"].tolist()
    )
    assert "score PSI" in headline(drift) and "drifting" in headline(drift)
    assert metric(client, "fraudstream_score_psi") == pytest.approx(drift["score_psi"], abs=1e-6)

    deadline = time.monotonic() + 15
    while not {"score", "feature:amount"} <= {a["entity"] for a in drift_alerts(client)}:
        assert time.monotonic() < deadline, drift_alerts(client)
        time.sleep(0.2)
    score_alert = next(a for a in drift_alerts(client) if a["entity"] == "score")
    assert "PSI" in score_alert["message"] and score_alert["details"]["psi"] > 0.2


def test_a_stable_stream_does_not_drift_nor_alert(
    make_api: Callable[..., Api], drift_model: Path, small_frame: pd.DataFrame
) -> None:
    client, services, _ = make_api(run_worker=True, model_path=drift_model, drift_min_count=N)
    send(client, stream(small_frame), services)
    drift = client.get("/v1/drift").json()
    assert drift["count"] == N
    assert drift["score_psi"] < 0.05 and not drift["score_drifting"] and drift["drifting"] == []
    assert metric(client, "fraudstream_score_psi") < 0.05
    time.sleep(1.0)  # the alert dispatcher would have stored one by now
    assert drift_alerts(client) == []

    # the same period from the stored decisions, on the command line
    runner = CliRunner()
    env = {"FRAUD_DATABASE_URL": services.settings.db_url, "FRAUD_MODEL_PATH": str(drift_model),
           "FRAUD_DRIFT_MIN_COUNT": str(N)}  # fmt: skip
    result = runner.invoke(app, ["drift", "--since", "1h", "--json"], env=env)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == N and report["drifting"] == []
    assert report["score_psi"] == pytest.approx(drift["score_psi"], abs=1e-6)
    table = runner.invoke(app, ["drift", "--since", "1h", "--top", "3"], env=env)
    assert table.exit_code == 0 and "score" in table.stdout and "more features" in table.stdout


def test_the_report_says_what_is_missing(api: Api, bundle_path: Path, tmp_path: Path) -> None:
    _, services, _ = api
    runner = CliRunner()
    env = {"FRAUD_DATABASE_URL": services.settings.db_url, "FRAUD_MODEL_PATH": str(bundle_path)}
    empty = runner.invoke(app, ["drift", "--since", "7d"], env=env)
    assert empty.exit_code == 1 and "no decisions between" in empty.stderr
    bad = runner.invoke(app, ["drift", "--since", "seven days"], env=env)
    assert bad.exit_code == 2 and "is not a duration" in bad.stderr

    older = tmp_path / "older.fsb"
    bundle = load_bundle(bundle_path)
    bundle.reference = None
    bundle.save(older)
    missing = runner.invoke(app, ["drift"], env=env | {"FRAUD_MODEL_PATH": str(older)})
    assert missing.exit_code == 2 and NO_REFERENCE in missing.stderr


def test_drift_needs_the_key_and_is_documented(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api(api_keys="k1-0123456789abc")
    assert client.get("/v1/drift").status_code == 401
    answer = client.get("/v1/drift", headers={"X-API-Key": "k1-0123456789abc"})
    assert answer.status_code == 200 and answer.json()["count"] == 0
    spec = client.get("/openapi.json").json()
    schema = spec["paths"]["/v1/drift"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/DriftOut"}
    assert "score_psi" in spec["components"]["schemas"]["DriftOut"]["properties"]
