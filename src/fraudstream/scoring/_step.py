"""The models step compiled whole: one call scores a batch with every model of the bundle, calibrates
and combines the scores; one more explains the rows that need reasons.

A transaction arrives a few milliseconds after the last, when the interpreter's and numpy's own code
and data have left the caches as much as the trees have: then each call from Python into compiled
code costs several times what it costs warm, whatever the work inside. So the step is one call,
for one row or ten thousand, and the same loops serve both: rows are taken a block at a time, each
model scores the block (:mod:`._xgboost`, :mod:`._forest`, :mod:`._linear`), and the ensemble
(:func:`fraudstream.models.ensemble.ensemble`, the function training evaluates with) turns the
scores into probabilities.

A model given as ``GIVEN`` is one the kernels do not cover (an XGBoost model with categorical splits
or another objective): its scores, or contributions, are computed by its own library before the call
and passed in.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fraudstream.models.ensemble import decision_levels, ensemble
from fraudstream.scoring._explain import picks
from fraudstream.scoring._forest import add_path_lengths, anomaly_score, imputed_float32
from fraudstream.scoring._linear import contributions, probability
from fraudstream.scoring._trees import BLOCK, LANES, as_float32
from fraudstream.scoring._xgboost import add_contributions, add_margins, sigmoid

GIVEN, XGBOOST, FOREST, LINEAR = range(4)
"""What computes each model's scores (``kinds``)."""


@njit(cache=True, error_model="numpy")
def score(
    X,
    kinds,
    given,
    xgb_base,
    xgb_trees,
    xgb_nodes,
    forest_trees,
    forest_nodes,
    forest_value,
    forest_fill,
    forest_denominator,
    linear,
    intercept,
    ensembled,
    flag,
    block,
):
    """The ensemble probability of each row of ``X`` (rows × features, float64, NaN for missing), its
    :func:`~fraudstream.models.ensemble.decision_levels` at the thresholds ``flag`` and ``block``, and
    each model's raw score (models × rows).

    The models are the rows of ``kinds`` and of ``ensembled`` (whether the score is a probability,
    the Platt line's slope and intercept, the weight). ``given`` holds the raw scores of the
    ``GIVEN`` models; the other arguments are the arrays of the models present (see
    :class:`._xgboost.XGBoostTrees`, :class:`._forest.ForestTrees`, :class:`._linear.LinearModel`),
    and ``X`` must have as many columns as they have features."""
    n, m = X.shape
    if m != linear.shape[1]:
        raise ValueError("the feature rows have another width than the models' features")
    raw = np.empty((kinds.shape[0], n))
    rows = np.empty((min(n, BLOCK), m), np.float32)
    margin, lengths, linear_row = np.empty(BLOCK, np.float32), np.empty(BLOCK), np.empty(m)
    node, row = np.empty(LANES, np.uint64), np.empty(LANES, np.uint64)
    for lo in range(0, n, BLOCK):
        count = min(BLOCK, n - lo)
        for i in range(kinds.shape[0]):
            if kinds[i] == XGBOOST:
                as_float32(X, lo, count, rows)
                margin[:] = xgb_base
                add_margins(rows, count, xgb_trees, xgb_nodes, margin, node, row)
                for r in range(count):
                    raw[i, lo + r] = sigmoid(margin[r])
            elif kinds[i] == FOREST:
                imputed_float32(X, lo, count, forest_fill, rows)
                lengths[:] = 0.0
                add_path_lengths(rows, count, forest_trees, forest_nodes, forest_value, lengths, node, row)
                for r in range(count):
                    raw[i, lo + r] = anomaly_score(lengths[r], forest_denominator)
            elif kinds[i] == LINEAR:
                for r in range(count):
                    contributions(X, lo + r, linear, linear_row)
                    raw[i, lo + r] = probability(linear_row, intercept)
            else:
                for r in range(count):
                    raw[i, lo + r] = given[i, lo + r]
    odds = ensembled[:, 0] != 0
    p = ensemble(raw, odds, ensembled[:, 1:3], ensembled[:, 3])
    return p, decision_levels(p, flag, block), raw


@njit(cache=True, error_model="numpy")
def explain(X, kind, given, xgb_trees, xgb_nodes, start, features, sums, linear, k):  # fmt: skip
    """The explaining model's per-feature contributions to each row of ``X`` (for ``GIVEN``, the
    contributions ``given``), and each row's :func:`._explain.picks` of ``k`` reasons among them.
    XGBoost's leaves' contributions are ``start``, ``features`` and ``sums`` (see
    :class:`._xgboost.XGBoostTrees`)."""
    n, m = X.shape
    if m != linear.shape[1]:
        raise ValueError("the feature rows have another width than the models' features")
    out = np.empty((n, m))
    if kind == XGBOOST:
        rows = np.empty((min(n, BLOCK), m), np.float32)
        block = np.empty((min(n, BLOCK), m), np.float32)
        node, row = np.empty(LANES, np.uint64), np.empty(LANES, np.uint64)
        for lo in range(0, n, BLOCK):
            count = min(BLOCK, n - lo)
            as_float32(X, lo, count, rows)
            block[:] = 0.0
            add_contributions(rows, count, xgb_trees, xgb_nodes, start, features, sums, block, node, row)
            for r in range(count):
                for j in range(m):
                    out[lo + r, j] = block[r, j]
    elif kind == LINEAR:
        for i in range(n):
            contributions(X, i, linear, out[i])
    else:
        out[:] = given
    return out, picks(out, X, k)
