"""Decision trees as packed nodes, and the one walk every tree model of the bundle takes.

A node is four 32-bit words, one 16-byte record, so a step down a tree reads one cache line: the
split feature, with the default-right flag (where a missing value goes) in its top bit; the left
child; the right child; and the split threshold as float32. A leaf is both its own children, so
stepping a walk that has reached its leaf leaves it there, and the threshold word of a leaf is free
for the model's leaf value.

A value goes right when it is at least the threshold, which is XGBoost's own rule (float32 values
against float32 splits), and a missing one (NaN) follows the default flag. A scikit-learn split (left
when the value, as float32, is at most a float64 threshold ``t``) becomes this rule with the float32
just above the largest float32 at most ``t`` (:func:`float32_above`): the two send every float32 the
same way.

The walk steps :data:`LANES` walks side by side, each a (tree, row) pair of a block of rows, tree by
tree: many rows of one tree in a large batch, many trees of one row for a single transaction. Either
way the walks are independent, so their memory reads overlap instead of waiting on each other, which
is what a tree walk spends its time on when the trees are out of the caches (a transaction arriving
a few milliseconds after the last). Every step is the same branchless update, so there is no branch
for the processor to mispredict.
"""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK = 32
"""Rows taken together: their float32 copy stays in the first-level cache while every tree is walked."""
LANES = 32
"""Walks stepped side by side."""

NAN_RIGHT = np.uint32(1 << 31)
"""The flag, in a node's feature word, that sends a missing value right."""
FEATURE = np.uint32((1 << 31) - 1)


def pack(
    feature: np.ndarray, nan_right: np.ndarray, left: np.ndarray, right: np.ndarray, threshold: np.ndarray
) -> np.ndarray:
    """Nodes as a flat array of four uint32 words each (see the module's notes); ``threshold`` is
    float32, and at a leaf (``left`` and ``right`` both the node itself) the leaf's value."""
    words = np.empty((feature.shape[0], 4), np.uint32)
    words[:, 0] = feature.astype(np.uint32) | np.where(nan_right, NAN_RIGHT, np.uint32(0))
    words[:, 1], words[:, 2] = left, right
    words[:, 3] = np.ascontiguousarray(threshold, dtype=np.float32).view(np.uint32)
    return words.ravel()


def float32_above(threshold: np.ndarray) -> np.ndarray:
    """For each float64 ``t``, the float32 ``u`` just above the largest float32 at most ``t``: for every
    float32 ``x``, ``x <= t`` exactly when ``not x >= u``, so scikit-learn's split becomes XGBoost's."""
    with np.errstate(over="ignore"):  # beyond float32's range, ±inf is the float32 on either side
        near = threshold.astype(np.float32)
        below = np.where(near.astype(np.float64) > threshold, np.nextafter(near, np.float32(-np.inf)), near)
        return np.nextafter(below, np.float32(np.inf))


@njit(cache=True, inline="always")
def _step(rows, r, node, nodes, floats, missing):  # fmt: skip
    """The child of ``node`` that row ``r`` goes to: right when its value is at least the threshold,
    or, with ``missing``, when it is NaN and the node sends NaN right. Unsigned indices spare
    numba's negative-index checks."""
    at = np.uint64(4) * node
    split = nodes[at]
    v = rows[r, split & FEATURE]
    right = np.uint64(v >= floats[at + np.uint64(3)])
    if missing:
        right |= np.uint64(v != v) & np.uint64(split >> np.uint32(31))
    return np.uint64(nodes[at + np.uint64(1) + right])


@njit(cache=True, inline="always")
def walk(rows, count, first, size, roots, depths, nodes, floats, missing, node, row):  # fmt: skip
    """Walks ``first`` to ``first + size`` of a block of ``count`` rows (walk ``p`` is tree ``p //
    count`` for row ``p % count``) stepped down side by side for their trees' largest depth:
    ``node[k]`` ends at walk ``first + k``'s leaf and ``row[k]`` says its row. ``missing`` is
    whether values can be NaN (a constant of the caller, so the step compiles without the check when
    they cannot). Taken walk by walk in order, each row meets its trees in order."""
    tree = first // count
    r = first - tree * count
    steps = 0
    for k in range(size):
        row[k], node[k] = r, roots[tree]
        steps = max(steps, depths[tree])
        r += 1
        if r == count:
            r, tree = 0, tree + 1
    for _ in range(steps):
        for k in range(size):
            node[k] = _step(rows, row[k], node[k], nodes, floats, missing)


@njit(cache=True, inline="always")
def as_float32(X, lo, count, rows):  # fmt: skip
    """Rows ``lo`` to ``lo + count`` of ``X`` into the first rows of the float32 block ``rows``."""
    for i in range(count):
        for j in range(X.shape[1]):
            rows[i, j] = X[lo + i, j]
