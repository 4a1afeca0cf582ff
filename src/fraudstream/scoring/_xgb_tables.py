"""Tables of an XGBoost booster's nodes, computed once when its trees are flattened.

Kept apart from the walks (:mod:`._xgboost`, :mod:`._step`), which run for every request: these only
follow the trees' structure, to give each node its depth and mean value and each leaf the
contributions a row ending there gets from its tree.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def node_depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Each node's depth; ``left`` is -1 at leaves."""
    depth = np.zeros(left.shape[0], np.int64)
    inner = np.flatnonzero(left >= 0)
    while True:
        below = depth.copy()
        below[left[inner]] = below[right[inner]] = depth[inner] + 1
        if np.array_equal(below, depth):
            return depth
        depth = below


def node_means(
    left: np.ndarray, right: np.ndarray, value: np.ndarray, hess: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """XGBoost's ``FillNodeMeanValues`` in float32, a level at a time from the deepest up:
    ``(mean(left) * cover(left) + mean(right) * cover(right)) / cover(node)``, a leaf's own value."""
    mean = value.copy()
    inner = np.flatnonzero(left >= 0)
    for d in range(int(depth.max()), -1, -1):
        nodes = inner[depth[inner] == d]
        total = mean[left[nodes]] * hess[left[nodes]]
        total += mean[right[nodes]] * hess[right[nodes]]
        mean[nodes] = total / hess[nodes]
    return mean


@njit(cache=True)
def leaf_contributions(children, feature, mean):  # fmt: skip
    """What a row ending at each leaf gets from its tree, as XGBoost's ``CalculateContributionsApprox``
    makes it: each split on the path from the root adds ``mean(child) - mean(node)`` to its feature in
    a float32 buffer starting at 0, in path order. The buffer depends on the leaf alone, so it is
    computed once here: leaf ``n``'s features and sums are ``features[start[n]:start[n + 1]]`` and
    ``sums[start[n]:start[n + 1]]``. Sums of exactly 0 are left out: the buffer is never -0, and adding
    +0 to a row's contributions (which start at +0, so are never -0 either) changes nothing."""
    n = feature.shape[0]
    parent = np.full(n, -1, np.int64)
    for node in range(n):
        for side in range(2):
            child = np.int64(children[2 * node + side])
            if child != node:
                parent[child] = node
    depth = np.zeros(n, np.int64)
    for node in range(n):
        up = parent[node]
        while up >= 0:
            depth[node] += 1
            up = parent[up]
    size = 0
    for node in range(n):
        if np.int64(children[2 * node]) == node:
            size += depth[node]
    path = np.empty(depth.max() + 1, np.int64)
    features, sums = np.empty(size, np.uint32), np.empty(size, np.float32)
    start = np.zeros(n + 1, np.int64)
    used = 0
    for node in range(n):
        start[node] = used
        if np.int64(children[2 * node]) != node:
            continue
        at = node
        for s in range(depth[node], -1, -1):
            path[s] = at
            at = parent[at]
        first = used
        for s in range(depth[node]):
            split, child = path[s], path[s + 1]
            f = feature[split]
            j = first
            while j < used and features[j] != f:
                j += 1
            if j == used:
                features[j], sums[j] = f, np.float32(0.0)
                used += 1
            sums[j] += mean[child] - mean[split]
        kept = first
        for j in range(first, used):
            if sums[j] != 0:
                features[kept], sums[kept] = features[j], sums[j]
                kept += 1
        used = kept
    start[n] = used
    return start, features[:used].copy(), sums[:used].copy()
