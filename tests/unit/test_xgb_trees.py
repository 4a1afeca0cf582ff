"""The numba walk of XGBoost's trees gives XGBoost's own predictions and contributions, bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from fraudstream.models.bundle import load_bundle
from fraudstream.scoring._few import _booster_few
from fraudstream.scoring._packed import pack_booster
from fraudstream.scoring._xgb_trees import PARALLEL_FROM, XGBTrees


def random_rows(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """~30% NaN, magnitudes from 1e-30 to 1e30, both signs, and some exact and negative zeros."""
    X = rng.normal(size=(n, m)) * 10.0 ** rng.integers(-30, 31, size=(n, m))
    X[rng.random(X.shape) < 0.05] = 0.0
    X[rng.random(X.shape) < 0.05] = -0.0
    X[rng.random(X.shape) < 0.3] = np.nan
    return X


def threshold_rows(trees: XGBTrees, rng: np.random.Generator) -> np.ndarray:
    """One row per split with that feature exactly at, or rounding to, the split condition."""
    inner = trees.children[0::2] != np.arange(trees.feature.size)
    feature, split = trees.feature[inner].astype(np.int64), trees.threshold[inner].astype(np.float64)
    rows = []
    for nudge in (0.0, 1e-12, -1e-12):
        X = rng.normal(size=(split.size, trees.n_features))
        X[rng.random(X.shape) < 0.3] = np.nan
        X[np.arange(split.size), feature] = split * (1.0 + nudge)
        rows.append(X)
    return np.concatenate(rows)


def xgb_predict(booster: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(booster.inplace_predict(X), dtype=np.float64)


def xgb_contributions(booster: Any, X: np.ndarray) -> np.ndarray:
    contribs = booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True, approx_contribs=True)
    return np.asarray(contribs[:, :-1], dtype=np.float64)


@pytest.fixture(scope="module")
def synthetic() -> tuple[Any, XGBTrees]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 20)) * rng.choice([1e-3, 1.0, 1e4], size=20)
    X[rng.random(X.shape) < 0.3] = np.nan
    signal = np.nan_to_num(X[:, 0]) * 1e3 + np.nan_to_num(X[:, 1]) ** 2 + np.isnan(X[:, 2])
    y = (signal + rng.normal(size=3000) > 1).astype(int)
    model = xgb.XGBClassifier(n_estimators=50, max_depth=4, tree_method="hist", missing=np.nan, n_jobs=1)
    booster = model.fit(X, y).get_booster()
    return booster, XGBTrees.from_booster(booster)


@pytest.fixture(scope="module")
def bundled(bundle_path: Path) -> tuple[Any, XGBTrees]:
    model = load_bundle(bundle_path).models["xgboost"]
    if not hasattr(model, "get_booster"):
        pytest.skip("the bundle's XGBoost is not a bare XGBClassifier")
    return model.get_booster(), XGBTrees.from_booster(model)


@pytest.fixture(params=["synthetic", "bundled"])
def model(request: pytest.FixtureRequest) -> tuple[Any, XGBTrees]:
    return request.getfixturevalue(request.param)


def test_predictions_are_bit_identical_on_random_rows(model: tuple[Any, XGBTrees]) -> None:
    booster, trees = model
    X = random_rows(np.random.default_rng(1), 3000, trees.n_features)
    np.testing.assert_array_equal(trees.predict(X), xgb_predict(booster, X))
    np.testing.assert_array_equal(trees.margin(X), booster.inplace_predict(X, predict_type="margin"))


def test_one_walk_predicts_and_explains_bit_for_bit_as_two(model: tuple[Any, XGBTrees]) -> None:
    booster, trees = model
    rng = np.random.default_rng(6)
    for n in (7, PARALLEL_FROM + 30):  # the serial and the parallel walk
        X = np.concatenate([random_rows(rng, n, trees.n_features), threshold_rows(trees, rng)])
        probability, contributions = trees.predict_and_contributions(X)
        np.testing.assert_array_equal(probability, xgb_predict(booster, X))
        np.testing.assert_array_equal(contributions, trees.contributions(X))


def test_predictions_are_bit_identical_at_split_thresholds(model: tuple[Any, XGBTrees]) -> None:
    booster, trees = model
    X = threshold_rows(trees, np.random.default_rng(2))
    np.testing.assert_array_equal(trees.predict(X), xgb_predict(booster, X))


def test_contributions_match_xgboost_saabas(model: tuple[Any, XGBTrees]) -> None:
    booster, trees = model
    rng = np.random.default_rng(3)
    for X in (random_rows(rng, 2000, trees.n_features), threshold_rows(trees, rng)):
        np.testing.assert_allclose(
            trees.contributions(X), xgb_contributions(booster, X), rtol=1e-5, atol=1e-6
        )


def test_contributions_are_bit_identical(model: tuple[Any, XGBTrees]) -> None:
    booster, trees = model
    rng = np.random.default_rng(4)
    for X in (random_rows(rng, 2000, trees.n_features), threshold_rows(trees, rng)):
        ours = trees.contributions(X)
        np.testing.assert_array_equal(ours, xgb_contributions(booster, X))
        assert np.count_nonzero(ours) > X.shape[0]


@pytest.fixture(scope="module")
def deep() -> tuple[Any, XGBTrees]:
    """Deep trees over three features, so a path splits on the same feature many times."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(4000, 3))
    X[rng.random(X.shape) < 0.2] = np.nan
    y = (np.nan_to_num(X[:, 0]) * np.nan_to_num(X[:, 1], nan=1.0) + np.sin(3 * np.nan_to_num(X[:, 2]))) > 0.3
    model = xgb.XGBClassifier(n_estimators=30, max_depth=9, tree_method="hist", missing=np.nan, n_jobs=1)
    booster = model.fit(X, y.astype(int)).get_booster()
    return booster, XGBTrees.from_booster(booster)


def test_contributions_sum_repeated_splits_per_tree_as_xgboost(deep: tuple[Any, XGBTrees]) -> None:
    """Each leaf's tabulated sums add a feature's steps in path order in float32, as XGBoost's buffer."""
    booster, trees = deep
    lengths = np.diff(trees.leaf_start)
    assert lengths.max() <= trees.n_features < trees.depths.max()  # features repeat along paths
    rng = np.random.default_rng(9)
    X = np.concatenate([random_rows(rng, PARALLEL_FROM + 50, 3), threshold_rows(trees, rng)])
    X[:500] = rng.normal(size=(500, 3))  # rows that reach the deepest leaves
    ours = trees.contributions(X)
    np.testing.assert_array_equal(ours, xgb_contributions(booster, X))
    np.testing.assert_array_equal(trees.contributions(X[:100]), ours[:100])
    np.testing.assert_array_equal(trees.margin(X), booster.inplace_predict(X, predict_type="margin"))


def test_one_row_zero_rows_and_batches_agree(synthetic: tuple[Any, XGBTrees]) -> None:
    booster, trees = synthetic
    X = random_rows(np.random.default_rng(5), PARALLEL_FROM + 100, trees.n_features)
    batch_p, batch_c = trees.predict(X), trees.contributions(X)
    np.testing.assert_array_equal(batch_p, xgb_predict(booster, X))
    np.testing.assert_array_equal(batch_c, xgb_contributions(booster, X))
    small_p, small_c = trees.predict(X[:37]), trees.contributions(X[:37])
    np.testing.assert_array_equal(small_p, batch_p[:37])
    np.testing.assert_array_equal(small_c, batch_c[:37])
    for i in (0, 16, 36, len(X) - 1):
        one_p, one_c = trees.predict(X[i : i + 1]), trees.contributions(X[i : i + 1])
        assert one_p.shape == (1,) and one_p.dtype == np.float64
        assert one_c.shape == (1, trees.n_features) and one_c.dtype == np.float64
        np.testing.assert_array_equal(one_p[0], batch_p[i])
        np.testing.assert_array_equal(one_c[0], batch_c[i])
    empty = np.empty((0, trees.n_features))
    assert trees.predict(empty).shape == (0,)
    assert trees.contributions(empty).shape == (0, trees.n_features)


def test_rejects_wrong_width_and_unsupported_models(synthetic: tuple[Any, XGBTrees]) -> None:
    _, trees = synthetic
    with pytest.raises(ValueError, match="20 features"):
        trees.predict(np.zeros((2, 19)))
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(200, 3)), rng.integers(0, 3, size=200)
    multiclass = xgb.XGBClassifier(n_estimators=2, max_depth=2, tree_method="hist").fit(X, y)
    with pytest.raises(ValueError, match="logistic objective"):
        XGBTrees.from_booster(multiclass)


@pytest.mark.parametrize("k", [0, 3])
def test_few_rows_packed_walk_equals_xgboost(model: tuple[Any, XGBTrees], k: int) -> None:
    booster, trees = model
    rng = np.random.default_rng(4)
    X = np.concatenate([threshold_rows(trees, rng), random_rows(rng, 300, trees.n_features)])
    words = pack_booster(trees)
    walk = (trees.base_margin, trees.roots, words, words.view(np.float32))
    tables = (trees.leaf_start, trees.leaf_features, trees.leaf_sums)
    for lo in range(0, len(X), 64):
        rows = X[lo : lo + 64]
        probability, (cols, contributions, _, counts) = _booster_few(rows, *walk, *tables, k)
        np.testing.assert_array_equal(probability, xgb_predict(booster, rows))
        if k:  # the picked contributions are the batch path's, rounded as it rounds them
            full = trees.contributions(rows)
            for i in range(len(rows)):
                picked = np.rint(full[i, cols[i, : counts[i]]] * 10000.0) / 10000.0
                np.testing.assert_array_equal(picked, contributions[i, : counts[i]])
            assert counts.sum() > 0
