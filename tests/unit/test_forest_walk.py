"""The compiled Isolation Forest walk gives scikit-learn's scores bit for bit, serial or parallel."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from fraudstream.scoring._few import _scoring
from fraudstream.scoring._packed import float32_at_most
from fraudstream.scoring.compiled import (
    PARALLEL_FROM,
    CompiledForest,
    _forest_depths,
    _forest_depths_parallel,
)

N_FEATURES = 12


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


def expected(pipeline: Pipeline, X: np.ndarray) -> np.ndarray:
    return np.asarray(-pipeline.score_samples(X), dtype=np.float64)


def walk_both(compiled: CompiledForest, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Xf = np.ascontiguousarray(compiled.impute(X).astype(np.float32))
    c = compiled
    args: tuple[Any, ...] = (c.roots, c.depths, c.children, c.feature, c.threshold, c.value)
    return _forest_depths(Xf, *args), _forest_depths_parallel(Xf, *args)


def threshold_rows(compiled: CompiledForest, rng: np.random.Generator) -> np.ndarray:
    """Rows with one feature at each split's threshold as float32 would hold it, and a float32 step
    either side: the values on which ``<=`` in float64 against float32 decides the branch."""
    inner = compiled.children[0::2] != np.arange(compiled.feature.size)
    feature, split = compiled.feature[inner].astype(np.int64), compiled.threshold[inner]
    at = split.astype(np.float32)
    rows = []
    for value in (at, np.nextafter(at, np.float32(-np.inf)), np.nextafter(at, np.float32(np.inf))):
        X = random_rows(rng, split.size)
        X[np.arange(split.size), feature] = value.astype(np.float64)
        rows.append(X)
    return np.concatenate(rows)


def test_scores_equal_scikit_learn_on_rows_with_nan(pipeline: Pipeline) -> None:
    compiled = CompiledForest.from_pipeline(pipeline)
    X = random_rows(np.random.default_rng(0), 1000)
    np.testing.assert_array_equal(compiled.score(X), expected(pipeline, X))


def test_scores_equal_scikit_learn_on_split_thresholds(pipeline: Pipeline) -> None:
    compiled = CompiledForest.from_pipeline(pipeline)
    X = threshold_rows(compiled, np.random.default_rng(1))
    assert X.shape[0] >= 3 * 60
    serial, parallel = walk_both(compiled, X)
    np.testing.assert_array_equal(serial, parallel)
    np.testing.assert_array_equal(compiled.score(X), expected(pipeline, X))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 33])
def test_small_batches_equal_scikit_learn(pipeline: Pipeline, n: int) -> None:
    compiled = CompiledForest.from_pipeline(pipeline)
    X = random_rows(np.random.default_rng(n), n)
    np.testing.assert_array_equal(compiled.score(X), expected(pipeline, X))
    np.testing.assert_array_equal(compiled.score(X[:1]), expected(pipeline, X[:1]))


def test_no_rows_give_no_scores(pipeline: Pipeline) -> None:
    compiled = CompiledForest.from_pipeline(pipeline)
    scores = compiled.score(np.empty((0, N_FEATURES)))
    assert scores.shape == (0,) and scores.dtype == np.float64
    serial, parallel = walk_both(compiled, np.empty((0, N_FEATURES)))
    assert serial.shape == parallel.shape == (0,)


def test_parallel_walk_equals_serial_and_scikit_learn(pipeline: Pipeline) -> None:
    compiled = CompiledForest.from_pipeline(pipeline)
    X = random_rows(np.random.default_rng(2), 5000)
    assert X.shape[0] >= PARALLEL_FROM  # score takes the parallel walk
    serial, parallel = walk_both(compiled, X)
    np.testing.assert_array_equal(serial, parallel)
    np.testing.assert_array_equal(compiled.score(X), expected(pipeline, X))
    # a row scores the same alone as in a batch, whichever walk the batch took
    np.testing.assert_array_equal(compiled.score(X[4321:4322]), compiled.score(X)[4321:4322])


def test_leaves_are_their_own_children(pipeline: Pipeline) -> None:
    compiled = CompiledForest.from_pipeline(pipeline)
    trees = pipeline.named_steps["model"].estimators_
    assert compiled.depths.tolist() == [tree.tree_.max_depth for tree in trees]
    leaves = np.concatenate([tree.tree_.children_left == -1 for tree in trees])
    node = np.arange(leaves.size)
    assert (compiled.children[0::2][leaves] == node[leaves]).all()
    assert (compiled.children[1::2][leaves] == node[leaves]).all()
    assert (compiled.children[0::2][~leaves] > node[~leaves]).all()


def test_feature_subsampling_is_refused() -> None:
    X = np.random.default_rng(3).normal(size=(200, 4))
    model = Pipeline(
        [("impute", SimpleImputer()), ("model", IsolationForest(n_estimators=5, max_features=0.5))]
    ).fit(X)
    with pytest.raises(ValueError, match="max_features"):
        CompiledForest.from_pipeline(model)


def test_float32_at_most_decides_as_the_float64_threshold() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=20_000) * 10.0 ** rng.integers(-40, 40, size=20_000)
    t[:4] = [0.1, -0.1, 1e300, -1e300]
    t32 = float32_at_most(t)
    assert t32.dtype == np.float32 and np.all(t32.astype(np.float64) <= t)
    with np.errstate(over="ignore"):
        near = t.astype(np.float32)
    for x in (near, np.nextafter(near, np.float32(-np.inf)), np.nextafter(near, np.float32(np.inf))):
        assert np.array_equal(x.astype(np.float64) <= t, x <= t32)


def test_few_rows_packed_walk_equals_scikit_learn_at_split_thresholds(pipeline: Pipeline) -> None:
    compiled = CompiledForest.from_pipeline(pipeline)
    rng = np.random.default_rng(3)
    X = np.concatenate([threshold_rows(compiled, rng), random_rows(rng, 200)])
    score = _scoring(compiled)  # the few-rows path's packed walk
    got = np.concatenate([score(X[lo : lo + 64], 0)[0] for lo in range(0, len(X), 64)])
    np.testing.assert_array_equal(got, expected(pipeline, X))
