"""``fraudstream retrain --register`` against a real MLflow tracking server (``make services`` runs one on
:5050): the challenger trained on production history is logged as a run and registered under the alias
``challenger``, while ``champion`` stays on the version that was serving."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.config import Settings
from fraudstream.events import Label, Transaction
from fraudstream.events.frame import iter_records
from fraudstream.models.bundle import load_bundle
from fraudstream.models.registry import CHALLENGER, CHAMPION, register, registry_for
from fraudstream.storage import open_store

pytestmark = pytest.mark.mlflow
runner = CliRunner()
#: Thirty days of history: evaluation on days 22-27, a 3-day gap, training on days 0-19.
FAST = ["--since", "30d", "--label-delay-days", "3", "--eval-days", "5", "--trials", "0"]
FAST += ["--models", "xgboost,logistic", "--folds", "2", "--min-fraud", "5"]


@pytest.fixture
def history_db(tmp_path: Path, small_frame: pd.DataFrame, bundle_path: Path) -> str:
    """A database as production leaves it: the traffic accepted and decided by the worker, and every
    fraud label known by the end of the traffic posted."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    with open_store(url) as store:
        store.migrate()
        store.queue.accept([Transaction.model_validate(r) for r in iter_records(small_frame)])
    env = {"FRAUD_DATA_DIR": str(tmp_path), "FRAUD_DATABASE_URL": url, "FRAUD_MODEL_PATH": str(bundle_path)}
    decided = runner.invoke(app, ["worker", "--burst", "--batch-size", "2000"], env=env)
    assert decided.exit_code == 0, decided.stderr
    end = small_frame["timestamp"].max()
    fraud = small_frame[(small_frame["is_fraud"] == True) & (small_frame["label_time"] <= end)]  # noqa: E712
    with open_store(url) as store:
        labels = [
            Label(transaction_id=t, is_fraud=True, label_time=w.to_pydatetime())
            for t, w in zip(fraud["transaction_id"], fraud["label_time"], strict=True)
        ]
        assert store.labels.add(labels) == len(labels) > 50
    return url


def test_retrain_register_logs_the_run_and_aliases_the_challenger_leaving_the_champion(
    mlflow_url: str,
    history_db: str,
    bundle_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow

    name = f"fs-retrain-{secrets.token_hex(4)}"
    settings = Settings(data_dir=tmp_path, mlflow_tracking_uri=mlflow_url, model_registry_name=name)
    first = register(bundle_path, {"average_precision": 0.6}, settings=settings)  # version 1: the champion
    assert first["version"] == "1" and CHAMPION in first["aliases"]
    champion_version = load_bundle(bundle_path).manifest.version
    monkeypatch.chdir(tmp_path)
    for key, value in {
        "FRAUD_DATA_DIR": str(tmp_path),
        "FRAUD_DATABASE_URL": history_db,
        "FRAUD_MLFLOW_TRACKING_URI": mlflow_url,
        "FRAUD_MODEL_REGISTRY_NAME": name,
        "FRAUD_MODEL_URI": f"models:/{name}@champion",  # the champion read from the registry, as served
        "COLUMNS": "200",  # the table's width: versions on one line each
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("FRAUD_MODEL_PATH", raising=False)

    result = runner.invoke(app, ["retrain", *FAST, "--out", "run", "--register"])
    assert result.exit_code == 0, result.stderr

    comparison = json.loads((tmp_path / "run" / "comparison.json").read_text())
    challenger = load_bundle(tmp_path / "run" / "challenger.fsb").manifest
    assert comparison["champion"]["version"] == champion_version != challenger.version
    assert comparison["challenger"]["version"] == challenger.version
    # the printed comparison names both models, side by side
    assert "champion vs challenger" in result.stdout
    assert champion_version in result.stdout and challenger.version in result.stdout
    registered = comparison["registered"]
    assert (registered["name"], registered["version"], registered["aliases"]) == (name, "2", [CHALLENGER])
    assert f"registered as {registered['uri']}" in " ".join(result.stderr.split())

    registry = registry_for(settings)
    assert registry.aliases() == {CHAMPION: "1", CHALLENGER: "2"}  # the champion alias did not move
    version = registry.get("2")
    assert version.tags["fraudstream.model_version"] == challenger.version
    assert version.tags["fraudstream.data_fingerprint"] == challenger.data_fingerprint
    assert version.run_id == registered["run_id"]

    run = mlflow.MlflowClient(mlflow_url).get_run(registered["run_id"])
    assert run.info.run_name == challenger.version
    assert run.data.tags["data_fingerprint"] == challenger.data_fingerprint
    assert run.data.tags["feature_set"] == challenger.feature_set_version
    assert json.loads(run.data.tags["comparison"])["champion"]["version"] == champion_version
    assert {"weights.xgboost", "weights.logistic"} <= set(run.data.params)
    assert any(key.startswith("params.") for key in run.data.params)
    evaluated = comparison["challenger"]["metrics"]
    assert run.data.metrics["test.average_precision"] == pytest.approx(evaluated["average_precision"])
    assert run.data.metrics["test.roc_auc"] == pytest.approx(evaluated["roc_auc"])
    artifacts = [a.path for a in mlflow.MlflowClient(mlflow_url).list_artifacts(run.info.run_id, "bundle")]
    assert artifacts == ["bundle/challenger.fsb"]
