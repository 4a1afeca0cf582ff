"""XGBoost's binary logistic trees walked by numba, bit for bit the booster's own answers.

Every call into XGBoost's Python wrapper costs about 0.7 ms (``inplace_predict``) or 1 ms (a
``DMatrix`` and ``pred_contribs``) before any tree is walked, which is most of a one-transaction
request. Here the trees are flattened once into arrays and walked in compiled code, reproducing
XGBoost's CPU predictor step by step: features cast to float32, a split goes left when
``value < split_condition`` and NaN follows ``default_left``, the margin starts at the base score
in margin space and adds each tree's leaf in float32 in tree order, and the probability is
XGBoost's float32 sigmoid. Contributions are XGBoost's approximate (Saabas) ones: along a row's
path each split moves its feature by the change in node mean value, node means being the leaf
values weighted by cover, all in float32 and summed per tree before being added to the row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

_BLOCK = 256
PARALLEL_FROM = 4096
"""Rows from which the trees are walked on all cores; below it threads cost more than they save."""


@njit(cache=True)
def _child(X, i, node, left, right, feature, threshold, default_left):  # fmt: skip
    v = np.float32(X[i, feature[node]])
    if v != v:
        return left[node] if default_left[node] else right[node]
    return left[node] if v < threshold[node] else right[node]


@njit(cache=True)
def _margin_block(X, roots, left, right, feature, threshold, default_left, lo, hi, out):  # fmt: skip
    for t in range(roots.shape[0]):
        for i in range(lo, hi):
            node = roots[t]
            while left[node] != -1:
                node = _child(X, i, node, left, right, feature, threshold, default_left)
            out[i] += threshold[node]


@njit(cache=True)
def _margins(X, roots, left, right, feature, threshold, default_left, out):  # fmt: skip
    """Adds every tree's leaf value to ``out`` (float32, holding the base margin), in tree order,
    one block of rows at a time so a tree's nodes stay in cache while the block walks it."""
    n = X.shape[0]
    for b in range((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _margin_block(X, roots, left, right, feature, threshold, default_left, lo, hi, out)


@njit(cache=True, parallel=True)
def _margins_parallel(X, roots, left, right, feature, threshold, default_left, out):  # fmt: skip
    """:func:`_margins` with the blocks spread over the cores; the same sums."""
    n = X.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _margin_block(X, roots, left, right, feature, threshold, default_left, lo, hi, out)


@njit(cache=True)
def _sigmoid(margin):  # fmt: skip
    """XGBoost's float32 ``Sigmoid``: ``1 / (expf(min(-x, 88.7)) + 1 + 1e-16)``."""
    out = np.empty(margin.shape[0])
    cap, one, eps = np.float32(88.7), np.float32(1.0), np.float32(1e-16)
    for i in range(margin.shape[0]):
        x = -margin[i]
        x = cap if cap < x else x
        out[i] = one / (np.exp(x) + one + eps)
    return out


@njit(cache=True)
def _logit(p):  # fmt: skip
    """XGBoost's ``ProbToMargin`` for the logistic loss, in float32."""
    p = min(max(p, np.float32(1e-6)), np.float32(1.0) - np.float32(1e-6))
    return np.log(p / (np.float32(1.0) - p))


@njit(cache=True)
def _contrib_block(X, roots, left, right, feature, threshold, default_left, mean, depth, lo, hi, out):  # fmt: skip
    tree = np.zeros(X.shape[1], np.float32)
    path = np.empty(depth + 1, np.int64)
    for t in range(roots.shape[0]):
        root = roots[t]
        if left[root] == -1:
            continue
        for i in range(lo, hi):
            node, steps, f = root, 0, 0
            value = mean[node]
            while left[node] != -1:
                f = feature[node]
                node = _child(X, i, node, left, right, feature, threshold, default_left)
                tree[f] += mean[node] - value
                value = mean[node]
                path[steps] = f
                steps += 1
            tree[f] += threshold[node] - value
            for s in range(steps):
                f = path[s]
                out[i, f] += tree[f]
                tree[f] = 0


@njit(cache=True)
def _contributions(X, roots, left, right, feature, threshold, default_left, mean, depth, out):  # fmt: skip
    """Saabas contributions as XGBoost's ``CalculateContributionsApprox`` makes them: one tree's
    float32 contributions summed along the path, then added to the row's, tree by tree."""
    n = X.shape[0]
    for b in range((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _contrib_block(X, roots, left, right, feature, threshold, default_left, mean, depth, lo, hi, out)


@njit(cache=True, parallel=True)
def _contributions_parallel(X, roots, left, right, feature, threshold, default_left, mean, depth, out):  # fmt: skip
    """:func:`_contributions` with the blocks spread over the cores; the same sums."""
    n = X.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _contrib_block(X, roots, left, right, feature, threshold, default_left, mean, depth, lo, hi, out)


def _depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    depth = np.zeros(left.shape[0], np.int64)
    inner = np.flatnonzero(left >= 0)
    while True:
        below = depth.copy()
        below[left[inner]] = depth[inner] + 1
        below[right[inner]] = depth[inner] + 1
        if np.array_equal(below, depth):
            return depth
        depth = below


def _node_means(left: np.ndarray, right: np.ndarray, leaf: np.ndarray, hess: np.ndarray) -> np.ndarray:
    """XGBoost's ``FillNodeMeanValues`` in float32, a level at a time from the deepest up:
    ``(mean(left) * cover(left) + mean(right) * cover(right)) / cover(node)``."""
    depth = _depths(left, right)
    mean = leaf.copy()
    inner = np.flatnonzero(left >= 0)
    for d in range(int(depth.max()), -1, -1):
        nodes = inner[depth[inner] == d]
        lo, ro = left[nodes], right[nodes]
        total = mean[lo] * hess[lo]
        total += mean[ro] * hess[ro]
        mean[nodes] = total / hess[nodes]
    return mean


@dataclass
class XGBTrees:
    """A binary logistic XGBoost booster as flat node arrays (children as absolute node indices,
    -1 at leaves; ``threshold`` holds the leaf value at leaves, as XGBoost's model does)."""

    n_features: int
    base_margin: np.float32
    roots: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    mean: np.ndarray
    depth: int

    @classmethod
    def from_booster(cls, booster: Any) -> XGBTrees:
        """Flatten a fitted ``Booster`` (or an ``XGBClassifier``) with numeric splits only."""
        booster = booster.get_booster() if hasattr(booster, "get_booster") else booster
        learner = json.loads(booster.save_raw("json"))["learner"]
        if learner["objective"]["name"] not in ("binary:logistic", "reg:logistic"):
            raise ValueError(f"compiled XGBoost needs a logistic objective, not {learner['objective']['name']}")
        params, gbm = learner["learner_model_param"], learner["gradient_booster"]
        if gbm["name"] != "gbtree" or int(params.get("num_target", 1)) != 1 or int(params["num_class"]) > 1:
            raise ValueError("compiled XGBoost needs a single-output gbtree booster")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("left", "right", "feature", "cond", "dl", "hess")}
        roots, offset = [], 0
        for tree in gbm["model"]["trees"]:
            if any(tree["split_type"]) or int(tree["tree_param"].get("size_leaf_vector", 1)) > 1:
                raise ValueError("compiled XGBoost supports numeric splits and scalar leaves only")
            left, right = np.array(tree["left_children"]), np.array(tree["right_children"])
            roots.append(offset)
            parts["left"].append(np.where(left >= 0, left + offset, -1))
            parts["right"].append(np.where(right >= 0, right + offset, -1))
            parts["feature"].append(np.array(tree["split_indices"]))
            parts["cond"].append(np.array(tree["split_conditions"], dtype=np.float32))
            parts["dl"].append(np.array(tree["default_left"], dtype=np.bool_))
            parts["hess"].append(np.array(tree["sum_hessian"], dtype=np.float32))
            offset += left.shape[0]
        flat = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
        left, right = flat["left"].astype(np.int64), flat["right"].astype(np.int64)
        cond, hess = flat["cond"].astype(np.float32), flat["hess"].astype(np.float32)
        base = np.float32(params["base_score"].strip("[]"))
        return cls(
            n_features=int(params["num_feature"]),
            base_margin=np.float32(_logit(base)),
            roots=np.array(roots, dtype=np.int64),
            left=left,
            right=right,
            feature=flat["feature"].astype(np.int64),
            threshold=cond,
            default_left=flat["dl"].astype(np.bool_),
            mean=_node_means(left, right, cond, hess) if left.size else cond,
            depth=int(_depths(left, right).max()) if left.size else 0,
        )

    def _rows(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {X.shape}")
        return X

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds) in float32, equal to ``inplace_predict(X, predict_type="margin")``."""
        X = self._rows(X)
        out = np.full(X.shape[0], self.base_margin, dtype=np.float32)
        walk = _margins_parallel if X.shape[0] >= PARALLEL_FROM else _margins
        walk(X, self.roots, self.left, self.right, self.feature, self.threshold, self.default_left, out)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of the positive class, equal to ``booster.inplace_predict(X)`` as float64."""
        return np.asarray(_sigmoid(self.margin(X)), dtype=np.float64)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature approximate contributions, equal to ``booster.predict(DMatrix(X),
        pred_contribs=True, approx_contribs=True)[:, :-1]`` as float64 (the bias column dropped)."""
        X = self._rows(X)
        out = np.zeros(X.shape, dtype=np.float32)
        walk = _contributions_parallel if X.shape[0] >= PARALLEL_FROM else _contributions
        arrays = (self.roots, self.left, self.right, self.feature, self.threshold, self.default_left)
        walk(X, *arrays, self.mean, self.depth, out)
        return out.astype(np.float64)
