"""A user's own file, end to end: their CSV and a mapping → their feature spec → train → serve → a
decision whose reasons name their own fields' features."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

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

runner = CliRunner()
START = datetime(2025, 3, 1, tzinfo=UTC)

MAPPING = {
    "timestamp": "when",
    "timestamp_format": "%d/%m/%Y %H:%M",
    "customer_id": "card",
    "amount": "total",
    "is_fraud": "chargeback",
    "label_delay": "7d",
    "types": {"mcc": "text"},
    "drop": ["row_number"],
}
"""How the shop's export names its columns."""

SPEC = {
    "version": "shop-1",
    "fields": {"extra.risk": "number", "extra.mcc": "text"},
    "features": [
        {"row": "amount"},
        {"row": "extra.risk"},
        {"categorical": "extra.mcc", "top": 3},
        {
            "key": "customer_id",
            "name": "card",
            "aggregates": [
                {"stats": ["count", "mean"], "windows": ["1d", "7d"]},
                {
                    "stats": ["count"],
                    "windows": "7d",
                    "where": "extra.risk > 0.8",
                    "name": "card_risky_{stat}_{window}",
                },
            ],
        },
    ],
}


def own_csv(path: Path, n: int = 6000) -> None:
    """A shop's export in its own column names: fraud comes with a high risk score and gambling MCCs."""
    rng = np.random.default_rng(4)
    risk = rng.uniform(0, 1, n)
    mcc = rng.choice(["5411", "5812", "7995"], n, p=[0.6, 0.3, 0.1])
    fraud = (risk > 0.9) & ((mcc == "7995") | (rng.random(n) < 0.5)) | (rng.random(n) < 0.002)
    pd.DataFrame(
        {
            "when": [(START + timedelta(minutes=10 * i)).strftime("%d/%m/%Y %H:%M") for i in range(n)],
            "card": [f"card{c}" for c in rng.integers(0, 300, n)],
            "total": np.round(rng.lognormal(3, 1, n), 2),
            "chargeback": fraud.astype(int),
            "risk": np.round(risk, 3),
            "mcc": mcc,
            "row_number": np.arange(n),
        }
    ).to_csv(path, index=False)


@pytest.mark.slow
def test_own_csv_to_trained_model_to_a_decision_naming_custom_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FRAUD_MLFLOW_TRACKING_URI", raising=False)
    own_csv(tmp_path / "export.csv")
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump(MAPPING))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    bundle = tmp_path / "model.fsb"
    result = runner.invoke(
        app,
        ["train", "--data", "export.csv", "--mapping", "mapping.yaml", "--features", "spec.yaml",
         "--models", "xgboost,logistic", "--trials", "0", "--gap-days", "2", "--test-days", "7",
         "--out", str(bundle), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    trained = json.loads(result.stdout)
    assert trained["features"] == {"spec": "shop-1", "count": 11}
    assert trained["test"]["roc_auc"] > 0.9
    assert {row["feature"] for row in trained["top_features"][:3]} & {"risk", "mcc=7995"}
    assert trained["top_features"][0]["by"] == "gain" and 0 < trained["top_features"][0]["share"] <= 1

    replayed = runner.invoke(  # the shop's own file through the online path, with its mapping
        app, ["replay", "export.csv", "--mapping", "mapping.yaml", "--model", str(bundle), "--json"]
    )
    assert replayed.exit_code == 0, replayed.stderr
    through = json.loads(replayed.stdout)
    assert through["transactions"] == 6000 and through["roc_auc"] > 0.9
    assert "6,000 decisions stored" in replayed.stderr

    settings = Settings(
        data_dir=tmp_path / "serve", database_url=f"sqlite:///{tmp_path}/d.db", model_path=bundle
    )
    services = open_services(settings)
    try:
        with TestClient(create_app(settings, services)) as client:
            body = {  # the shop's own event, as its export names the fields: the model keeps the mapping
                "when": datetime.now(UTC).strftime("%d/%m/%Y %H:%M"),
                "card": "card7",
                "total": "30.00",
                "risk": 0.97,
                "mcc": 7995,  # a number, where the features read text: read as the text "7995"
                "row_number": 1,
            }
            answer = client.post("/v1/score", json=body)
            assert answer.status_code == 200, answer.text
            decided = answer.json()
            assert decided["decision"] in ("FLAG", "BLOCK")
            named = {r.get("code") for r in decided["reasons"]}
            assert named & {"risk", "mcc=7995"}, decided["reasons"]
            calm = client.post("/v1/score", json={**body, "risk": 0.1, "mcc": "5411"})
            assert calm.json()["probability"] < decided["probability"]
            profile = client.get("/v1/customers/card7").json()["features"]
            assert profile["card_count_24h"] == 2.0 and "card_risky_count_7d" in profile
    finally:
        services.close()


def test_train_keeps_a_model_on_other_features_unless_asked_and_the_demo_refuses_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundle_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FRAUD_MODEL_PATH", raising=False)
    monkeypatch.delenv("FRAUD_MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "data").mkdir()
    demo_model = tmp_path / "data" / "model.fsb"
    shutil.copyfile(bundle_path, demo_model)  # the default spec's, as `make demo` leaves it
    before = demo_model.read_bytes()
    own_csv(tmp_path / "export.csv")
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump(MAPPING))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    own = ["train", "--data", "export.csv", "--mapping", "mapping.yaml", "--features", "spec.yaml",
           "--models", "logistic", "--trials", "0", "--gap-days", "2", "--test-days", "7"]  # fmt: skip

    refused = runner.invoke(app, own)
    said = " ".join(refused.stderr.split())
    assert refused.exit_code == 2, refused.stderr
    assert f"{demo_model} holds model" in said and "--out PATH" in said and "--overwrite" in said
    assert demo_model.read_bytes() == before

    replaced = runner.invoke(app, [*own, "--overwrite", "--json"])
    assert replaced.exit_code == 0, replaced.stderr
    assert json.loads(replaced.stdout)["features"]["spec"] == "shop-1"

    demo = runner.invoke(app, ["demo", "--duration", "1"])
    said = " ".join(demo.stderr.split())
    assert demo.exit_code == 2, demo.stderr
    assert "trained on other features (spec 'shop-1')" in said and "FRAUD_DATA_DIR=demo-data" in said
