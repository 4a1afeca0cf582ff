"""``fraudstream retrain`` as an operator runs it: traffic replayed into the database, labels posted,
then a challenger trained on that history and compared with the champion, which stays as it was."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.datasets.io import write_frame
from fraudstream.models.bundle import load_bundle
from tests.history import FAST, production_history

runner = CliRunner()


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory, small_frame: pd.DataFrame, bundle_path: Path) -> str:
    """A database holding the small dataset as production leaves it (see :mod:`tests.history`)."""
    return production_history(tmp_path_factory.mktemp("history"), small_frame, bundle_path)


@pytest.fixture
def workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, history_db: str, bundle_path: Path
) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FRAUD_DATABASE_URL", history_db)
    monkeypatch.setenv("FRAUD_MODEL_PATH", str(bundle_path))
    monkeypatch.delenv("FRAUD_MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_retrain_writes_a_challenger_and_compares_both_on_one_window(
    workdir: Path, bundle_path: Path
) -> None:
    before = digest(bundle_path)
    result = runner.invoke(app, ["retrain", *FAST, "--out", "run", "--json"])
    assert result.exit_code == 0, result.stderr
    assert digest(bundle_path) == before  # the champion is only read
    comparison = json.loads((workdir / "run" / "comparison.json").read_text())
    assert json.loads(result.stdout)["challenger"]["version"] == comparison["challenger"]["version"]
    challenger = load_bundle(workdir / "run" / "challenger.fsb")
    assert challenger.manifest.version == comparison["challenger"]["version"]
    assert comparison["champion"]["version"] == load_bundle(bundle_path).manifest.version
    champion, new = comparison["champion"]["metrics"], comparison["challenger"]["metrics"]
    assert champion["n"] == new["n"] > 0 and champion["n_fraud"] == new["n_fraud"] > 0  # the same rows
    assert 0.5 < champion["roc_auc"] <= 1 and 0.5 < new["roc_auc"] <= 1
    assert comparison["delta"]["roc_auc"] == pytest.approx(new["roc_auc"] - champion["roc_auc"])
    periods = comparison["periods"]
    assert periods["train_end"] < periods["label_cutoff"] == periods["eval_start"] < periods["eval_end"]
    assert comparison["features"]["challenger"]["source"] == "logged"
    assert "features: logged" in result.stderr and "is unchanged" in result.stderr
    assert comparison["training"]["fraud"] >= 5


def test_retrain_prints_a_table_by_default_against_the_served_model(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, bundle_path: Path
) -> None:
    monkeypatch.setenv("FRAUD_MODEL_PATH", str(workdir / "absent.fsb"))
    monkeypatch.setenv("FRAUD_MODEL_URI", str(bundle_path))  # what serve loads wins over the path
    result = runner.invoke(app, ["retrain", *FAST], terminal_width=200)
    assert result.exit_code == 0, result.stderr
    assert "champion vs challenger" in result.stdout and "average precision" in result.stdout
    runs = list((workdir / "retrain").iterdir())
    assert len(runs) == 1 and {p.name for p in runs[0].iterdir()} == {"challenger.fsb", "comparison.json"}
    assert json.loads((runs[0] / "comparison.json").read_text())["champion"]["path"] == str(bundle_path)


def test_a_changed_spec_recomputes_features_from_the_stored_transactions(workdir: Path) -> None:
    result = runner.invoke(app, ["retrain", *FAST, "--features", "handbook_tuned", "--out", "run", "--json"])
    assert result.exit_code == 0, result.stderr
    comparison = json.loads(result.stdout)
    assert comparison["features"]["challenger"]["source"] == "recomputed"
    assert "computed again from the stored transactions" in comparison["features"]["challenger"]["reason"]
    assert "features: recomputed" in result.stderr
    assert comparison["features"]["champion"]["source"] == "logged"  # the champion keeps what it saw
    challenger = load_bundle(workdir / "run" / "challenger.fsb")
    assert challenger.manifest.feature_set_version == comparison["features"]["challenger"]["spec"]
    assert comparison["champion"]["metrics"]["n"] == comparison["challenger"]["metrics"]["n"]


def test_too_few_labelled_frauds_says_how_many_and_what_to_do(workdir: Path) -> None:
    result = runner.invoke(app, ["retrain", *FAST, "--min-fraud", "100000"])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "frauds labelled by" in message and "at least 100000" in message and "--since" in message
    assert not (workdir / "retrain").exists()


def test_an_empty_database_or_a_bad_period_is_one_clear_error(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = runner.invoke(app, ["retrain", *FAST, "--since", "5d"])
    assert short.exit_code == 2 and "leaves no training period" in " ".join(short.stderr.split())
    bad = runner.invoke(app, ["retrain", "--since", "60x"])
    assert bad.exit_code == 2 and "--since" in bad.stderr and "not a duration" in bad.stderr
    monkeypatch.setenv("FRAUD_DATABASE_URL", f"sqlite:///{workdir / 'empty.db'}")
    empty = runner.invoke(app, ["retrain", *FAST])
    said = "".join(empty.stderr.split())
    assert empty.exit_code == 2 and "nodecisionsarestoredinsqlite:///" in said and "empty.db" in said
    monkeypatch.setenv("FRAUD_DATABASE_URL", "postgresql://fraudstream:fraudstream@127.0.0.1:1/fraudstream")
    unreachable = runner.invoke(app, ["retrain", *FAST])
    assert unreachable.exit_code == 2 and "unreachable" in unreachable.stderr


def test_replayed_decisions_train_on_their_logged_features_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_frame: pd.DataFrame, bundle_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FRAUD_MODEL_PATH", str(bundle_path))
    monkeypatch.delenv("FRAUD_DATABASE_URL", raising=False)
    write_frame(small_frame, tmp_path / "traffic.parquet")
    replayed = runner.invoke(app, ["replay", str(tmp_path / "traffic.parquet"), "--batch-size", "2000"])
    assert replayed.exit_code == 0, replayed.stderr  # decisions and fraud labels, but no transactions
    logged = runner.invoke(app, ["retrain", *FAST, "--json"])
    assert logged.exit_code == 0, logged.stderr
    assert json.loads(logged.stdout)["features"]["challenger"]["source"] == "logged"
    changed = runner.invoke(app, ["retrain", *FAST, "--features", "handbook_tuned"])
    assert changed.exit_code == 2
    message = " ".join(changed.stderr.split())
    assert "have no stored transaction" in message and "leave out --features" in message


def test_register_without_a_registry_is_a_clear_error_and_keeps_the_challenger(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FRAUD_MLFLOW_TRACKING_URI", raising=False)
    result = runner.invoke(app, ["retrain", *FAST, "--out", "run", "--register"])
    assert result.exit_code == 2
    assert "registry" in result.stderr.lower() and "MLFLOW" in result.stderr.upper()
    assert load_bundle(workdir / "run" / "challenger.fsb").manifest.version in result.stderr
    assert (workdir / "run" / "comparison.json").is_file()
