"""Shared fixtures: where the public sample datasets are, and what to do when they are absent."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Cached kernels compiled from sources that have changed since are deleted before any test runs
    (see :mod:`fraudstream._numba_cache`)."""
    from fraudstream._numba_cache import refresh_stale_kernels

    refresh_stale_kernels()


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The shared datasets folder; skip on a fresh machine, fail in CI (``FRAUD_REQUIRE_DATASETS=1``)."""
    path = Path(os.environ.get("FRAUD_DATASETS_DIR", REPO_ROOT.parent / "shared" / "datasets"))
    if not path.is_dir():
        reason = f"shared datasets not found at {path}: set FRAUD_DATASETS_DIR"
        if os.environ.get("FRAUD_REQUIRE_DATASETS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def small_frame() -> Any:
    """Thirty days of generated traffic with every fraud scenario, small enough to train in seconds."""
    from fraudstream.datasets.generator import GeneratorConfig, generate

    return generate(GeneratorConfig(n_customers=300, n_merchants=40, days=30, fraud_rate=0.03, seed=11))


@pytest.fixture(scope="session")
def trained_bundle(small_frame: Any) -> Any:
    """A model bundle trained on :func:`small_frame` with default hyperparameters (no search), as
    training returns it: with the fitted estimators beside the stored models."""
    from fraudstream.features import FeatureEngine
    from fraudstream.training.backtest import Featured, Windows, train_window
    from fraudstream.training.models import TrainConfig

    engine = FeatureEngine()
    data = Featured.build(small_frame, engine)
    start = small_frame["timestamp"].min().to_pydatetime()
    windows = Windows(start, start + timedelta(days=20), gap=timedelta(days=3))
    bundle = train_window(data, windows, engine, TrainConfig(trials=0, folds=2, seed=3))
    bundle.manifest.weights = {"xgboost": 0.6, "logistic": 0.2, "isolation_forest": 0.2}
    return bundle


@pytest.fixture(scope="session")
def bundle_path(tmp_path_factory: pytest.TempPathFactory, trained_bundle: Any) -> Path:
    """:func:`trained_bundle` saved."""
    path: Path = trained_bundle.save(tmp_path_factory.mktemp("model") / "model.fsb")
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder as the current directory, with the data folder inside and no MLflow."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FRAUD_MLFLOW_TRACKING_URI", raising=False)
    return tmp_path
