"""Tree nodes packed for a few rows: one 16-byte record a node, so a step down a tree reads one line.

The batch path's node arrays (children, feature, threshold, default direction) keep a node's fields
in four places. That suits thousands of rows, which keep the trees in the caches; the API walks one
row a few milliseconds after the last, when the trees have left the caches, and each level of each
tree then waited on up to four memory reads (cold, a row cost several times what it costs warm).

A packed node is four 32-bit words, read through a ``uint32`` and a ``float32`` view of one buffer:
the split feature (for XGBoost with the default-right flag in its top bit), the left and the right
child (a leaf being both its own children) and the split threshold as float32. The walks go left and
right exactly as the batch path's do: XGBoost splits are float32 already (at a leaf the threshold word
holds the leaf value, as in XGBoost's model), and a forest's float64 threshold ``t`` becomes the
largest float32 not above it, which sends every float32 value the same way, since a float32 ``x`` is
at most ``t`` exactly when it is at most that float32. Leaves' sums are added in tree order, as the
batch path adds them, so the scores are the same bit for bit (tests/unit/test_scoring_small.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fraudstream.scoring._xgb_trees import XGBTrees, block_rows

_NAN_RIGHT = np.uint32(1 << 31)
_FEATURE = np.uint32((1 << 31) - 1)


def _words(feature: np.ndarray, left: np.ndarray, right: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Nodes as rows of four uint32 words; the fourth is the float32 ``threshold``'s bits."""
    words = np.empty((feature.shape[0], 4), np.uint32)
    words[:, 0], words[:, 1], words[:, 2] = feature, left, right
    words[:, 3] = np.ascontiguousarray(threshold, dtype=np.float32).view(np.uint32)
    return words


def float32_at_most(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 at most each float64 ``threshold``: ``x <= t`` ⇔ ``x <= float32_at_most(t)``
    for every float32 ``x``."""
    with np.errstate(over="ignore"):  # beyond float32's range: ±inf, then the largest float32 below
        near = threshold.astype(np.float32)
    above = near.astype(np.float64) > threshold
    return np.where(above, np.nextafter(near, np.float32(-np.inf)), near)


def pack_booster(trees: XGBTrees) -> np.ndarray:
    """XGBoost's nodes packed; :attr:`XGBTrees.children` holds left then right."""
    pairs = trees.children.reshape(-1, 2)
    feature = trees.feature | np.where(trees.nan_right, _NAN_RIGHT, np.uint32(0))
    return _words(feature, pairs[:, 0], pairs[:, 1], trees.threshold)


def pack_forest(children: np.ndarray, feature: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """A compiled Isolation Forest's nodes packed; its ``children`` hold right then left."""
    pairs = children.reshape(-1, 2)
    return _words(feature, pairs[:, 1], pairs[:, 0], float32_at_most(threshold))


@njit(cache=True, inline="always")
def _leaf(rows, r, node, words, floats, xgboost):  # fmt: skip
    """The leaf row ``r`` reaches from ``node``. XGBoost's split sends a value right when it is at
    least the split, and NaN its default way; scikit-learn's sends it left when at most the threshold
    (NaN, never at most anything, goes right). A branch a level, with an exit at the leaf: for a lone
    row the processor's guesses overlap the steps."""
    while True:
        left = np.uint64(words[node, 1])
        if left == node:
            return node
        split = words[node, 0]
        v = rows[r, split & _FEATURE]
        if xgboost:
            right = (split & _NAN_RIGHT) != 0 if v != v else v >= floats[node, 3]
        else:
            right = not v <= floats[node, 3]
        node = np.uint64(words[node, 2]) if right else left


@njit(cache=True)
def booster_packed(X, base, roots, words, floats, start, features, sums, k):  # fmt: skip
    """Float32 margins of the rows, and with ``k`` > 0 their contributions as float32 sums: the
    batch path's ``_contribs``, each tree's leaves added in tree order."""
    n, m = X.shape
    rows = block_rows(X, 0, n)
    margin = np.full(n, base, np.float32)
    block = np.zeros((n if k else 0, m), np.float32)
    for t in range(roots.shape[0]):
        for r in range(n):
            leaf = _leaf(rows, r, roots[t], words, floats, True)
            margin[r] += floats[leaf, 3]
            if k:
                for j in range(start[leaf], start[leaf + np.uint64(1)]):
                    block[r, features[j]] += sums[j]
    return margin, block


@njit(cache=True)
def forest_packed(X, fill, roots, words, floats, value):  # fmt: skip
    """Path lengths of the rows summed over the trees in order, imputation included: the batch
    path's ``_forest_depths``."""
    n, m = X.shape
    rows = np.empty((n, m), np.float32)
    for i in range(n):
        for j in range(m):
            x = X[i, j]
            rows[i, j] = fill[j] if x != x else x
    out = np.zeros(n)
    for t in range(roots.shape[0]):
        for r in range(n):
            out[r] += value[_leaf(rows, r, roots[t], words, floats, False)]
    return out
