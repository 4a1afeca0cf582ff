"""A team's own events, unchanged, through the live paths: the same features and decisions as the same
rows read from its file, and errors that name its own fields."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fraudstream.api import create_app
from fraudstream.cli import app
from fraudstream.config import Settings
from fraudstream.runtime import open_services
from fraudstream.storage import open_store
from tests.e2e.test_own_data import SPEC

runner = CliRunner()
START = datetime(2025, 3, 1, tzinfo=UTC)
LIVE = 120
"""Rows after the training file, sent live."""

MAPPING = {
    "transaction_id": "id",
    "timestamp": "payment.when",
    "timestamp_format": "%d/%m/%Y %H:%M",
    "customer_id": "card.number",
    "amount": "payment.total",
    "is_fraud": "chargeback",
    "label_delay": "7d",
    "types": {"mcc": "text"},
}
"""The shop's export flattens its events' nested fields into dotted columns; live, they come nested."""


def shop_rows(n: int, seed: int = 4) -> pd.DataFrame:
    """The shop's payments as its export writes them: fraud comes with a high risk and gambling MCCs."""
    rng = np.random.default_rng(seed)
    risk = rng.uniform(0, 1, n)
    mcc = rng.choice([5411, 5812, 7995], n, p=[0.6, 0.3, 0.1])
    fraud = (risk > 0.9) & ((mcc == 7995) | (rng.random(n) < 0.5)) | (rng.random(n) < 0.002)
    return pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "payment.when": [
                (START + timedelta(minutes=10 * i)).strftime("%d/%m/%Y %H:%M") for i in range(n)
            ],
            "card.number": rng.integers(1000, 1100, n),
            "payment.total": np.round(rng.lognormal(3, 1, n), 2),
            "chargeback": fraud.astype(int),
            "risk": np.round(risk, 3),
            "mcc": mcc,
        }
    )


def event(row: dict[str, Any]) -> dict[str, Any]:
    """One row as the shop's systems send it live: nested, the amount as text, the card as a number."""
    return {
        "id": row["id"],
        "payment": {"when": row["payment.when"], "total": f"{row['payment.total']:.2f}"},
        "card": {"number": int(row["card.number"])},
        "chargeback": int(row["chargeback"]),
        "risk": float(row["risk"]),
        "mcc": int(row["mcc"]),  # a number, where the features read text
    }


@dataclass
class Shop:
    root: Path
    bundle: Path
    mapping: Path
    events: list[dict[str, Any]]
    reference: dict[str, dict[str, Any]]
    """The live rows' decisions when read from the shop's file (``replay --mapping``), by id."""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    root = tmp_path_factory.mktemp("shop")
    rows = shop_rows(3000 + LIVE)
    rows.iloc[:3000].to_csv(root / "export.csv", index=False)
    rows.iloc[3000:].to_csv(root / "live.csv", index=False)
    (root / "mapping.yaml").write_text(yaml.safe_dump(MAPPING))
    (root / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    bundle = root / "model.fsb"
    with pytest.MonkeyPatch.context() as env:
        env.chdir(root)
        env.setenv("FRAUD_DATA_DIR", str(root / "data"))
        env.delenv("FRAUD_MLFLOW_TRACKING_URI", raising=False)
        trained = runner.invoke(
            app,
            ["train", "--data", "export.csv", "--mapping", "mapping.yaml", "--features", "spec.yaml",
             "--models", "xgboost", "--trials", "0", "--gap-days", "2", "--test-days", "5",
             "--out", str(bundle), "--json"],
        )  # fmt: skip
        assert trained.exit_code == 0, trained.stderr
        env.setenv("FRAUD_DATABASE_URL", f"sqlite:///{root}/reference.db")
        replayed = runner.invoke(
            app, ["replay", "live.csv", "--mapping", "mapping.yaml", "--model", str(bundle)]
        )
        assert replayed.exit_code == 0, replayed.stderr
    ids = rows["id"].iloc[3000:].tolist()
    yield Shop(root, bundle, root / "mapping.yaml", [event(r) for r in rows.iloc[3000:].to_dict("records")],
               decided(f"sqlite:///{root}/reference.db", ids))  # fmt: skip


def decided(database_url: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """What was decided for ``ids``: outcome, probability and feature vector, by id."""
    store = open_store(database_url)
    try:
        records = store.decisions.get_many(ids)
    finally:
        store.close()
    return {
        i: {"decision": r.decision, "probability": r.probability, "features": dict(r.features)}
        for i, r in records.items()
    }


def assert_same_decisions(got: dict[str, dict[str, Any]], reference: dict[str, dict[str, Any]]) -> None:
    assert got.keys() == reference.keys()
    for i, want in reference.items():
        have = got[i]
        assert have["decision"] == want["decision"], i
        assert math.isclose(have["probability"], want["probability"], rel_tol=1e-9, abs_tol=1e-12), i
        assert have["features"].keys() == want["features"].keys()
        for name, value in want["features"].items():
            other = have["features"][name]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                assert other is None or math.isnan(other), (i, name)
            else:
                assert math.isclose(other, value, rel_tol=1e-9, abs_tol=1e-9), (i, name, other, value)


def settings_for(shop: Shop, tmp_path: Path, **more: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "serve",
        database_url=f"sqlite:///{tmp_path}/live.db",
        model_path=shop.bundle,
        **more,
    )


def test_own_events_scored_one_by_one_decide_as_the_file_does(shop: Shop, tmp_path: Path) -> None:
    settings = settings_for(shop, tmp_path)
    services = open_services(settings)
    try:
        with TestClient(create_app(settings, services)) as client:
            for body in shop.events:
                answer = client.post("/v1/score", json=body)
                assert answer.status_code == 200, answer.text
    finally:
        services.close()
    assert_same_decisions(decided(settings.db_url, list(shop.reference)), shop.reference)


def test_own_events_queued_in_lists_decide_as_the_file_does(shop: Shop, tmp_path: Path) -> None:
    settings = settings_for(shop, tmp_path, broker_url="memory://", max_wait=0.05)
    with TestClient(create_app(settings, run_worker=True)) as client:
        for lo in range(0, LIVE, 50):
            answer = client.post("/v1/transactions", json=shop.events[lo : lo + 50])
            assert answer.status_code == 202, answer.text
            assert len(answer.json()["accepted"]) == len(shop.events[lo : lo + 50])
        deadline = time.monotonic() + 60
        while client.get(f"/v1/transactions/{shop.events[-1]['id']}").json()["status"] != "decided":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert_same_decisions(decided(settings.db_url, list(shop.reference)), shop.reference)


def test_errors_name_the_events_own_fields_and_the_document_shows_its_shape(
    shop: Shop, tmp_path: Path
) -> None:
    settings = settings_for(shop, tmp_path)
    services = open_services(settings)
    try:
        with TestClient(create_app(settings, services)) as client:
            good = shop.events[0]
            bad = {**good, "payment": {"when": "2025-03-01T10:00:00", "total": "ten"}}
            answer = client.post("/v1/score", json=bad)
            assert answer.status_code == 422
            errors = {tuple(e["loc"]): e["msg"] for e in answer.json()["detail"]}
            assert set(errors) == {("body", "payment", "when"), ("body", "payment", "total")}
            assert "timestamp_format" in errors[("body", "payment", "when")]
            assert "mapping 'amount: payment.total'" in errors[("body", "payment", "total")]

            listed = client.post("/v1/transactions", json=[good, {**good, "id": "x", "card": {}}])
            assert listed.status_code == 422
            assert [e["loc"] for e in listed.json()["detail"]] == [["body", 1, "card", "number"]]
            canonical = {
                "transaction_id": "c1",
                "timestamp": "2025-03-01T10:00:00Z",
                "customer_id": "c",
                "amount": 1,
            }
            refused = client.post(
                "/v1/score", json=canonical
            )  # not the shop's shape: it says what is missing
            assert refused.status_code == 422
            assert {tuple(e["loc"]) for e in refused.json()["detail"]} >= {("body", "payment", "when")}

            document = client.get("/openapi.json").json()
            body = document["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"][
                "schema"
            ]
            event_schema = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
            assert sorted(event_schema["properties"]["payment"]["required"]) == ["total", "when"]
            assert (
                event_schema["properties"]["card"]["properties"]["number"]["description"]
                == "read as customer_id"
            )
    finally:
        services.close()


def test_canonical_transactions_when_the_mapping_is_turned_off(shop: Shop, tmp_path: Path) -> None:
    settings = settings_for(shop, tmp_path, input_mapping="none")
    services = open_services(settings)
    try:
        with TestClient(create_app(settings, services)) as client:
            canonical = {
                "transaction_id": "c1",
                "timestamp": "2025-03-01T10:00:00Z",
                "customer_id": "1010",
                "amount": 1,
            }
            assert client.post("/v1/score", json=canonical).status_code == 200
            assert client.post("/v1/score", json=shop.events[0]).status_code == 422
            document = client.get("/openapi.json").json()
            assert "Event" not in document["components"]["schemas"]
    finally:
        services.close()


def test_history_loaded_by_replay_carries_on_into_live_scoring(shop: Shop, tmp_path: Path) -> None:
    """The shop's history replayed into the store before going live: its first live events are
    decided with each card's history, as one replay of history and live rows together decides them."""
    history, together = f"sqlite:///{tmp_path}/history.db", f"sqlite:///{tmp_path}/together.db"
    rows = pd.concat([pd.read_csv(shop.root / "export.csv"), pd.read_csv(shop.root / "live.csv")])
    rows.to_csv(tmp_path / "all.csv", index=False)
    with pytest.MonkeyPatch.context() as env:
        env.chdir(shop.root)
        env.setenv("FRAUD_DATA_DIR", str(tmp_path / "data"))
        for database, data, more in (
            (history, "export.csv", ["--keep-transactions"]),
            (together, str(tmp_path / "all.csv"), []),
        ):
            env.setenv("FRAUD_DATABASE_URL", database)
            loaded = runner.invoke(
                app, ["replay", data, "--mapping", "mapping.yaml", "--model", str(shop.bundle), *more]
            )
            assert loaded.exit_code == 0, loaded.stderr
    reference = decided(together, list(shop.reference))
    assert any(r["features"]["card_count_7d"] > 0 for r in reference.values())  # the cards have a history

    settings = Settings(data_dir=tmp_path / "serve", database_url=history, model_path=shop.bundle)
    services = open_services(settings)  # warms its feature state from the stored history
    try:
        with TestClient(create_app(settings, services)) as client:
            for body in shop.events:
                assert client.post("/v1/score", json=body).status_code == 200
    finally:
        services.close()
    assert_same_decisions(decided(history, list(shop.reference)), reference)
