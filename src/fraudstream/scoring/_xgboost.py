"""XGBoost's binary logistic trees as packed nodes (:mod:`._trees`), and what a walk of them adds up.

Every call into XGBoost's Python wrapper (``inplace_predict``, or a ``DMatrix`` and
``pred_contribs``) has a fixed cost before any tree is walked, most of a one-transaction request,
and on large batches its predictor is no faster than a compiled walk. Here the trees are walked by
the models step's own kernel, reproducing XGBoost's CPU predictor step by step: features cast to
float32, a split goes right when ``value >= split_condition`` and NaN (the only missing value)
follows ``default_left``, the margin starts at the base score in margin space and adds each tree's
leaf in float32 in tree order, and the probability is XGBoost's float32 sigmoid.

Contributions are XGBoost's approximate (Saabas) ones: along a row's path each split moves its feature
by the change in node mean value, node means being leaf values weighted by cover, all in float32 and
summed per tree before being added to the row. A tree's sums depend only on the leaf a row reaches,
so they are tabulated per leaf once (:func:`._xgb_tables.leaf_contributions`): a row's contributions
cost its walk plus a few additions per tree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from fraudstream.scoring._trees import LANES, pack, walk
from fraudstream.scoring._xgb_tables import leaf_contributions, node_depths, node_means


@njit(cache=True)
def _logit(p):  # fmt: skip
    """XGBoost's ``ProbToMargin`` for the logistic loss, ``-logf(1 / p - 1)`` in float32 (not
    ``logf(p / (1 - p))``, which differs in the last bit for most ``p``)."""
    one = np.float32(1.0)
    p = min(max(p, np.float32(1e-6)), one - np.float32(1e-6))
    return -np.log(one / p - one)


@njit(cache=True, inline="always")
def sigmoid(margin):  # fmt: skip
    """XGBoost's float32 ``Sigmoid``: ``1 / (expf(min(-x, 88.7)) + 1 + 1e-16)``."""
    cap, one, eps = np.float32(88.7), np.float32(1.0), np.float32(1e-16)
    x = -margin
    x = cap if cap < x else x
    return one / (np.exp(x) + one + eps)


@njit(cache=True, inline="always")
def add_margins(rows, count, trees, nodes, margin, node, row, start, features, sums, out, explain):
    """Adds each tree's leaf value to ``margin[:count]`` (float32, holding the base margin) for the
    ``count`` rows of the block ``rows``, in tree order; with ``explain``, also the tabulated sums of
    the same leaf to the row's contributions in ``out`` (float32, zeros to begin with), as XGBoost's
    ``CalculateContributionsApprox`` adds each tree's buffer. Each leaf is found once for both."""
    floats = nodes.view(np.float32)
    total = trees.shape[0] * count
    for first in range(0, total, LANES):
        size = min(LANES, total - first)
        walk(rows, count, first, size, trees[:, 0], trees[:, 1], nodes, floats, True, node, row)
        for k in range(size):
            leaf = node[k]
            margin[row[k]] += floats[np.uint64(4) * leaf + np.uint64(3)]
            if explain:
                for j in range(start[leaf], start[leaf + np.uint64(1)]):
                    out[row[k], features[j]] += sums[j]


@dataclass(frozen=True)
class XGBoostTrees:
    """A binary logistic XGBoost booster as packed nodes (the leaf values in the threshold word, as in
    XGBoost's model), each tree's root and depth as ``trees`` (trees × 2), and each leaf's
    contributions: leaf ``n``'s features and sums are ``leaf_features[leaf_start[n]:leaf_start[n +
    1]]`` and the same slice of ``leaf_sums``."""

    n_features: int
    base_margin: np.float32
    trees: np.ndarray
    nodes: np.ndarray
    leaf_start: np.ndarray
    leaf_features: np.ndarray
    leaf_sums: np.ndarray

    @classmethod
    def from_booster(cls, booster: Any) -> XGBoostTrees:
        """Flatten a fitted ``Booster`` (or ``XGBClassifier``) with numeric splits and one output;
        ``ValueError`` for any other (the booster itself serves those)."""
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
        keys = ("right_children", "split_conditions", "sum_hessian", "split_indices", "default_left")
        if any(len(t[key]) != size for t, size in zip(trees, sizes, strict=True) for key in keys):
            raise ValueError("compiled XGBoost needs one entry per node in every node array")

        def flat(key: str, dtype: Any) -> np.ndarray:
            return np.concatenate([np.asarray(t[key], dtype=dtype) for t in trees])

        left, right = flat("left_children", np.int64), flat("right_children", np.int64)
        leaf, node = left < 0, np.arange(left.shape[0])
        # the walks index their tables unchecked, and the tables follow parents up: every child must
        # be in its tree and after its parent (as XGBoost numbers them), every split feature in range
        size, local = np.repeat(sizes, sizes), node - np.repeat(roots, sizes)
        n_features = int(params["num_feature"])
        split = flat("split_indices", np.int64)
        children_out = (left <= local) | (left >= size) | (right <= local) | (right >= size)
        if np.any(~leaf & (children_out | (split < 0) | (split >= n_features))):
            raise ValueError(
                "compiled XGBoost needs children after their parents and split features in range"
            )
        left, right = np.where(leaf, -1, left + np.repeat(roots, sizes)), right + np.repeat(roots, sizes)
        depth = node_depths(left, right)
        threshold, hess = flat("split_conditions", np.float32), flat("sum_hessian", np.float32)
        left, right = np.where(leaf, node, left), np.where(leaf, node, right)
        feature = np.where(leaf, 0, split)
        mean = node_means(np.where(leaf, -1, left), right, threshold, hess, depth)
        children = np.stack([left, right], axis=1).ravel().astype(np.uint32)
        start, features, sums = leaf_contributions(children, feature.astype(np.uint32), mean)
        return cls(
            n_features=n_features,
            base_margin=np.float32(_logit(np.float32(params["base_score"].strip("[]")))),
            trees=np.stack([roots, np.maximum.reduceat(depth, roots)], axis=1).astype(np.int64),
            nodes=pack(feature, ~flat("default_left", np.bool_) & ~leaf, left, right, threshold),
            leaf_start=start,
            leaf_features=features,
            leaf_sums=sums,
        )
