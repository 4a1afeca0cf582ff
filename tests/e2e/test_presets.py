"""Each public dataset trains with its own preset, and data without a field trains without the
features that read it, saying so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app

runner = CliRunner()


def fraud_data_without_ips(path: Path, n: int = 3000) -> Path:
    """Fraud_Data's columns but ip_address: devices shared by several new accounts are the fraud."""
    rng = np.random.default_rng(2)
    start = pd.Timestamp("2015-01-01")
    purchase = start + pd.to_timedelta(np.sort(rng.uniform(0, 60 * 86400, n)), unit="s")
    fraud = rng.random(n) < 0.1
    devices = np.where(fraud, [f"ring{k}" for k in rng.integers(0, 30, n)], [f"dev{k}" for k in range(n)])
    signup = purchase - pd.to_timedelta(np.where(fraud, 1.0, rng.uniform(3600, 90 * 86400, n)), unit="s")
    pd.DataFrame(
        {
            "user_id": np.arange(n),
            "signup_time": signup.strftime("%Y-%m-%d %H:%M:%S"),
            "purchase_time": purchase.strftime("%Y-%m-%d %H:%M:%S"),
            "purchase_value": rng.integers(10, 100, n),
            "device_id": devices,
            "source": rng.choice(["SEO", "Ads", "Direct"], n),
            "browser": rng.choice(["Chrome", "Safari"], n),
            "sex": rng.choice(["M", "F"], n),
            "age": rng.integers(18, 70, n),
            "class": fraud.astype(int),
        }
    ).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_a_file_without_ip_addresses_trains_without_the_ip_features_and_says_so(workdir: Path) -> None:
    data = fraud_data_without_ips(workdir / "Fraud_Data.csv")
    result = runner.invoke(
        app,
        ["train", "--dataset", "fraud_ecom", "--path", str(data), "--models", "xgboost", "--trials", "0",
         "--gap-days", "7", "--test-days", "14", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "the data has no country, ip_address: leaving out" in result.stderr.replace("\n", " ")
    trained = json.loads(result.stdout)
    assert trained["features"]["spec"] == "fraud_ecom-1"
    assert trained["test"]["roc_auc"] > 0.9
    assert trained["top_features"] and not any(
        t["feature"].startswith("ip_") for t in trained["top_features"]
    )


@pytest.mark.datasets
@pytest.mark.parametrize(("dataset", "spec"), [("paysim", "paysim-1"), ("sparkov", "sparkov-1")])
def test_each_dataset_trains_with_its_preset(
    workdir: Path, datasets_dir: Path, dataset: str, spec: str
) -> None:
    result = runner.invoke(
        app,
        ["train", "--dataset", dataset, "--datasets-dir", str(datasets_dir), "--models", "xgboost",
         "--trials", "0", "--gap-days", "0", "--test-days", "0.1", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    trained = json.loads(result.stdout)
    assert trained["features"]["spec"] == spec
    assert trained["top_features"], "evaluate and train say what the model learned"


@pytest.mark.datasets
def test_a_short_sample_trains_with_defaults_scaled_to_its_span_and_a_caution(
    workdir: Path, datasets_dir: Path
) -> None:
    result = runner.invoke(
        app,
        ["train", "--dataset", "paysim", "--datasets-dir", str(datasets_dir), "--models", "xgboost",
         "--trials", "0", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "the data spans 0.33 days, too short for the default 7-day gap and 7-day test" in said
    assert re.search(r"train: model fits: 4/4 in \d+\.\d s", said), said  # progress, also without a terminal
    trained = json.loads(result.stdout)
    assert trained["test"]["n_fraud"] < 30 and trained["caution"].startswith("caution: the test window holds")
    evaluated = runner.invoke(
        app,
        ["evaluate", "--model", trained["bundle"], "--dataset", "paysim",
         "--datasets-dir", str(datasets_dir), "--gap-days", "0.0167", "--json"],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.stderr
    assert "testing on the window train tested on" in evaluated.stderr
    same = json.loads(evaluated.stdout)
    assert (same["n"], same["n_fraud"]) == (trained["test"]["n"], trained["test"]["n_fraud"])
