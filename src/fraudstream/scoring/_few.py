"""Scoring a handful of rows: the same numbers as the batch path, without its fixed cost per call.

The API scores micro-batches of one to four transactions. On arrays that small, the batch path's time
goes to calling numpy a few dozen times per model (imputing, casting, calibrating each model apart)
and to picking reasons with array operations meant for thousands of rows. Here each model's walk,
imputation and explanation is one numba call over the rows, the models' scores are calibrated and
combined together as the rows of one array, and reasons are built from the few picks by plain Python.

Every step gives the batch path's numbers bit for bit: the numba kernels walk the batch path's trees
(packed, :mod:`._packed`) and do only exact arithmetic (casts, additions, products, quotients,
comparisons, ``rint``) in the batch path's order, while everything whose last bit depends on the
library (``exp``, ``log``, powers, BLAS dot products, ``expit``) stays the numpy call the batch path
makes (the forest's and the logistic model's through their shared ``from_depths`` / ``from_scaled``).
``calibrate`` and ``combine`` are mirrored step by step, and tests/unit/test_scoring_small.py holds the
two paths equal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numba import njit

from fraudstream.events.reasons import RAISES
from fraudstream.models.bundle import Manifest
from fraudstream.scoring._packed import booster_packed, forest_packed, pack_booster, pack_forest
from fraudstream.scoring._xgb_trees import _sigmoid
from fraudstream.scoring.compiled import CompiledBooster, CompiledForest, CompiledLogistic, top_columns

FEW_ROWS = 64
"""By default (the scorer's ``few_rows``), batches up to this many rows take the few-rows path, the
cheaper one at these sizes (one to four is what the API sends); the batch path serves the worker and
replay's thousands."""

Picks = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Per row: the kept reasons' columns, rounded contributions and feature values, and how many."""


@njit(cache=True)
def _pick(contrib, X, k):  # fmt: skip
    """The batch path's reasons of each row: the ``k`` largest contributions (:func:`top_columns`) of
    the known values (a missing one is never a reason), rounded as ``np.round(c, 4)`` rounds (times
    10⁴, ``rint``, over 10⁴), kept when above 0."""
    n = X.shape[0]
    known = np.empty(contrib.shape)  # no rows when the model does not explain (k = 0)
    for i in range(contrib.shape[0]):
        for j in range(contrib.shape[1]):
            known[i, j] = -np.inf if X[i, j] != X[i, j] else contrib[i, j]
    top = top_columns(known, k)
    cols, c, v = np.empty((n, k), np.int64), np.empty((n, k)), np.empty((n, k))
    count = np.zeros(n, np.int64)
    for i in range(n):
        for p in range(k):
            j = top[i, p]
            r = np.rint(known[i, j] * 10000.0) / 10000.0
            if r > 0:
                cols[i, count[i]], c[i, count[i]], v[i, count[i]] = j, r, X[i, j]
                count[i] += 1
    return cols, c, v, count


@njit(cache=True)
def _booster_few(X, base, roots, words, floats, start, features, sums, k):  # fmt: skip
    """:meth:`XGBTrees.predict`, and with ``k`` > 0 the picks of :meth:`XGBTrees.contributions`, from
    one walk of each tree's packed nodes."""
    margin, block = booster_packed(X, base, roots, words, floats, start, features, sums, k)
    contrib = np.empty(block.shape)
    contrib[:] = block
    return _sigmoid(margin), _pick(contrib, X, k)


@njit(cache=True)
def _logistic_few(X, fill, mean, scale, coef, k):  # fmt: skip
    """The imputed, scaled rows of :class:`CompiledLogistic`, and with ``k`` > 0 the picks of its
    contributions (scaled value × coefficient)."""
    n, m = X.shape
    scaled = np.empty((n, m))
    contrib = np.empty((n if k else 0, m))
    for i in range(n):
        for j in range(m):
            x = X[i, j]
            scaled[i, j] = ((fill[j] if x != x else x) - mean[j]) / scale[j]
            if k:
                contrib[i, j] = scaled[i, j] * coef[j]
    return scaled, _pick(contrib, X, k)


@njit(cache=True)
def _clip(x, lo, hi):  # fmt: skip
    """``np.clip`` of one value: NaN stays NaN."""
    return x if x != x else lo if x < lo else hi if x > hi else x


@njit(cache=True)
def _odds(raw, supervised):  # fmt: skip
    """``p / (1 - p)`` of the supervised models' rows, ``p`` clipped as ``ensemble.logit`` clips it; its
    logarithm is left to the ``np.log`` that the batch path calls."""
    out = np.empty((supervised, raw.shape[1]))
    for i in range(supervised):
        for j in range(raw.shape[1]):
            p = _clip(raw[i, j], 1e-7, 1 - 1e-7)
            out[i, j] = p / (1 - p)
    return out


@njit(cache=True)
def _platt(raw, logs, slope, intercept):  # fmt: skip
    """``-np.clip(z, -50, 50)`` of ``ensemble.calibrate``, ``z`` being the Platt line of each model's
    logit (the log-odds ``logs`` of the supervised rows, the raw score of the rest)."""
    out = np.empty(raw.shape)
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            logit = logs[i, j] if i < logs.shape[0] else raw[i, j]
            out[i, j] = -_clip(slope[i] * logit + intercept[i], -50.0, 50.0)
    return out


@njit(cache=True)
def _ensemble(exp, rows, weights, total):  # fmt: skip
    """``ensemble.combine`` of the calibrated ``1 / (1 + exp)``: a sum starting at 0, model by model in
    the weights' order (``rows``), skipping zero weights, then divided by ``total``."""
    out = np.empty(exp.shape[1])
    for j in range(exp.shape[1]):
        acc = 0.0
        for i in range(rows.shape[0]):
            if weights[i] != 0:
                acc += weights[i] * (1.0 / (1.0 + exp[rows[i], j]))
        out[j] = acc / total
    return out


Scoring = Callable[[np.ndarray, int], tuple[np.ndarray, Picks | None]]


def _scoring(model: Any) -> Scoring:
    """``(X, k) → (score, picks or None)`` for one compiled model; ``k`` is 0 unless it explains."""
    if isinstance(model, CompiledForest):
        words = pack_forest(model.children, model.feature, model.threshold)
        arrays = (model.impute.fill, model.roots, words, words.view(np.float32), model.value)
        return lambda X, k: (model.from_depths(forest_packed(X, *arrays)), None)
    if isinstance(model, CompiledLogistic):
        coefs = (model.impute.fill, model.mean, model.scale, model.coef)

        def logistic(X: np.ndarray, k: int) -> tuple[np.ndarray, Picks | None]:
            scaled, picks = _logistic_few(X, *coefs, k)
            return model.from_scaled(scaled), picks if k else None

        return logistic
    if isinstance(model, CompiledBooster) and model.trees is not None:
        t = model.trees
        words = pack_booster(t)
        walk = (t.base_margin, t.roots, words, words.view(np.float32))
        leaves = (t.leaf_start, t.leaf_features, t.leaf_sums)

        def booster(X: np.ndarray, k: int) -> tuple[np.ndarray, Picks | None]:
            if X.shape[1] != t.n_features:
                raise ValueError(f"expected rows of {t.n_features} features, got shape {X.shape}")
            score, picks = _booster_few(X, *walk, *leaves, k)
            return score, picks if k else None

        return booster

    def other(X: np.ndarray, k: int) -> tuple[np.ndarray, Picks | None]:
        contrib = np.ascontiguousarray(model.contributions(X), dtype=np.float64) if k else None
        return model.score(X), None if contrib is None else _pick(contrib, X, k)

    return other


class FewRows:
    """The scorer's model, calibration and explanation steps for a few rows (see the module's notes)."""

    def __init__(
        self,
        models: dict[str, Any],
        manifest: Manifest,
        explainer: str | None,
        names: Sequence[str],
        k: int,
        descriptions: Sequence[str],
    ) -> None:
        self.order = [n for n in models if n != "isolation_forest"] + [
            n for n in models if n == "isolation_forest"
        ]
        self.supervised = sum(n != "isolation_forest" for n in self.order)
        self.slope = np.array([manifest.calibration[n][0] for n in self.order], dtype=np.float64)
        self.intercept = np.array([manifest.calibration[n][1] for n in self.order], dtype=np.float64)
        weights = {n: w for n, w in manifest.weights.items() if n in models}
        self.rows = np.array([self.order.index(n) for n in weights], dtype=np.int64)
        self.weights = np.array(list(weights.values()), dtype=np.float64)
        self.total = float(sum(weights.values()) or 1.0)
        self.scorings = [(_scoring(models[n]), k if n == explainer else 0) for n in self.order]
        self.explainer, self.names = explainer, list(names)
        self.descriptions = list(descriptions)

    def probabilities(self, X: np.ndarray) -> tuple[np.ndarray, Picks | None]:
        """The ensemble probability of each row, as :func:`combine` of :func:`calibrate` makes it, and
        the explainer's picks."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        raw = np.empty((len(self.order), X.shape[0]))
        picks: Picks | None = None
        for i, (scoring, k) in enumerate(self.scorings):
            raw[i], got = scoring(X, k)
            picks = got if k else picks
        logs = np.log(_odds(raw, self.supervised))
        exp = np.exp(_platt(raw, logs, self.slope, self.intercept))
        return _ensemble(exp, self.rows, self.weights, self.total), picks

    def reasons(self, n: int, picks: Picks | None, decisions: np.ndarray) -> list[list[dict[str, Any]]]:
        """Each row's model reasons, as the batch path's :meth:`Scorer.explain` builds them: none for an
        APPROVE among ``decisions``."""
        if picks is None:
            return [[] for _ in range(n)]
        cols, values, contributions, counts = (a.tolist() for a in (picks[0], picks[2], picks[1], picks[3]))
        names, texts, source = self.names, self.descriptions, self.explainer
        return [
            [
                {
                    "code": names[j],
                    "value": v,
                    "contribution": k,
                    "source": source,
                    "description": texts[j],
                    "direction": RAISES,
                }
                for j, v, k in zip(col[:count], x[:count], c[:count], strict=True)
            ]
            if decision != "APPROVE"
            else []
            for col, x, c, count, decision in zip(
                cols, values, contributions, counts, decisions.tolist(), strict=True
            )
        ]
