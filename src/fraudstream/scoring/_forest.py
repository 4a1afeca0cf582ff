"""scikit-learn's Isolation Forest (behind its imputer) as packed nodes (:mod:`._trees`), built from
the bundle's :class:`~fraudstream.models.stored.ForestParams`, and what a walk of them adds up.

scikit-learn walks its trees through Python and joblib, far over a transaction's budget, and its
pipelines validate their input on every call. Here the imputer's medians replace missing values as
a block of rows is copied to float32 (the forest's own input type), the trees are walked by the
models step's kernel, and each row's path lengths are summed over the trees in order, in float64, as
``IsolationForest.score_samples`` sums them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from fraudstream.models.stored import ForestParams
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
    def from_params(cls, stored: ForestParams) -> ForestTrees:
        """From a stored forest (whose indexes were checked when it was read)."""
        leaf = stored.left == -1
        node = np.arange(stored.left.shape[0])
        return cls(
            trees=np.stack([stored.roots, stored.depths], axis=1).astype(np.int64),
            nodes=pack(
                np.where(leaf, 0, stored.feature),
                np.zeros(node.shape[0], np.bool_),
                np.where(leaf, node, stored.left),
                np.where(leaf, node, stored.right),
                np.where(leaf, np.float32(0), float32_above(stored.threshold)),
            ),
            value=np.ascontiguousarray(stored.value, dtype=np.float64),
            fill=np.ascontiguousarray(stored.fill, dtype=np.float64),
            denominator=float(stored.denominator),
        )


@njit(cache=True, inline="always")
def imputed_float32(X, lo, count, fill, rows):  # fmt: skip
    """Rows ``lo`` to ``lo + count`` of ``X``, a missing value replaced by ``fill``, into the first rows
    of the float32 block ``rows``: the imputer's output as the forest reads it."""
    for i in range(count):
        for j in range(X.shape[1]):
            x = X[lo + i, j]
            rows[i, j] = fill[j] if x != x else x
