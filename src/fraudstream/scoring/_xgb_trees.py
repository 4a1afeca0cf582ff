"""XGBoost's binary logistic trees walked by numba, bit for bit the booster's own answers.

Every call into XGBoost's Python wrapper has a fixed cost (``inplace_predict``, or a ``DMatrix`` and
``pred_contribs``) before any tree is walked, which would be most of a one-transaction request, and
on large batches its predictor is no faster than a compiled walk. Here the trees are flattened
once into arrays and walked by numba, reproducing XGBoost's CPU predictor step by step: features
cast to float32, a split goes left when ``value < split_condition`` and NaN (the only missing
value) follows ``default_left``, the margin starts at the base score in margin space and adds
each tree's leaf in float32 in tree order, and the probability is XGBoost's float32 sigmoid.
Contributions are XGBoost's approximate (Saabas) ones: along a row's path each split moves its
feature by the change in node mean value, node means being leaf values weighted by cover, all in
float32 and summed per tree before being added to the row. A tree's sums depend only on the leaf a
row reaches, so they are tabulated per leaf once: a row's contributions cost the margin's walk plus a
few additions per tree instead of a second walk per row and tree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit, prange

from fraudstream.scoring._xgb_tables import leaf_contributions, node_depths, node_means

_BLOCK = 32
"""Rows walked through each tree together: as float32 they stay in the first-level cache."""
_GROUP = 16
"""Rows of a block stepped down a tree side by side, so their independent walks overlap."""
PARALLEL_FROM = 4096
"""Rows from which the trees are walked on all cores; below it threads cost more than they save."""


@njit(cache=True)
def block_rows(X, lo, hi):  # fmt: skip
    """Rows ``lo`` to ``hi`` of ``X`` as a contiguous float32 block (the forest's walk uses it too)."""
    rows = np.empty((hi - lo, X.shape[1]), np.float32)
    for i in range(lo, hi):
        for j in range(X.shape[1]):
            rows[i - lo, j] = X[i, j]
    return rows


@njit(cache=True)
def _next(rows, r, node, children, feature, threshold, nan_right):  # fmt: skip
    """XGBoost's ``GetNextNode``: NaN follows the default branch, any other value goes left when
    ``value < split`` in float32. Leaves are their own children, so walking every row down a tree
    for the tree's depth needs no branch that the processor could mispredict; unsigned indices
    spare numba's negative-index checks, which halves the time of a walk."""
    v = rows[r, feature[node]]
    right = np.uint64(v >= threshold[node]) | (np.uint64(v != v) & np.uint64(nan_right[node]))
    return np.uint64(children[np.uint64(2) * node + right])


@njit(cache=True)
def _walk(rows, g, size, root, steps, children, feature, threshold, nan_right, nodes):  # fmt: skip
    """Steps rows ``g`` to ``g + size`` of the block down one tree side by side, so their independent
    walks overlap; ``nodes[:size]`` ends at their leaves."""
    nodes[:size] = root
    for _ in range(steps):
        for k in range(size):
            nodes[k] = _next(rows, np.uint64(g + k), nodes[k], children, feature, threshold, nan_right)


@njit(cache=True)
def _margin_block(X, lo, hi, roots, depths, children, feature, threshold, nan_right, out):  # fmt: skip
    rows = block_rows(X, lo, hi)
    nodes = np.empty(_GROUP, np.uint64)
    for t in range(roots.shape[0]):
        for g in range(0, hi - lo, _GROUP):
            size = min(_GROUP, hi - lo - g)
            _walk(rows, g, size, roots[t], depths[t], children, feature, threshold, nan_right, nodes)
            for k in range(size):
                out[lo + g + k] += threshold[nodes[k]]


@njit(cache=True)
def _margins(X, roots, depths, children, feature, threshold, nan_right, out):  # fmt: skip
    """Adds every tree's leaf value to ``out`` (float32, holding the base margin) in tree order,
    a block of rows at a time."""
    n = X.shape[0]
    for b in range((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _margin_block(X, lo, hi, roots, depths, children, feature, threshold, nan_right, out)


@njit(cache=True, parallel=True)
def _margins_parallel(X, roots, depths, children, feature, threshold, nan_right, out):  # fmt: skip
    """:func:`_margins` with the blocks spread over the cores; the same sums."""
    n = X.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        _margin_block(X, lo, hi, roots, depths, children, feature, threshold, nan_right, out)


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
    """XGBoost's ``ProbToMargin`` for the logistic loss, ``-logf(1 / p - 1)`` in float32 (not
    ``logf(p / (1 - p))``, which differs in the last bit for most ``p``)."""
    one = np.float32(1.0)
    p = min(max(p, np.float32(1e-6)), one - np.float32(1e-6))
    return -np.log(one / p - one)


@njit(cache=True)
def _contrib_block(
    X, lo, hi, roots, depths, children, feature, threshold, nan_right, start, features, sums, out, margin
):
    rows = block_rows(X, lo, hi)
    block = np.zeros((hi - lo, X.shape[1]), np.float32)
    nodes = np.empty(_GROUP, np.uint64)
    for t in range(roots.shape[0]):
        for g in range(0, hi - lo, _GROUP):
            size = min(_GROUP, hi - lo - g)
            _walk(rows, g, size, roots[t], depths[t], children, feature, threshold, nan_right, nodes)
            for k in range(size):
                leaf = nodes[k]
                margin[lo + g + k] += threshold[leaf]
                for j in range(start[leaf], start[leaf + np.uint64(1)]):
                    block[g + k, features[j]] += sums[j]
    for i in range(hi - lo):
        for j in range(X.shape[1]):
            out[lo + i, j] = block[i, j]


@njit(cache=True)
def _contribs(X, roots, depths, children, feature, threshold, nan_right, start, features, sums, out, margin):
    """Saabas contributions as XGBoost's ``CalculateContributionsApprox`` makes them: each row walks
    each tree to its leaf as :func:`_margins` does, then adds the leaf's per-feature sums (see
    :func:`leaf_contributions`) to its contributions, tree by tree. The walk also adds each leaf's
    value to ``margin`` as :func:`_margins` does, so scoring and explaining walk the trees once."""
    n = X.shape[0]
    for b in range((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        tables = (start, features, sums)
        _contrib_block(
            X, lo, hi, roots, depths, children, feature, threshold, nan_right, *tables, out, margin
        )


@njit(cache=True, parallel=True)
def _contribs_parallel(X, roots, depths, children, feature, threshold, nan_right, start, features, sums, out, margin):  # noqa: E501  # fmt: skip
    """:func:`_contribs` with the blocks spread over the cores; the same sums."""
    n = X.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        tables = (start, features, sums)
        _contrib_block(
            X, lo, hi, roots, depths, children, feature, threshold, nan_right, *tables, out, margin
        )


@dataclass
class XGBTrees:
    """A binary logistic XGBoost booster as flat node arrays: node ``n``'s children are
    ``children[2n]`` (left) and ``children[2n + 1]`` (right), a leaf being both its own children;
    ``threshold`` holds the leaf value at leaves, as XGBoost's model does; ``mean`` is each node's mean
    value, from which each leaf's contributions are tabulated (see :func:`leaf_contributions`)."""

    n_features: int
    base_margin: np.float32
    roots: np.ndarray
    depths: np.ndarray
    children: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    nan_right: np.ndarray
    mean: np.ndarray
    leaf_start: np.ndarray = field(init=False, repr=False)
    leaf_features: np.ndarray = field(init=False, repr=False)
    leaf_sums: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.leaf_start, self.leaf_features, self.leaf_sums = leaf_contributions(
            self.children, self.feature, self.mean
        )

    @classmethod
    def from_booster(cls, booster: Any) -> XGBTrees:
        """Flatten a fitted ``Booster`` (or ``XGBClassifier``) with numeric splits and one output."""
        booster = booster.get_booster() if hasattr(booster, "get_booster") else booster
        learner = json.loads(booster.save_raw("json"))["learner"]
        objective, params = learner["objective"]["name"], learner["learner_model_param"]
        if objective not in ("binary:logistic", "reg:logistic"):
            raise ValueError(f"compiled XGBoost needs a logistic objective, not {objective}")
        gbm = learner["gradient_booster"]
        if gbm["name"] != "gbtree" or int(params["num_target"]) != 1 or int(params["num_class"]) > 1:
            raise ValueError("compiled XGBoost needs a single-output gbtree booster")
        trees = gbm["model"]["trees"]
        if not trees or any(any(t["split_type"]) for t in trees):
            raise ValueError("compiled XGBoost needs at least one tree and numeric splits only")
        sizes = np.array([len(t["left_children"]) for t in trees])
        roots = np.concatenate([[0], np.cumsum(sizes)[:-1]])

        def flat(key: str, dtype: Any) -> np.ndarray:
            return np.concatenate([np.asarray(t[key], dtype=dtype) for t in trees])

        left, right = flat("left_children", np.int64), flat("right_children", np.int64)
        leaf, node = left < 0, np.arange(left.shape[0])
        left, right = np.where(leaf, -1, left + np.repeat(roots, sizes)), right + np.repeat(roots, sizes)
        depth = node_depths(left, right)
        threshold, hess = flat("split_conditions", np.float32), flat("sum_hessian", np.float32)
        children = np.stack([np.where(leaf, node, left), np.where(leaf, node, right)], axis=1)
        return cls(
            n_features=int(params["num_feature"]),
            base_margin=np.float32(_logit(np.float32(params["base_score"].strip("[]")))),
            roots=roots.astype(np.uint64),
            depths=np.maximum.reduceat(depth, roots),
            children=children.ravel().astype(np.uint32),
            feature=np.where(leaf, 0, flat("split_indices", np.int64)).astype(np.uint32),
            threshold=threshold,
            nan_right=~flat("default_left", np.bool_) & ~leaf,
            mean=node_means(left, right, threshold, hess, depth),
        )

    def _rows(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {X.shape}")
        return X

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds in float32, equal to ``booster.inplace_predict(X, predict_type="margin")``."""
        X = self._rows(X)
        out = np.full(X.shape[0], self.base_margin, dtype=np.float32)
        walk = _margins_parallel if X.shape[0] >= PARALLEL_FROM else _margins
        walk(X, self.roots, self.depths, self.children, self.feature, self.threshold, self.nan_right, out)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of the positive class, equal to ``booster.inplace_predict(X)`` as float64."""
        return np.asarray(_sigmoid(self.margin(X)), dtype=np.float64)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature approximate contributions, equal to ``booster.predict(DMatrix(X),
        pred_contribs=True, approx_contribs=True)[:, :-1]`` as float64 (the bias column dropped)."""
        return self.predict_and_contributions(X)[1]

    def predict_and_contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` and :meth:`contributions` from one walk of the trees: the same values."""
        X = self._rows(X)
        out = np.empty(X.shape, dtype=np.float64)
        margin = np.full(X.shape[0], self.base_margin, dtype=np.float32)
        walk = _contribs_parallel if X.shape[0] >= PARALLEL_FROM else _contribs
        arrays = (self.children, self.feature, self.threshold, self.nan_right)
        tables = (self.leaf_start, self.leaf_features, self.leaf_sums)
        walk(X, self.roots, self.depths, *arrays, *tables, out, margin)
        return np.asarray(_sigmoid(margin), dtype=np.float64), out
