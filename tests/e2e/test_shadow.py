"""A champion serving with a challenger in shadow: answers and alerts are the champion's, both models'
decisions are stored, and GET /v1/models/compare compares them once labels arrive."""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fraudstream.cli import app as cli
from fraudstream.config import Settings
from fraudstream.events.transaction import DECISIONS
from fraudstream.models.bundle import load_bundle
from fraudstream.pipeline._routing import customer_bucket
from fraudstream.registry import register
from tests.e2e.apitools import NOW, Api, tx
from tests.integration.conftest import MLFLOW_URL, require

CHALLENGER = "challenger-e2e"


@pytest.fixture
def challenger_path(bundle_path: Path, tmp_path: Path) -> Path:
    """The served bundle under another version, weights and much lower thresholds: it flags more."""
    bundle = load_bundle(bundle_path)
    other = copy.copy(bundle)
    other.manifest = copy.deepcopy(bundle.manifest)
    other.manifest.version = CHALLENGER
    other.manifest.weights = {"xgboost": 0.3, "logistic": 0.4, "isolation_forest": 0.3}
    other.manifest.thresholds = {"flag": 0.001, "block": 0.2}
    return other.save(tmp_path / "challenger" / "model.fsb")


def _bodies(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        tx(f"{prefix}{i}", customer_id=f"C{i % 7}", minutes_ago=30 - i * 0.1, amount=float(5 + 97 * i % 900))
        for i in range(n)
    ]


def test_the_champion_decides_and_the_challenger_is_compared_on_the_same_labelled_decisions(
    make_api: Callable[..., Api], challenger_path: Path, bundle_path: Path
) -> None:
    alone, _, _ = make_api(run_worker=True)
    client, services, _ = make_api(run_worker=True, challenger_uri=str(challenger_path))
    champion = load_bundle(bundle_path).manifest.version

    model = client.get("/v1/model").json()
    assert model["version"] == champion
    assert model["challenger"]["version"] == CHALLENGER
    assert model["challenger"]["thresholds"] == {"flag": 0.001, "block": 0.2}
    assert alone.get("/v1/model").json()["challenger"] is None
    ready = client.get("/ready").json()
    assert ready["checks"]["challenger"]["ok"] and CHALLENGER in ready["checks"]["challenger"]["detail"]

    scored = _bodies("sh-s", 24)
    answers = [client.post("/v1/score", json=body).json() for body in scored]
    served_alone = [alone.post("/v1/score", json=body).json() for body in scored]
    # the answers are the champion's, as if no challenger were there
    for got, want in zip(answers, served_alone, strict=True):
        assert (got["decision"], got["probability"]) == (want["decision"], want["probability"])
        assert got["reasons"] == want["reasons"]
    queued = _bodies("sh-q", 16)
    assert client.post("/v1/transactions", json=queued).status_code == 202
    alone.post("/v1/transactions", json=queued)
    for body in queued:
        status = client.get(f"/v1/transactions/{body['transaction_id']}", params={"wait": 10}).json()
        assert status["status"] == "decided", status
    # alerts come from the champion's decisions only
    for body in queued:
        alone.get(f"/v1/transactions/{body['transaction_id']}", params={"wait": 10})
    alerts = sorted(a["transaction_id"] for a in client.get("/v1/alerts").json())
    assert alerts == sorted(a["transaction_id"] for a in alone.get("/v1/alerts").json())

    ids = [b["transaction_id"] for b in scored + queued]
    stored = services.store.decisions.get_many(ids)
    assert {r.model_version for r in stored.values()} == {champion}
    assert {r.shadow_version for r in stored.values()} == {CHALLENGER}
    assert all(r.shadow_probability is not None for r in stored.values())
    labels = [
        {"transaction_id": t, "is_fraud": i % 3 == 0, "label_time": NOW.isoformat()}
        for i, t in enumerate(ids)
    ]
    assert client.post("/v1/labels", json=labels).status_code < 300

    response = client.get("/v1/models/compare", params={"since": "1d"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["labelled"] == len(ids)
    models = {m["version"]: m for m in report["models"]}
    assert {v: (m["decided"], m["in_shadow"]) for v, m in models.items()} == {
        champion: (len(ids), 0),
        CHALLENGER: (0, len(ids)),
    }
    for m in models.values():
        assert m["labelled"] == len(ids) and m["frauds"] == sum(label["is_fraud"] for label in labels)
        assert 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["false_positive_rate"] <= 1.0
    agree = sum(r.decision == r.shadow_decision for r in stored.values()) / len(ids)
    (pair,) = report["pairs"]
    assert (pair["decided_by"], pair["other"], pair["labelled"]) == (champion, CHALLENGER, len(ids))
    assert pair["agreement"] == pytest.approx(agree)
    assert pair["agreement"] < 1.0  # the challenger's lower thresholds flag what the champion approves
    flagged = {champion: "decision", CHALLENGER: "shadow_decision"}
    for key, field in flagged.items():
        caught = sum(
            r.amount
            for i, r in enumerate(stored[t] for t in ids)
            if labels[i]["is_fraud"] and getattr(r, field) != "APPROVE"
        )
        assert models[key]["caught_fraud_amount"] == pytest.approx(caught)

    later = client.get("/v1/models/compare", params={"since": "2099-01-01T00:00:00"}).json()
    assert later["labelled"] == 0 and later["models"] == [] and later["pairs"] == []
    bad = client.get("/v1/models/compare", params={"since": "last week"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "since"]


def test_models_compare_on_the_command_line(
    make_api: Callable[..., Api], challenger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, services, _ = make_api(challenger_uri=str(challenger_path))
    ids = [b["transaction_id"] for b in _bodies("cli-", 12)]
    for body in _bodies("cli-", 12):
        client.post("/v1/score", json=body)
    client.post(
        "/v1/labels",
        json=[
            {"transaction_id": t, "is_fraud": i % 2 == 0, "label_time": NOW.isoformat()}
            for i, t in enumerate(ids)
        ],
    )
    monkeypatch.setenv("FRAUD_DATABASE_URL", services.settings.db_url)
    monkeypatch.delenv("FRAUD_MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(cli, ["models", "compare", "--since", "7d", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted((m["decided"], m["in_shadow"]) for m in report["models"]) == [(0, 12), (12, 0)]
    assert report["labelled"] == 12
    human = CliRunner().invoke(cli, ["models", "compare"])
    assert human.exit_code == 0 and "beside it" in human.stdout and CHALLENGER in human.stdout
    bad = CliRunner().invoke(cli, ["models", "compare", "--since", "soon"])
    assert bad.exit_code == 2 and "duration" in bad.output


@pytest.mark.mlflow
def test_the_challenger_alias_is_resolved_from_the_registry_like_the_champion(
    make_api: Callable[..., Api], bundle_path: Path, challenger_path: Path, tmp_path: Path
) -> None:
    url = require(MLFLOW_URL, "The MLflow tracking server")
    name = f"fs-shadow-{secrets.token_hex(4)}"
    settings = Settings(data_dir=tmp_path / "reg", mlflow_tracking_uri=url, model_registry_name=name)
    register(bundle_path, {"average_precision": 0.6}, settings=settings)  # version 1: champion
    register(challenger_path, {"average_precision": 0.7}, settings=settings)  # version 2: challenger
    client, services, _ = make_api(
        mlflow_tracking_uri=url,
        model_registry_name=name,
        model_uri=f"models:/{name}@champion",
        challenger_uri=f"models:/{name}@challenger",
    )
    shown = client.get("/v1/model").json()
    assert shown["registry"]["version"] == "1"
    assert shown["challenger"]["registry_version"] == "2" and shown["challenger"]["version"] == CHALLENGER
    assert shown["challenger"]["uri"] == f"models:/{name}@challenger"
    client.post("/v1/score", json=tx("reg-1"))
    (record,) = services.store.decisions.get_many(["reg-1"]).values()
    assert record.shadow_version == CHALLENGER and record.shadow_decision in {"APPROVE", "FLAG", "BLOCK"}


def test_a_registry_challenger_without_a_tracking_uri_says_what_to_set(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraudstream.registry import RegistryUnavailableError

    with pytest.raises(RegistryUnavailableError, match="FRAUD_CHALLENGER_URI=models:/x@challenger"):
        make_api(mlflow_tracking_uri=None, challenger_uri="models:/x@challenger")


def test_ab_a_share_of_customers_is_decided_by_the_challenger_and_both_arms_are_compared(
    make_api: Callable[..., Api], challenger_path: Path, bundle_path: Path
) -> None:
    share = 0.7  # of the customers C0..C6, the hash puts C0, C2 and C5 below 0.7
    alone, _, _ = make_api()
    only, _, _ = make_api(model_path=challenger_path)
    client, _, _ = make_api(run_worker=True, challenger_uri=str(challenger_path), challenger_share=share)
    champion = load_bundle(bundle_path).manifest.version
    routed = {f"C{i}" for i in range(7) if customer_bucket(f"C{i}") < share}
    assert routed == {"C0", "C2", "C5"}
    assert client.get("/v1/model").json()["challenger"]["share"] == share

    scored = _bodies("ab-s", 28)
    for body in scored:
        got = client.post("/v1/score", json=body).json()
        answers = {api: api.post("/v1/score", json=body).json() for api in (alone, only)}
        want = answers[only if body["customer_id"] in routed else alone]  # each saw the same history
        assert got["model_version"] == (CHALLENGER if body["customer_id"] in routed else champion)
        assert (got["decision"], got["probability"], got["reasons"]) == (
            want["decision"],
            want["probability"],
            want["reasons"],
        )
    queued = _bodies("ab-q", 14)
    assert client.post("/v1/transactions", json=queued).status_code == 202
    for body in queued:
        status = client.get(f"/v1/transactions/{body['transaction_id']}", params={"wait": 10}).json()
        decision = status["decision"]
        mine = CHALLENGER if body["customer_id"] in routed else champion
        other = champion if mine == CHALLENGER else CHALLENGER
        assert (decision["model_version"], decision["shadow"]["version"]) == (mine, other), status

    page = client.get("/v1/decisions", params={"limit": 100}).json()["items"]
    assert len(page) == len(scored) + len(queued)
    for item in page:
        assert {item["model_version"], item["shadow"]["version"]} == {champion, CHALLENGER}
        assert 0.0 <= item["shadow"]["probability"] <= 1.0 and item["shadow"]["decision"] in DECISIONS
    ids = [b["transaction_id"] for b in scored + queued]
    labels = [
        {"transaction_id": t, "is_fraud": i % 3 == 0, "label_time": NOW.isoformat()}
        for i, t in enumerate(ids)
    ]
    assert client.post("/v1/labels", json=labels).status_code < 300
    report = client.get("/v1/models/compare", params={"since": "1d"}).json()
    counts = {m["version"]: (m["decided"], m["in_shadow"], m["labelled"]) for m in report["models"]}
    arm = sum(1 for b in scored + queued if b["customer_id"] in routed)
    assert counts == {
        champion: (len(ids) - arm, arm, len(ids)),
        CHALLENGER: (arm, len(ids) - arm, len(ids)),
    }
    assert sorted((p["decided_by"], p["other"], p["labelled"]) for p in report["pairs"]) == sorted(
        [(champion, CHALLENGER, len(ids) - arm), (CHALLENGER, champion, arm)]
    )


def test_a_share_without_a_challenger_is_refused_with_what_to_set(make_api: Callable[..., Api]) -> None:
    with pytest.raises(ValueError, match="FRAUD_CHALLENGER_URI"):
        make_api(challenger_share=0.2)
