"""The Isolation Forest served by the models step's own walk gives scikit-learn's scores, for one row or
thousands: every row reaches scikit-learn's leaves, and the score is scikit-learn's to within the last
bits of its final power of two (compiled as ``exp2``, where numpy calls its ``pow``)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from fraudstream.scoring._trees import float32_above
from fraudstream.scoring.served import ServedModels
from tests.unit.model_bundles import served_alone

N_FEATURES = 12
RTOL = 1e-13
"""A few units in the last place, and far below what a single leaf reached otherwise moves a score
(the change in its path length over the forest's denominator, times ln 2: 1e-6 or more)."""


def random_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    X = rng.normal(size=(n, N_FEATURES)) * 10.0 ** rng.integers(-3, 4, size=(n, N_FEATURES))
    X[rng.random(X.shape) < 0.05] = -0.0
    X[rng.random(X.shape) < 0.3] = np.nan
    return X


@pytest.fixture(scope="module", params=[16, 256], ids=["shallow", "deep"])
def pipeline(request: pytest.FixtureRequest) -> Pipeline:
    rng = np.random.default_rng(5)
    X = random_rows(rng, 3000)
    X[:, -1] = np.nan  # an empty feature, imputed with 0
    forest = IsolationForest(n_estimators=60, max_samples=request.param, random_state=1)
    model = Pipeline(
        [("impute", SimpleImputer(strategy="median", keep_empty_features=True)), ("model", forest)]
    )
    return model.fit(X)


@pytest.fixture(scope="module")
def served(pipeline: Pipeline) -> ServedModels:
    return served_alone("isolation_forest", pipeline, N_FEATURES)


def expected(pipeline: Pipeline, X: np.ndarray) -> np.ndarray:
    return np.asarray(-pipeline.score_samples(X), dtype=np.float64)


def scores(served: ServedModels, X: np.ndarray) -> np.ndarray:
    return served.score(X).raw[0]


def assert_sklearns(served: ServedModels, pipeline: Pipeline, X: np.ndarray) -> None:
    """The scores are scikit-learn's within :data:`RTOL`."""
    np.testing.assert_allclose(scores(served, X), expected(pipeline, X), rtol=RTOL, atol=0)


def threshold_rows(pipeline: Pipeline, rng: np.random.Generator) -> np.ndarray:
    """Rows with one feature at each split's threshold as float32 would hold it, and a float32 step
    either side: the values on which ``<=`` in float64 against float32 decides the branch."""
    trees = [e.tree_ for e in pipeline.named_steps["model"].estimators_]
    inner = np.concatenate([t.children_left != -1 for t in trees])
    feature = np.concatenate([t.feature for t in trees])[inner]
    split = np.concatenate([t.threshold for t in trees])[inner]
    at = split.astype(np.float32)
    rows = []
    for value in (at, np.nextafter(at, np.float32(-np.inf)), np.nextafter(at, np.float32(np.inf))):
        X = random_rows(rng, split.size)
        X[np.arange(split.size), feature] = value.astype(np.float64)
        rows.append(X)
    return np.concatenate(rows)


def test_scores_equal_scikit_learn_on_rows_with_nan(served: ServedModels, pipeline: Pipeline) -> None:
    assert_sklearns(served, pipeline, random_rows(np.random.default_rng(0), 5000))


def test_scores_equal_scikit_learn_on_split_thresholds(served: ServedModels, pipeline: Pipeline) -> None:
    X = threshold_rows(pipeline, np.random.default_rng(1))
    assert X.shape[0] >= 3 * 60
    assert_sklearns(served, pipeline, X)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 33])
def test_small_batches_equal_scikit_learn(served: ServedModels, pipeline: Pipeline, n: int) -> None:
    X = random_rows(np.random.default_rng(n), n)
    assert_sklearns(served, pipeline, X)


def test_a_row_scores_the_same_alone_as_in_any_batch(served: ServedModels) -> None:
    X = random_rows(np.random.default_rng(2), 5000)
    whole = scores(served, X)
    for lo, hi in ((4321, 4322), (0, 31), (40, 73), (4990, 5000)):
        np.testing.assert_array_equal(scores(served, X[lo:hi]), whole[lo:hi])


def test_no_rows_give_no_scores(served: ServedModels) -> None:
    got = served.score(np.empty((0, N_FEATURES)))
    assert got.raw.shape == (1, 0) and got.raw.dtype == np.float64 and got.probability.shape == (0,)


def test_feature_subsampling_is_refused() -> None:
    X = np.random.default_rng(3).normal(size=(200, 4))
    model = Pipeline(
        [("impute", SimpleImputer()), ("model", IsolationForest(n_estimators=5, max_features=0.5))]
    ).fit(X)
    with pytest.raises(ValueError, match="max_features"):
        served_alone("isolation_forest", model, 4)


def test_the_float32_split_decides_as_the_float64_threshold() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=20_000) * 10.0 ** rng.integers(-40, 40, size=20_000)
    t[:4] = [0.1, -0.1, 1e300, -1e300]
    above = float32_above(t)
    assert above.dtype == np.float32
    with np.errstate(over="ignore"):
        near = t.astype(np.float32)
    for x in (near, np.nextafter(near, np.float32(-np.inf)), np.nextafter(near, np.float32(np.inf))):
        assert np.array_equal(x.astype(np.float64) <= t, ~(x >= above))
