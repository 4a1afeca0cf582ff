"""scikit-learn's Isolation Forest (behind its imputer) as packed nodes (:mod:`._trees`), and what a
walk of them adds up.

scikit-learn walks its trees through Python and joblib, far over a transaction's budget, and its
pipelines validate their input on every call. Here the imputer's medians replace missing values as
a block of rows is copied to float32 (the forest's own input type), the trees are walked by the
models step's kernel, and each row's path lengths are summed over the trees in order, in float64, as
``IsolationForest.score_samples`` sums them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from fraudstream.scoring._trees import LANES, float32_above, pack, walk


@njit(cache=True, inline="always")
def add_path_lengths(rows, count, trees, nodes, value, out, node, row):  # fmt: skip
    """Adds each tree's path length (``value`` at the leaf reached) to ``out[:count]`` for the
    ``count`` rows of the block ``rows`` (imputed: no value is missing), in tree order."""
    floats = nodes.view(np.float32)
    total = trees.shape[0] * count
    for first in range(0, total, LANES):
        size = min(LANES, total - first)
        walk(rows, count, first, size, trees[:, 0], trees[:, 1], nodes, floats, False, node, row)
        for k in range(size):
            out[row[k]] += value[node[k]]


@njit(cache=True, inline="always")
def anomaly_score(path_lengths, denominator):  # fmt: skip
    """``-IsolationForest.score_samples`` of a row whose path lengths sum to ``path_lengths``:
    ``2 ** -(path_lengths / denominator)``, 1 when there is no denominator. The power may be computed
    as ``exp2``, so the last bit can differ from numpy's."""
    if denominator == 0:
        return 1.0
    return 2.0 ** (-(path_lengths / denominator))


@dataclass(frozen=True)
class ForestTrees:
    """An Isolation Forest as packed nodes, each tree's root and depth as ``trees`` (trees × 2), each
    leaf's path length (its depth plus the average path length of the samples it holds) as
    ``value``, the imputer's ``fill`` per feature, and the score's ``denominator``."""

    trees: np.ndarray
    nodes: np.ndarray
    value: np.ndarray
    fill: np.ndarray
    denominator: float

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> ForestTrees:
        """From a fitted ``Pipeline`` of a ``SimpleImputer`` (``impute``) and an ``IsolationForest``
        (``model``) that saw every feature in every tree."""
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
        lengths = [
            forest._decision_path_lengths[i] + forest._average_path_length_per_tree[i] - 1.0
            for i in range(len(trees))
        ]
        threshold = np.concatenate([tree.threshold for tree in trees]).astype(np.float64)
        return cls(
            trees=np.stack([roots, [tree.max_depth for tree in trees]], axis=1).astype(np.int64),
            nodes=pack(
                np.where(leaf, 0, np.concatenate([tree.feature for tree in trees])),
                np.zeros(node.shape[0], np.bool_),
                np.where(leaf, node, left + offsets),
                np.where(leaf, node, right + offsets),
                np.where(leaf, np.float32(0), float32_above(threshold)),
            ),
            value=np.concatenate(lengths).astype(np.float64),
            fill=pipeline.named_steps["impute"].statistics_.astype(np.float64),
            denominator=len(trees) * float(_average_path_length([forest._max_samples])[0]),
        )


@njit(cache=True, inline="always")
def imputed_float32(X, lo, count, fill, rows):  # fmt: skip
    """Rows ``lo`` to ``lo + count`` of ``X``, a missing value replaced by ``fill``, into the first rows
    of the float32 block ``rows``: the imputer's output as the forest reads it."""
    for i in range(count):
        for j in range(X.shape[1]):
            x = X[lo + i, j]
            rows[i, j] = fill[j] if x != x else x
