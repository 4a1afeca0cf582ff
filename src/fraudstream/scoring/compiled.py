"""Fast serving forms of the bundle's models, giving the same scores as the fitted estimators.

A single transaction must be scored in well under a millisecond. scikit-learn's Isolation Forest
walks its trees through Python and joblib (far over that budget for one row), and its pipelines add
validation on every call, so serving uses compiled equivalents: the Isolation Forest's trees are
flattened into arrays and walked by numba, logistic regression is imputation, scaling and a dot
product in numpy, and XGBoost's trees are walked by numba too (:mod:`._xgb_trees`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange
from scipy.special import expit

from fraudstream.models.bundle import ModelBundle
from fraudstream.scoring._xgb_trees import XGBTrees, block_rows

_BLOCK = 32
"""Rows walked through each tree together: as float32 they stay in the first-level cache."""
_GROUP = 16
"""Rows of a block stepped down a tree side by side, so their independent walks overlap."""
_FEW = 4
"""Below this many rows in a block, rows are walked one by one with branches (:func:`_leaf`)."""
PARALLEL_FROM = 4096
"""Rows from which the forest is walked on all cores; below it threads cost more than they save."""


@njit(cache=True)
def top_columns(values, k):  # fmt: skip
    """Each row's ``k`` largest columns, largest first, ties to the lower column; NaN counts as lowest.
    One pass per row keeping the best ``k`` in order: a fraction of a full partition's cost."""
    n, m = values.shape
    out = np.empty((n, k), np.int64)
    best = np.empty(k)
    for i in range(n):
        filled = 0
        for j in range(m):
            v = values[i, j]
            v = -np.inf if v != v else v
            if filled == k and not v > best[k - 1]:
                continue
            p = filled if filled < k else k - 1
            while p > 0 and v > best[p - 1]:
                best[p] = best[p - 1]
                out[i, p] = out[i, p - 1]
                p -= 1
            best[p] = v
            out[i, p] = j
            filled = min(filled + 1, k)
    return out


@njit(cache=True)
def _next(rows, r, node, children, feature, threshold):  # fmt: skip
    """scikit-learn's split, ``value <= threshold`` with the float32 value compared in float64, as a
    branchless index: a node's children are stored right then left, so the comparison picks one.
    Leaves are their own children, and unsigned indices spare numba's negative-index checks."""
    go_left = np.uint64(np.float64(rows[r, feature[node]]) <= threshold[node])
    return np.uint64(children[np.uint64(2) * node + go_left])


@njit(cache=True)
def _leaf(rows, r, node, children, feature, threshold):  # fmt: skip
    """One row's walk with a branch per split and an exit at the leaf: for a lone row, the
    processor's guesses overlap the steps better than the branchless walk of every level."""
    while True:
        right = np.uint64(children[np.uint64(2) * node])
        if right == node:
            return node
        if np.float64(rows[r, feature[node]]) <= threshold[node]:
            node = np.uint64(children[np.uint64(2) * node + np.uint64(1)])
        else:
            node = right


@njit(cache=True)
def _walk_block(X, lo, hi, roots, depths, children, feature, threshold, value, out):  # fmt: skip
    rows = block_rows(X, lo, hi)
    if hi - lo < _FEW:
        for t in range(roots.shape[0]):
            for r in range(hi - lo):
                out[lo + r] += value[_leaf(rows, np.uint64(r), roots[t], children, feature, threshold)]
        return
    nodes = np.empty(_GROUP, np.uint64)
    for t in range(roots.shape[0]):
        for g in range(0, hi - lo, _GROUP):
            size = min(_GROUP, hi - lo - g)
            nodes[:size] = roots[t]
            for _ in range(depths[t]):
                for k in range(size):
                    nodes[k] = _next(rows, np.uint64(g + k), nodes[k], children, feature, threshold)
            for k in range(size):
                out[lo + g + k] += value[nodes[k]]


@njit(cache=True)
def _forest_depths(X, roots, depths, children, feature, threshold, value):  # fmt: skip
    """Sum of leaf values over the trees, per row, a block of rows at a time: each block is copied
    into a small float32 buffer and every tree walked for it, ``_GROUP`` rows stepped side by side
    for the tree's full depth so their independent walks overlap. A row's sum adds the trees in
    order, in float64, whatever the blocking."""
    n = X.shape[0]
    out = np.zeros(n)
    for b in range((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _walk_block(X, lo, hi, roots, depths, children, feature, threshold, value, out)
    return out


@njit(cache=True, parallel=True)
def _forest_depths_parallel(X, roots, depths, children, feature, threshold, value):  # fmt: skip
    """:func:`_forest_depths` with the blocks spread over the cores; the same sums."""
    n = X.shape[0]
    out = np.zeros(n)
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _walk_block(X, lo, hi, roots, depths, children, feature, threshold, value, out)
    return out


@dataclass
class _Imputer:
    fill: np.ndarray

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(X), self.fill, X)


@dataclass
class CompiledForest:
    """An Isolation Forest as flat arrays; ``score`` equals ``-IsolationForest.score_samples``.
    Node ``n``'s children are ``children[2n]`` (right) and ``children[2n + 1]`` (left), a leaf being
    both its own children, and ``value`` holds each leaf's path length."""

    impute: _Imputer
    roots: np.ndarray
    depths: np.ndarray
    children: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    denominator: float

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> CompiledForest:
        from sklearn.ensemble._iforest import _average_path_length

        forest = pipeline.named_steps["model"]
        if forest._max_features != forest.n_features_in_:
            raise ValueError("compiled Isolation Forest needs max_features=1.0")
        trees = [estimator.tree_ for estimator in forest.estimators_]
        sizes = np.array([tree.node_count for tree in trees], dtype=np.int64)
        roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        offsets = np.repeat(roots, sizes)
        node = np.arange(offsets.shape[0])
        left = np.concatenate([tree.children_left for tree in trees]).astype(np.int64)
        right = np.concatenate([tree.children_right for tree in trees]).astype(np.int64)
        leaf = left == -1
        children = np.stack([np.where(leaf, node, right + offsets), np.where(leaf, node, left + offsets)], 1)
        lengths = [
            forest._decision_path_lengths[i] + forest._average_path_length_per_tree[i] - 1.0
            for i in range(len(trees))
        ]
        average = float(_average_path_length([forest._max_samples])[0])
        return cls(
            impute=_Imputer(pipeline.named_steps["impute"].statistics_.astype(np.float64)),
            roots=roots.astype(np.uint64),
            depths=np.array([tree.max_depth for tree in trees], dtype=np.int64),
            children=children.ravel().astype(np.uint32),
            feature=np.where(leaf, 0, np.concatenate([tree.feature for tree in trees])).astype(np.uint32),
            threshold=np.concatenate([tree.threshold for tree in trees]).astype(np.float64),
            value=np.concatenate(lengths).astype(np.float64),
            denominator=len(trees) * average,
        )

    def score(self, X: np.ndarray) -> np.ndarray:
        Xf = np.ascontiguousarray(self.impute(X).astype(np.float32))
        walk = _forest_depths_parallel if Xf.shape[0] >= PARALLEL_FROM else _forest_depths
        arrays = (self.children, self.feature, self.threshold, self.value)
        return self.from_depths(walk(Xf, self.roots, self.depths, *arrays))

    def from_depths(self, depths: np.ndarray) -> np.ndarray:
        """The score of rows whose path lengths, summed over the trees, are ``depths``."""
        if self.denominator == 0:
            return np.ones_like(depths)
        return np.asarray(2 ** (-(depths / self.denominator)), dtype=np.float64)


@dataclass
class CompiledLogistic:
    """Imputation, standard scaling and the linear model in numpy; also gives per-feature contributions."""

    impute: _Imputer
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> CompiledLogistic:
        scaler, model = pipeline.named_steps["scale"], pipeline.named_steps["model"]
        return cls(
            impute=_Imputer(pipeline.named_steps["impute"].statistics_.astype(np.float64)),
            mean=scaler.mean_.astype(np.float64),
            scale=scaler.scale_.astype(np.float64),
            coef=model.coef_[0].astype(np.float64),
            intercept=float(model.intercept_[0]),
        )

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Coefficient × scaled value per feature: the linear model's reasons."""
        return ((self.impute(X) - self.mean) / self.scale) * self.coef

    def score(self, X: np.ndarray) -> np.ndarray:
        return self.from_scaled((self.impute(X) - self.mean) / self.scale)

    def from_scaled(self, scaled: np.ndarray) -> np.ndarray:
        """The probability of rows already imputed and scaled."""
        return np.asarray(expit(scaled @ self.coef + self.intercept), dtype=np.float64)


@dataclass
class CompiledBooster:
    """XGBoost's trees walked by numba (:mod:`._xgb_trees`), bit for bit the booster's predictions and
    approximate contributions at a fraction of a call into XGBoost; the booster itself serves models
    the walker does not cover (categorical splits, other objectives)."""

    trees: XGBTrees | None
    booster: Any

    @classmethod
    def from_model(cls, model: Any, threads: int = 2) -> CompiledBooster:
        booster = model.get_booster().copy()
        booster.set_param({"nthread": threads})
        try:
            trees: XGBTrees | None = XGBTrees.from_booster(booster)
        except ValueError:
            trees = None
        return cls(trees, booster)

    def score(self, X: np.ndarray) -> np.ndarray:
        if self.trees is not None:
            return self.trees.predict(X)
        # The bundle's feature set was checked when it loaded; per-call name checks only cost time.
        return np.asarray(self.booster.inplace_predict(X, validate_features=False), dtype=np.float64)

    def score_and_contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`score` and :meth:`contributions` together, the trees walked once when compiled."""
        if self.trees is not None:
            return self.trees.predict_and_contributions(X)
        return self.score(X), self.contributions(X)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions as XGBoost's ``pred_contribs`` with ``approx_contribs`` (Saabas:
        each split's change in the prediction along the path), which ranks the same features as exact
        TreeSHAP on these models at a small fraction of the cost; the bias column is dropped."""
        if self.trees is not None:
            return self.trees.contributions(X)
        from xgboost import DMatrix

        contribs = self.booster.predict(
            DMatrix(X), pred_contribs=True, approx_contribs=True, validate_features=False
        )
        return np.asarray(contribs[:, :-1], dtype=np.float64)


def compile_models(bundle: ModelBundle) -> dict[str, Any]:
    """Serving forms of every model in the bundle that has a weight in the ensemble."""
    out: dict[str, Any] = {}
    for name, model in bundle.models.items():
        if not bundle.manifest.weights.get(name):
            continue
        if name == "isolation_forest":
            out[name] = CompiledForest.from_pipeline(model)
        elif name == "logistic" and hasattr(model, "named_steps") and "smote" not in model.named_steps:
            out[name] = CompiledLogistic.from_pipeline(model)
        elif name == "xgboost" and hasattr(model, "get_booster"):
            out[name] = CompiledBooster.from_model(model)
        else:
            raise ValueError(f"cannot serve model {name!r} of type {type(model).__name__}")
    return out
