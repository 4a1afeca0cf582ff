"""The command line as a user runs it: generate → train → evaluate, streaming, MLflow, and error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.events import Transaction

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_generate_train_evaluate(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(
        "generate", "--customers", "300", "--merchants", "40", "--days", "40", "--fraud-rate", "0.03"
    )
    assert code == 0, err
    assert (workdir / "data" / "transactions.parquet").exists()

    monkeypatch.setenv("FRAUD_MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    code, out, err = run("train", "--trials", "1", "--folds", "2", "--json")
    assert code == 0, err
    trained = json.loads(out)
    assert Path(trained["bundle"]).exists() and trained["mlflow_run_id"]
    assert trained["test"]["roc_auc"] > 0.9
    assert 0 < trained["thresholds"]["flag"] <= trained["thresholds"]["block"]
    selection = trained["selection"]
    chosen = selection["candidates"][selection["chosen"]]
    assert selection["folds"] == 2 and len(chosen["roc_auc"]["folds"]) == 2 and chosen["roc_auc"]["sd"] >= 0
    # in a pipe, each stage of training says when it starts and ends: features, fits n/N, the test
    fits = (2 * 1 + 1) * 2 + 3  # (two models searched once, the forest) on two folds, then three final fits
    stages = ["compute 100 features", f"train: model fits: 0/{fits}", f"train: model fits: {fits}/{fits} in"]
    stages += ["search xgboost: 1/1", "calibrate: 3/3", "evaluate the test window: 1/1 in"]
    assert all(stage in err for stage in stages), err
    assert "time-ordered folds" in err
    assert list(workdir.rglob("mlruns/**/model.fsb")), "the bundle was not logged to MLflow"

    code, out, err = run("evaluate", "--json")
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["model"] == trained["version"]
    assert evaluated["n"] > 1000 and evaluated["average_precision"] > 0.5
    assert set(evaluated["confusion"]["decisions"]) == {"APPROVE", "FLAG", "BLOCK"}

    code, out, _ = run("evaluate")
    assert code == 0 and "card precision" in out and "top features (share of gain)" in out


def test_generate_streams_valid_transactions(workdir: Path) -> None:
    code, out, _ = run("generate", "--customers", "20", "--days", "1", "--rate", "2000", "--duration", "0.05")
    assert code == 0
    lines = out.strip().splitlines()
    assert 1 <= len(lines) <= 100
    assert all(Transaction.model_validate_json(line).amount >= 0 for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train",), "fraudstream generate"),
        (("evaluate",), "fraudstream train"),
        (("train", "--dataset", "nope"), "handbook"),
        (("train", "--models", "svm"), "unknown models"),
        (("train", "--data", "x.csv", "--dataset", "handbook"), "not both"),
    ],
)
def test_errors_are_one_clear_line(workdir: Path, args: tuple[str, ...], message: str) -> None:
    code, _, err = run(*args)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_datasets_lists_every_adapter(workdir: Path) -> None:
    code, out, _ = run("datasets", "--datasets-dir", str(workdir))
    assert code == 0
    assert all(name in out for name in ("handbook", "fraud_ecom", "paysim", "sparkov")) and "missing" in out
