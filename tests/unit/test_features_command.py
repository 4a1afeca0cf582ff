"""``fraudstream features`` writes point-in-time features with their fitted feature set, and ``train``,
``evaluate`` and ``backtest`` read them back instead of computing them again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.datasets.io import write_frame
from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine, FeatureSet
from fraudstream.features.stored import read_features

runner = CliRunner()

CATEGORICAL_SPEC = """
version: cats-1
retention: 30d
features:
  - row: amount
  - categorical: channel
    top: 2
  - calendar: [hour]
  - key: customer_id
    name: customer
    aggregates:
      - stats: [count, mean]
        of: amount
        windows: [1d, 7d]
      - labels: [known_fraud]
        windows: [30d]
"""


@pytest.fixture
def history(workdir: Path, small_frame: pd.DataFrame) -> Path:
    path = workdir / "history.parquet"
    write_frame(small_frame, path)
    return path


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, NaN where NaN."""
    return a.shape == b.shape and bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())


def features(*args: str) -> Any:
    result = runner.invoke(app, ["features", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_file_holds_the_transactions_their_features_and_the_feature_set(
    history: Path, workdir: Path, small_frame: pd.DataFrame
) -> None:
    summary = features("--data", str(history), "--out", str(workdir / "f.parquet"))
    assert summary["rows"] == len(small_frame) and summary["engine"] == "local"
    stored = read_features(workdir / "f.parquet")
    assert stored is not None
    engine = FeatureEngine(FeatureSet.load("handbook"))
    assert stored.feature_set.computes_same(engine.feature_set)
    assert summary["features"] == len(engine.names) == stored.values.shape[1]
    assert same(stored.values, engine.compute(TransactionBatch.from_frame(small_frame)))
    assert stored.frame["transaction_id"].tolist() == small_frame["transaction_id"].tolist()
    columns = pd.read_parquet(workdir / "f.parquet").columns
    assert "feature.amount" in columns and "amount" in columns  # a feature named like a field


def test_categorical_values_are_learned_before_fit_until(
    history: Path, workdir: Path, small_frame: pd.DataFrame
) -> None:
    (workdir / "cats.yaml").write_text(CATEGORICAL_SPEC)
    until = small_frame["timestamp"].min() + pd.Timedelta(days=3)
    summary = features(
        "--data", str(history), "--features", "cats.yaml", "--fit-until", f"{until:%Y-%m-%d}",
        "--out", "f.parquet",
    )  # fmt: skip
    stored = read_features(workdir / "f.parquet")
    assert stored is not None and stored.fit_until is not None
    assert summary["fit_until"].startswith(f"{until:%Y-%m-%d}")
    early = small_frame[small_frame["timestamp"] < until.normalize()]
    fitted = FeatureSet.load(workdir / "cats.yaml").fit(TransactionBatch.from_frame(early))
    assert stored.feature_set.computes_same(fitted)


def test_train_reuses_the_stored_features_and_trains_the_same_model(history: Path, workdir: Path) -> None:
    (workdir / "cats.yaml").write_text(CATEGORICAL_SPEC)
    features("--data", str(history), "--features", "cats.yaml", "--out", "f.parquet")
    common = ["--trials", "0", "--models", "xgboost,logistic", "--folds", "2", "--json"]
    raw = runner.invoke(
        app, ["train", "--data", str(history), "--features", "cats.yaml", "--out", "a.fsb", *common]
    )
    reused = runner.invoke(app, ["train", "--data", "f.parquet", "--out", "b.fsb", *common])
    assert raw.exit_code == 0 and reused.exit_code == 0, raw.output + reused.output
    assert "not recomputing them" in " ".join(reused.stderr.split())
    assert "not recomputing" not in raw.stderr
    a, b = json.loads(raw.stdout), json.loads(reused.stdout)
    assert a["thresholds"] == b["thresholds"] and a["test"] == b["test"]
    assert a["features"] == b["features"] == {"spec": "cats-1", "count": b["features"]["count"]}

    evaluated = runner.invoke(app, ["evaluate", "--model", "b.fsb", "--data", "f.parquet", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "not recomputing them" in " ".join(evaluated.stderr.split())
    assert json.loads(evaluated.stdout)["roc_auc"] == pytest.approx(
        json.loads(
            runner.invoke(app, ["evaluate", "--model", "b.fsb", "--data", str(history), "--json"]).stdout
        )["roc_auc"]
    )


def test_train_with_features_recomputes_from_the_stored_transactions(history: Path, workdir: Path) -> None:
    features("--data", str(history), "--out", "f.parquet")
    (workdir / "cats.yaml").write_text(CATEGORICAL_SPEC)
    result = runner.invoke(
        app, ["train", "--data", "f.parquet", "--features", "cats.yaml", "--trials", "0", "--models",
              "logistic", "--folds", "2", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "not recomputing" not in result.stderr
    assert json.loads(result.stdout)["features"]["spec"] == "cats-1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--master", "local[2]"], "--master chooses where Spark runs"),
        (["--out", "features.csv"], "--out 'features.csv'"),
        (["--engine", "flink"], "'flink' is not one of"),
    ],
)
def test_bad_options_are_refused_naming_them(history: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["features", "--data", str(history), *args])
    assert result.exit_code == 2
    assert message in result.output.replace("\n", " ")


def test_a_repeated_transaction_id_is_refused(workdir: Path, small_frame: pd.DataFrame) -> None:
    write_frame(pd.concat([small_frame, small_frame.head(1)], ignore_index=True), workdir / "twice.parquet")
    result = runner.invoke(app, ["features", "--data", "twice.parquet"])
    assert result.exit_code == 2
    assert "transaction_id:" in result.output and "appears more than once" in result.output


def test_a_plain_transactions_file_is_not_taken_for_features(history: Path) -> None:
    assert read_features(history) is None


def test_backtest_reuses_the_stored_features(history: Path, workdir: Path, small_frame: pd.DataFrame) -> None:
    features("--data", str(history), "--out", "f.parquet")
    start = small_frame["timestamp"].min() + pd.Timedelta(days=20)
    args = ["--test-start", f"{start:%Y-%m-%d}", "--train-days", "10", "--gap-days", "3", "--test-days", "5",
            "--trials", "0", "--models", "logistic", "--json"]  # fmt: skip
    reused = runner.invoke(app, ["backtest", "--data", "f.parquet", *args])
    raw = runner.invoke(app, ["backtest", "--data", str(history), *args])
    assert reused.exit_code == 0 and raw.exit_code == 0, reused.output + raw.output
    assert "not recomputing them" in " ".join(reused.stderr.split())
    windows = json.loads(reused.stdout)["windows"]
    assert windows and windows == json.loads(raw.stdout)["windows"]
