"""XGBoost served by the models step's own walk gives XGBoost's own predictions and approximate
contributions, bit for bit, for one row or thousands; a model the walk does not take is served by the
booster itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from fraudstream.models.bundle import load_bundle
from fraudstream.scoring import _xgboost
from fraudstream.scoring.served import ServedModels
from tests.unit.model_bundles import served_alone


def random_rows(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """~30% NaN, magnitudes from 1e-30 to 1e30, both signs, and some exact and negative zeros."""
    X = rng.normal(size=(n, m)) * 10.0 ** rng.integers(-30, 31, size=(n, m))
    X[rng.random(X.shape) < 0.05] = 0.0
    X[rng.random(X.shape) < 0.05] = -0.0
    X[rng.random(X.shape) < 0.3] = np.nan
    return X


def splits(booster: Any) -> tuple[np.ndarray, np.ndarray]:
    """Every split's feature and condition (float32), from XGBoost's own dump of the model."""
    frame = booster.trees_to_dataframe()
    inner = frame[frame["Feature"] != "Leaf"]
    feature = inner["Feature"].str.lstrip("f").astype(np.int64).to_numpy()
    return feature, inner["Split"].to_numpy().astype(np.float32)


def threshold_rows(booster: Any, rng: np.random.Generator) -> np.ndarray:
    """One row per split with that feature exactly at, or rounding to, the split condition."""
    feature, split = splits(booster)
    split = split.astype(np.float64)
    rows = []
    for nudge in (0.0, 1e-12, -1e-12):
        X = rng.normal(size=(split.size, booster.num_features()))
        X[rng.random(X.shape) < 0.3] = np.nan
        X[np.arange(split.size), feature] = split * (1.0 + nudge)
        rows.append(X)
    return np.concatenate(rows)


def xgb_predict(booster: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(booster.inplace_predict(X), dtype=np.float64)


def xgb_contributions(booster: Any, X: np.ndarray) -> np.ndarray:
    contribs = booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True, approx_contribs=True)
    return np.asarray(contribs[:, :-1], dtype=np.float64)


def served(model: Any) -> tuple[Any, ServedModels]:
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    return booster, served_alone("xgboost", model, booster.num_features())


@pytest.fixture(scope="module")
def synthetic() -> tuple[Any, ServedModels]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 20)) * rng.choice([1e-3, 1.0, 1e4], size=20)
    X[rng.random(X.shape) < 0.3] = np.nan
    signal = np.nan_to_num(X[:, 0]) * 1e3 + np.nan_to_num(X[:, 1]) ** 2 + np.isnan(X[:, 2])
    y = (signal + rng.normal(size=3000) > 1).astype(int)
    model = xgb.XGBClassifier(n_estimators=50, max_depth=4, tree_method="hist", missing=np.nan, n_jobs=1)
    return served(model.fit(X, y))


@pytest.fixture(scope="module")
def bundled(bundle_path: Path) -> tuple[Any, ServedModels]:
    return served(load_bundle(bundle_path).models["xgboost"])


@pytest.fixture(params=["synthetic", "bundled"])
def model(request: pytest.FixtureRequest) -> tuple[Any, ServedModels]:
    return request.getfixturevalue(request.param)


def predict(models: ServedModels, X: np.ndarray) -> np.ndarray:
    return models.score(X).raw[models.names.index("xgboost")]


def test_predictions_are_bit_identical_on_random_rows(model: tuple[Any, ServedModels]) -> None:
    booster, models = model
    X = random_rows(np.random.default_rng(1), 3000, booster.num_features())
    np.testing.assert_array_equal(predict(models, X), xgb_predict(booster, X))


def test_predictions_are_bit_identical_at_split_thresholds(model: tuple[Any, ServedModels]) -> None:
    booster, models = model
    X = threshold_rows(booster, np.random.default_rng(2))
    np.testing.assert_array_equal(predict(models, X), xgb_predict(booster, X))


def test_contributions_are_bit_identical(model: tuple[Any, ServedModels]) -> None:
    booster, models = model
    rng = np.random.default_rng(4)
    for X in (random_rows(rng, 2000, booster.num_features()), threshold_rows(booster, rng)):
        ours = models.contributions(X)
        np.testing.assert_array_equal(ours, xgb_contributions(booster, X))
        assert np.count_nonzero(ours) > X.shape[0]


@pytest.fixture(scope="module")
def deep() -> tuple[Any, ServedModels]:
    """Deep trees over three features, so a path splits on the same feature many times."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(4000, 3))
    X[rng.random(X.shape) < 0.2] = np.nan
    y = (np.nan_to_num(X[:, 0]) * np.nan_to_num(X[:, 1], nan=1.0) + np.sin(3 * np.nan_to_num(X[:, 2]))) > 0.3
    model = xgb.XGBClassifier(n_estimators=30, max_depth=9, tree_method="hist", missing=np.nan, n_jobs=1)
    return served(model.fit(X, y.astype(int)))


def test_contributions_sum_repeated_splits_per_tree_as_xgboost(deep: tuple[Any, ServedModels]) -> None:
    """Each leaf's tabulated sums add a feature's steps in path order in float32, as XGBoost's buffer."""
    booster, models = deep
    # a tree of more than 15 nodes has a path of more than 3 splits, on 3 features: one repeats
    assert booster.trees_to_dataframe()["Tree"].value_counts().max() > 15
    rng = np.random.default_rng(9)
    X = np.concatenate([random_rows(rng, 5000, 3), threshold_rows(booster, rng)])
    X[:500] = rng.normal(size=(500, 3))  # rows that reach the deepest leaves
    ours = models.contributions(X)
    np.testing.assert_array_equal(ours, xgb_contributions(booster, X))
    np.testing.assert_array_equal(models.contributions(X[:100]), ours[:100])
    np.testing.assert_array_equal(predict(models, X), xgb_predict(booster, X))


def test_a_row_scores_and_explains_the_same_alone_as_in_any_batch(
    synthetic: tuple[Any, ServedModels],
) -> None:
    booster, models = synthetic
    X = random_rows(np.random.default_rng(5), 5000, booster.num_features())
    batch_p, batch_c = predict(models, X), models.contributions(X)
    np.testing.assert_array_equal(batch_p, xgb_predict(booster, X))
    for lo, hi in ((0, 37), (100, 101), (200, 231), (300, 333)):
        np.testing.assert_array_equal(predict(models, X[lo:hi]), batch_p[lo:hi])
        np.testing.assert_array_equal(models.contributions(X[lo:hi]), batch_c[lo:hi])
    for i in (0, 16, 36, len(X) - 1):
        one = models.score(X[i : i + 1])
        assert one.probability.shape == (1,) and one.raw.shape == (1, 1) and one.raw.dtype == np.float64
        assert one.raw[0, 0] == batch_p[i]
        assert models.contributions(X[i : i + 1]).shape == (1, booster.num_features())
    empty = models.score(np.empty((0, booster.num_features())))
    assert empty.probability.shape == (0,) and empty.raw.shape == (1, 0) and empty.decision.shape == (0,)
    assert models.contributions(np.empty((0, booster.num_features()))).shape == (0, booster.num_features())


def test_rejects_wrong_width_and_unsupported_models(synthetic: tuple[Any, ServedModels]) -> None:
    _, models = synthetic
    with pytest.raises(ValueError, match="width"):
        models.score(np.zeros((2, 19)))
    with pytest.raises(ValueError, match="width"):
        models.contributions(np.zeros((2, 21)))
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(200, 3)), rng.integers(0, 3, size=200)
    multiclass = xgb.XGBClassifier(n_estimators=2, max_depth=2, tree_method="hist").fit(X, y)
    with pytest.raises(ValueError, match="logistic objective"):
        _xgboost.XGBoostTrees.from_booster(multiclass)


def test_a_model_the_walk_does_not_take_is_served_by_the_booster(
    synthetic: tuple[Any, ServedModels], monkeypatch: pytest.MonkeyPatch
) -> None:
    booster, walked = synthetic

    def refuse(booster: Any) -> Any:
        raise ValueError("categorical splits")

    monkeypatch.setattr(_xgboost.XGBoostTrees, "from_booster", refuse)
    native = ServedModels(walked.bundle)
    X = random_rows(np.random.default_rng(10), 300, booster.num_features())
    np.testing.assert_array_equal(native.score(X).probability, walked.score(X).probability)
    np.testing.assert_array_equal(native.contributions(X), xgb_contributions(booster, X))
    decisions = np.full(len(X), "FLAG", dtype=object)
    assert native.reasons(X, decisions) == walked.reasons(X, decisions)
