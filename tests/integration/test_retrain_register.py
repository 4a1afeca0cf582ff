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
from fraudstream.models.bundle import load_bundle
from fraudstream.registry import CHALLENGER, CHAMPION, register, registry_for
from tests.history import FAST, production_history

pytestmark = pytest.mark.mlflow
runner = CliRunner()


@pytest.fixture
def history_db(tmp_path: Path, small_frame: pd.DataFrame, bundle_path: Path) -> str:
    """A database as production leaves it (see :mod:`tests.history`)."""
    return production_history(tmp_path, small_frame, bundle_path)


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
