"""Fast serving forms of the bundle's models, giving the same scores as the fitted estimators.

A single transaction must be scored in well under a millisecond. scikit-learn's Isolation Forest
walks its trees through Python and joblib (about 20 ms for one row), and its pipelines add
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

from fraudstream.scoring._xgb_trees import XGBTrees
from fraudstream.training.bundle import ModelBundle

_BLOCK = 256
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
        for j in range(k):
            v = values[i, j]
            v = -np.inf if v != v else v
            p = j
            while p > 0 and v > best[p - 1]:
                best[p] = best[p - 1]
                out[i, p] = out[i, p - 1]
                p -= 1
            best[p] = v
            out[i, p] = j
        for j in range(k, m):
            v = values[i, j]
            if not v > best[k - 1]:
                continue
            p = k - 1
            while p > 0 and v > best[p - 1]:
                best[p] = best[p - 1]
                out[i, p] = out[i, p - 1]
                p -= 1
            best[p] = v
            out[i, p] = j
    return out


@njit(cache=True)
def _walk_block(X, roots, left, right, feature, threshold, value, lo, hi, depths):  # fmt: skip
    for t in range(roots.shape[0]):
        root = roots[t]
        for i in range(lo, hi):
            node = root
            while left[node] != -1:
                go_left = X[i, feature[node]] <= threshold[node]
                node = root + (left[node] if go_left else right[node])
            depths[i] += value[node]


@njit(cache=True)
def _forest_depths(X, roots, left, right, feature, threshold, value):  # fmt: skip
    """Sum of leaf values over the trees, per row, in blocks of rows: each tree is walked for a whole
    block while its nodes are in cache. A row's sum adds the trees in order whatever the blocking."""
    n = X.shape[0]
    depths = np.zeros(n)
    for b in range((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _walk_block(X, roots, left, right, feature, threshold, value, lo, hi, depths)
    return depths


@njit(cache=True, parallel=True)
def _forest_depths_parallel(X, roots, left, right, feature, threshold, value):  # fmt: skip
    """:func:`_forest_depths` with the blocks spread over the cores; the same sums."""
    n = X.shape[0]
    depths = np.zeros(n)
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _walk_block(X, roots, left, right, feature, threshold, value, lo, hi, depths)
    return depths


@dataclass
class _Imputer:
    fill: np.ndarray

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(X), self.fill, X)


@dataclass
class CompiledForest:
    """An Isolation Forest as flat arrays; ``score`` equals ``-IsolationForest.score_samples``."""

    impute: _Imputer
    roots: np.ndarray
    left: np.ndarray
    right: np.ndarray
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
        parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("left", "right", "feature", "threshold", "value")
        }
        roots, offset = [], 0
        for i, estimator in enumerate(forest.estimators_):
            tree = estimator.tree_
            roots.append(offset)
            parts["left"].append(tree.children_left)
            parts["right"].append(tree.children_right)
            parts["feature"].append(np.maximum(tree.feature, 0))
            parts["threshold"].append(tree.threshold)
            lengths = forest._decision_path_lengths[i] + forest._average_path_length_per_tree[i] - 1.0
            parts["value"].append(lengths)
            offset += tree.node_count
        flat = {k: np.concatenate(v) for k, v in parts.items()}
        average = float(_average_path_length([forest._max_samples])[0])
        return cls(
            impute=_Imputer(pipeline.named_steps["impute"].statistics_.astype(np.float64)),
            roots=np.array(roots, dtype=np.int64),
            left=flat["left"].astype(np.int64),
            right=flat["right"].astype(np.int64),
            feature=flat["feature"].astype(np.int64),
            threshold=flat["threshold"].astype(np.float64),
            value=flat["value"].astype(np.float64),
            denominator=len(forest.estimators_) * average,
        )

    def score(self, X: np.ndarray) -> np.ndarray:
        Xf = np.ascontiguousarray(self.impute(X).astype(np.float32))
        walk = _forest_depths_parallel if Xf.shape[0] >= PARALLEL_FROM else _forest_depths
        depths = walk(Xf, self.roots, self.left, self.right, self.feature, self.threshold, self.value)
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
        z = ((self.impute(X) - self.mean) / self.scale) @ self.coef + self.intercept
        return np.asarray(expit(z), dtype=np.float64)


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
