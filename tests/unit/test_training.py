"""Training pieces: config checks, time windows, calibration, ensemble weights, the bundle round trip."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from fraudstream.datasets.generator import GeneratorConfig, generate
from fraudstream.features import FeatureEngine, FeatureSet
from fraudstream.models.bundle import (
    BundleError,
    IncompatibleBundleError,
    ModelBundle,
    load_bundle,
    read_manifest,
)
from fraudstream.models.ensemble import calibrate
from fraudstream.training.backtest import Featured, Windows, evaluate_window, train_window
from fraudstream.training.fit import predict
from fraudstream.training.models import TrainConfig, TrainingError, fit_platt, weight_grid

START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def featured() -> tuple[FeatureEngine, Featured]:
    frame = generate(GeneratorConfig(n_customers=300, n_merchants=40, days=40, fraud_rate=0.03, seed=11))
    engine = FeatureEngine()
    return engine, Featured.build(frame, engine)


@pytest.fixture(scope="module")
def bundle(featured: tuple[FeatureEngine, Featured]) -> ModelBundle:
    engine, data = featured
    windows = Windows(START, START + timedelta(days=26))
    return train_window(data, windows, engine, TrainConfig(trials=2, folds=2, seed=1))


def test_config_rejects_bad_options() -> None:
    with pytest.raises(TrainingError, match="unknown models"):
        TrainConfig(models=("xgboost", "svm"))
    with pytest.raises(TrainingError, match="supervised"):
        TrainConfig(models=("isolation_forest",))
    with pytest.raises(TrainingError, match="block_fpr"):
        TrainConfig(block_fpr=0.05, flag_fpr=0.01)


def test_windows_follow_the_handbook_shape() -> None:
    w = Windows.before_test(datetime(2018, 6, 2, tzinfo=UTC), train_days=7, gap_days=7, test_days=7)
    assert (w.train_start, w.train_end) == (
        datetime(2018, 5, 19, tzinfo=UTC),
        datetime(2018, 5, 26, tzinfo=UTC),
    )
    assert (w.test_start, w.test_end) == (datetime(2018, 6, 2, tzinfo=UTC), datetime(2018, 6, 9, tzinfo=UTC))
    with pytest.raises(ValueError, match="after train_start"):
        Windows(START, START)


def test_training_rows_use_only_labels_known_at_test_start(featured: tuple[FeatureEngine, Featured]) -> None:
    _, data = featured
    windows = Windows(START + timedelta(days=5), START + timedelta(days=20), gap=timedelta(days=3))
    rows = data.training_rows(windows)
    ts, label = data.batch.timestamp[rows], data.batch.label_time[rows]
    assert ts.min() >= windows.train_start.timestamp() and ts.max() < windows.train_end.timestamp()
    assert (label <= windows.test_start.timestamp()).all()
    everything = data.between(windows.train_start, windows.train_end)
    assert len(rows) < len(everything)  # some labels were still unknown and were left out


def test_platt_keeps_ranking_and_weights_sum_to_one() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.1
    raw = np.clip(0.3 * y + rng.random(2000) * 0.7, 0, 1)
    p = calibrate("xgboost", raw, fit_platt("xgboost", raw, y))
    assert np.array_equal(np.argsort(p, kind="stable"), np.argsort(raw, kind="stable"))
    assert abs(p.mean() - y.mean()) < 0.02
    grid = weight_grid(["xgboost", "logistic", "isolation_forest"])
    assert all(abs(sum(w.values()) - 1) < 1e-9 and w["xgboost"] + w["logistic"] > 0 for w in grid)


def test_one_class_training_data_is_a_clear_error(featured: tuple[FeatureEngine, Featured]) -> None:
    engine, data = featured
    windows = Windows(START, START + timedelta(hours=1))
    with pytest.raises(TrainingError, match="both fraud and legitimate"):
        train_window(data, windows, engine, TrainConfig(trials=0))


def test_bundle_detects_fraud_and_sets_thresholds(
    bundle: ModelBundle, featured: tuple[FeatureEngine, Featured]
) -> None:
    _, data = featured
    m = bundle.manifest
    assert 0 < m.thresholds["flag"] <= m.thresholds["block"] < 1
    assert abs(sum(m.weights.values()) - 1) < 1e-9
    assert m.feature_names == FeatureEngine().names and len(m.data_fingerprint) == 16
    ev = evaluate_window(data, bundle, START + timedelta(days=33), START + timedelta(days=40))
    assert ev.n_fraud > 10 and ev.roc_auc > 0.9 and ev.average_precision > 0.5
    assert ev.by_scenario and "card_testing" in ev.by_scenario


def test_bundle_round_trip(
    bundle: ModelBundle, featured: tuple[FeatureEngine, Featured], tmp_path: Path
) -> None:
    _, data = featured
    path = bundle.save(tmp_path / "m.fsb")
    loaded = load_bundle(path)
    assert loaded.manifest == bundle.manifest
    X = data.X[:500]
    np.testing.assert_array_equal(predict(loaded, X)[0], predict(bundle, X)[0])


def _rewrite_manifest(src: Path, dst: Path, **changes: object) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        manifest = json.loads(zin.read("manifest.json")) | changes
        zout.writestr("manifest.json", json.dumps(manifest))
        for name in zin.namelist():
            if name != "manifest.json":
                zout.writestr(name, zin.read(name))
    return dst


def test_incompatible_bundles_are_refused(bundle: ModelBundle, tmp_path: Path) -> None:
    path = bundle.save(tmp_path / "m.fsb")
    other = FeatureSet.from_dict(
        {
            "version": "2",
            "features": [{"key": "customer_id", "aggregates": [{"stats": "count", "windows": "1h"}]}],
        }
    )
    with pytest.raises(IncompatibleBundleError, match=r"feature set 1 .* expected 2"):
        load_bundle(path, other)
    old = _rewrite_manifest(path, tmp_path / "old.fsb", libraries={"scikit-learn": "0.24.2"})
    with pytest.raises(IncompatibleBundleError, match=r"scikit-learn 0\.24\.2 at training"):
        load_bundle(old)
    future = _rewrite_manifest(path, tmp_path / "future.fsb", bundle_format=99)
    with pytest.raises(IncompatibleBundleError, match="bundle format 99"):
        load_bundle(future)


def test_unreadable_bundles_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="fraudstream train"):
        read_manifest(tmp_path / "missing.fsb")
    junk = tmp_path / "junk.fsb"
    junk.write_text("not a zip")
    with pytest.raises(BundleError, match="not a fraudstream model bundle"):
        read_manifest(junk)


def test_folds_without_fraud_are_left_out_of_validation() -> None:
    """Rare fraud in a short window: the earliest folds have none, and training still succeeds."""
    from fraudstream.training.fit import time_folds

    y = np.zeros(400, dtype=np.int64)
    y[[250, 300, 320, 390]] = 1
    folds = time_folds(y, 3)
    assert [(len(fit), val.min()) for fit, val in folds] == [
        (300, 300)
    ]  # folds fitted on no fraud are skipped
    y[:] = 0
    y[399] = 1
    with pytest.raises(TrainingError, match=r"every time-ordered fold .* lacks fraud"):
        time_folds(y, 3)
