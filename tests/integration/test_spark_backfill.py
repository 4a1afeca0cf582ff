"""``fraudstream features --engine spark`` computes exactly the local engine's features, and ``train``
reads Spark's folder of parts as it reads the local engine's file.

One local Spark session (two cores) serves the module. Its Arrow batches are kept small so that an
entity's rows straddle batches, the case where a partition's computing waits for the entity's rest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.datasets.io import write_frame
from fraudstream.features.stored import read_features

pytestmark = [pytest.mark.spark, pytest.mark.slow]
runner = CliRunner()
BATCH_ROWS = "700"
"""Rows per Arrow batch in the generated-data tests: few enough that customers straddle batches."""

CATEGORICAL_SPEC = """
version: cats-1
retention: 30d
features:
  - row: amount
  - categorical: channel
    top: 2
  - key: [customer_id, merchant_category]
    name: customer_category
    aggregates:
      - stats: [count, mean]
        of: amount
        windows: [1d, 7d]
  - key: merchant_id
    where: amount > 50
    name: merchant_large
    aggregates:
      - labels: [known_fraud, fraud_rate]
        windows: [7d]
"""


def need_spark() -> None:
    """Skip (or fail under ``FRAUD_REQUIRE_SERVICES=1``) without PySpark or Java."""
    reason = None
    try:
        import pyspark  # noqa: F401
    except ImportError:
        reason = "PySpark is not installed: pip install 'fraudstream[spark]'"
    if reason is None and not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        reason = "Spark needs Java 17 or newer on PATH (or JAVA_HOME)"
    if reason is not None:
        if os.environ.get("FRAUD_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    need_spark()
    from fraudstream.spark.session import spark_session

    conf = {
        "spark.sql.shuffle.partitions": "3",
        "spark.sql.execution.arrow.maxRecordsPerBatch": BATCH_ROWS,
        "spark.ui.enabled": "false",
    }
    session = spark_session("fraudstream-test-backfill", master="local[2]", conf=conf)
    yield session
    session.stop()


def both_engines(*args: str) -> tuple[Any, Any]:
    """The features of the same source from the local engine and from Spark, read back."""
    for engine, out in (("local", "local.parquet"), ("spark", "spark.parquet")):
        result = runner.invoke(app, ["features", *args, "--engine", engine, "--out", out, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["engine"] == engine
    local, spark = read_features(Path("local.parquet")), read_features(Path("spark.parquet"))
    assert local is not None and spark is not None
    assert Path("spark.parquet").is_dir() and local.engine == "local" and spark.engine == "spark"
    return local, spark


def assert_identical(local: Any, spark: Any) -> None:
    """The same transactions in the same order, the same feature set, and bit-identical values with
    NaN in the same places: both engines run the same kernels over the same events in the same order."""
    pd.testing.assert_frame_equal(local.frame, spark.frame)
    assert local.feature_set.computes_same(spark.feature_set)
    assert local.values.shape == spark.values.shape
    assert np.array_equal(np.isnan(local.values), np.isnan(spark.values))
    assert np.array_equal(np.nan_to_num(local.values, nan=0.0), np.nan_to_num(spark.values, nan=0.0))
    assert (~np.isnan(local.values)).any()


def test_spark_computes_the_local_features_and_train_reads_its_folder(
    spark: Any, workdir: Path, small_frame: pd.DataFrame
) -> None:
    write_frame(small_frame, workdir / "history.parquet")
    (workdir / "cats.yaml").write_text(CATEGORICAL_SPEC)
    for spec in ("handbook", "cats.yaml"):
        local, computed = both_engines("--data", "history.parquet", "--features", spec)
        assert_identical(local, computed)
    assert computed.fit_until is not None and computed.fit_until == local.fit_until

    common = ["--trials", "0", "--models", "xgboost,logistic", "--folds", "2", "--json"]
    from_local = runner.invoke(app, ["train", "--data", "local.parquet", "--out", "a.fsb", *common])
    from_spark = runner.invoke(app, ["train", "--data", "spark.parquet", "--out", "b.fsb", *common])
    assert from_local.exit_code == 0 and from_spark.exit_code == 0, from_local.output + from_spark.output
    assert "not recomputing them" in " ".join(from_spark.stderr.split())
    a, b = json.loads(from_local.stdout), json.loads(from_spark.stdout)
    assert a["thresholds"] == b["thresholds"] and a["test"] == b["test"]


@pytest.mark.datasets
def test_the_handbook_sample_has_identical_features_in_both_engines(
    spark: Any, workdir: Path, datasets_dir: Path
) -> None:
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "20000")  # Spark's default is 10000
    try:
        local, computed = both_engines("--dataset", "handbook", "--datasets-dir", str(datasets_dir))
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", BATCH_ROWS)
    assert len(local.frame) > 100_000 and local.feature_set.version == "handbook_tuned-1"
    assert_identical(local, computed)


def test_the_module_spark_submit_runs_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fraudstream.spark_submit", "features", "--help"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--master" in done.stdout and "point-in-time features" in done.stdout


def test_bad_files_are_refused_with_the_field_and_the_reason(
    spark: Any, workdir: Path, small_frame: pd.DataFrame
) -> None:
    frame = small_frame.head(200).assign(extra=None)
    frame.assign(colour="red").to_parquet(workdir / "unknown.parquet")
    unknown = runner.invoke(app, ["features", "--data", "unknown.parquet", "--engine", "spark"])
    assert unknown.exit_code == 2
    assert "unknown column 'colour'" in " ".join(unknown.output.split())

    frame.assign(amount=-frame["amount"]).to_parquet(workdir / "negative.parquet")
    negative = runner.invoke(app, ["features", "--data", "negative.parquet", "--engine", "spark"])
    assert negative.exit_code == 2
    assert "amount" in negative.output and "must be between 0" in " ".join(negative.output.split())

    pd.concat([frame, frame.head(1)], ignore_index=True).to_parquet(workdir / "twice.parquet")
    twice = runner.invoke(app, ["features", "--data", "twice.parquet", "--engine", "spark"])
    assert twice.exit_code == 2
    assert "transaction_id:" in twice.output and "appears more than once" in twice.output
