"""The models step compiled whole: one call scores a batch with every model of the bundle, calibrates
and combines the scores, and picks each row's largest contributions both ways from the explaining
model's, found in the same walk (XGBoost's leaves serve its margin and its contribution tables alike).

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
from fraudstream.scoring._explain import pick_row, picks
from fraudstream.scoring._forest import add_path_lengths, anomaly_score, imputed_float32
from fraudstream.scoring._linear import contributions, probability
from fraudstream.scoring._trees import BLOCK, LANES, as_float32
from fraudstream.scoring._xgboost import add_margins, sigmoid

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
    explaining,
    explained,
    start,
    features,
    sums,
    k,
):
    """The ensemble probability of each row of ``X`` (rows × features, float64, NaN for missing), its
    :func:`~fraudstream.models.ensemble.decision_levels` at the thresholds ``flag`` and ``block``, each
    model's raw score (models × rows), and each row's :func:`._explain.pick_row` of ``k`` contributions
    each way by the explaining model (``k`` 0: none).

    The models are the rows of ``kinds`` and of ``ensembled`` (whether the score is a probability,
    the Platt line's slope and intercept, the weight). ``given`` holds the raw scores of the
    ``GIVEN`` models; the other arguments are the arrays of the models present (see
    :class:`._xgboost.XGBoostTrees`, :class:`._forest.ForestTrees`, :class:`._linear.LinearModel`),
    and ``X`` must have as many columns as they have features. ``explaining`` is the kind of the
    explaining model, one of the scored ones: for ``XGBOOST`` its leaves' contributions are ``start``,
    ``features`` and ``sums`` and are added up in the walk that scores, for ``LINEAR`` the terms the
    probability sums are picked from, for ``GIVEN`` the contributions are ``explained``."""
    n, m = X.shape
    if m != linear.shape[1]:
        raise ValueError("the feature rows have another width than the models' features")
    k = min(k, m)
    raw = np.empty((kinds.shape[0], n))
    rows = np.empty((min(n, BLOCK), m), np.float32)
    margin, lengths, linear_row = np.empty(BLOCK, np.float32), np.empty(BLOCK), np.empty(m)
    node, row = np.empty(LANES, np.uint64), np.empty(LANES, np.uint64)
    columns = np.full((n, 2 * k), -1, np.int64)
    rounded, values = np.zeros((n, 2 * k)), np.zeros((n, 2 * k))
    best, top = np.empty(max(2 * k, 1)), np.empty(max(2 * k, 1), np.int64)
    trees_explain = k > 0 and explaining == XGBOOST
    contributions32 = np.zeros((min(n, BLOCK) if trees_explain else 0, m), np.float32)
    for lo in range(0, n, BLOCK):
        count = min(BLOCK, n - lo)
        if trees_explain:
            contributions32[:] = 0.0
        for i in range(kinds.shape[0]):
            if kinds[i] == XGBOOST:
                as_float32(X, lo, count, rows)
                margin[:] = xgb_base
                add_margins(
                    rows, count, xgb_trees, xgb_nodes, margin, node, row, start, features, sums,
                    contributions32, trees_explain,
                )  # fmt: skip
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
                    if k > 0 and explaining == LINEAR:
                        pick_row(linear_row, X[lo + r], k, best, top, columns, rounded, values, lo + r)
            else:
                for r in range(count):
                    raw[i, lo + r] = given[i, lo + r]
        if trees_explain:
            for r in range(count):
                pick_row(contributions32[r], X[lo + r], k, best, top, columns, rounded, values, lo + r)
        elif k > 0 and explaining == GIVEN:
            for r in range(count):
                pick_row(explained[lo + r], X[lo + r], k, best, top, columns, rounded, values, lo + r)
    odds = ensembled[:, 0] != 0
    p = ensemble(raw, odds, ensembled[:, 1:3], ensembled[:, 3])
    return p, decision_levels(p, flag, block), raw, (columns, rounded, values)


@njit(cache=True, error_model="numpy")
def explain(X, kind, given, xgb_trees, xgb_nodes, start, features, sums, linear, k):  # fmt: skip
    """The explaining model's per-feature contributions to each row of ``X`` (for ``GIVEN``, the
    contributions ``given``), and each row's :func:`._explain.picks` of ``k`` each way among them.
    XGBoost's leaves' contributions are ``start``, ``features`` and ``sums`` (see
    :class:`._xgboost.XGBoostTrees`), added up by the walk that scores."""
    n, m = X.shape
    if m != linear.shape[1]:
        raise ValueError("the feature rows have another width than the models' features")
    out = np.empty((n, m))
    if kind == XGBOOST:
        rows = np.empty((min(n, BLOCK), m), np.float32)
        block = np.empty((min(n, BLOCK), m), np.float32)
        margin = np.empty(BLOCK, np.float32)
        node, row = np.empty(LANES, np.uint64), np.empty(LANES, np.uint64)
        for lo in range(0, n, BLOCK):
            count = min(BLOCK, n - lo)
            as_float32(X, lo, count, rows)
            block[:] = 0.0
            margin[:] = 0.0
            add_margins(
                rows, count, xgb_trees, xgb_nodes, margin, node, row, start, features, sums, block, True
            )
            for r in range(count):
                for j in range(m):
                    out[lo + r, j] = block[r, j]
    elif kind == LINEAR:
        for i in range(n):
            contributions(X, i, linear, out[i])
    else:
        out[:] = given
    return out, picks(out, X, k)
