"""How the models' raw scores become one fraud probability (Platt calibration, then a weighted mean),
and the probability a decision at the bundle's thresholds.

Training fits the calibration and the weights, and serving applies them; both go through the compiled
functions here (serving calls :func:`ensemble` from inside its own compiled models step), so the
probability a model was evaluated on is the one it serves, computed by the same code.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fraudstream.events.transaction import MODEL_DECISIONS

_DECISIONS = np.asarray(MODEL_DECISIONS, dtype=object)

ANOMALY = "isolation_forest"
"""The model whose raw score is an anomaly score, calibrated as it is rather than as log-odds."""

P_MIN = 1e-7
"""Probabilities are clipped to ``[P_MIN, 1 - P_MIN]`` before their log-odds are taken."""
Z_MAX = 50.0
"""Calibrated log-odds are clipped to ``[-Z_MAX, Z_MAX]``, so the probability's exponential never
overflows."""


@njit(cache=True, inline="always")
def _clip(x, lo, hi):  # fmt: skip
    """``np.clip`` of one value: NaN stays NaN."""
    return lo if x < lo else hi if x > hi else x


@njit(cache=True, inline="always")
def _log_odds(p):  # fmt: skip
    p = _clip(p, P_MIN, 1.0 - P_MIN)
    return np.log(p / (1.0 - p))


@njit(cache=True)
def calibrated_rows(raw, odds, platt):  # fmt: skip
    """Each row of ``raw`` (models × rows) as probabilities: the model's Platt line ``platt[i]``
    (slope, intercept) over its score, the score's log-odds where ``odds[i]``, then the logistic."""
    out = np.empty(raw.shape)
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            x = _log_odds(raw[i, j]) if odds[i] else raw[i, j]
            z = _clip(platt[i, 0] * x + platt[i, 1], -Z_MAX, Z_MAX)
            out[i, j] = 1.0 / (1.0 + np.exp(-z))
    return out


@njit(cache=True)
def weighted_mean(probabilities, weights):  # fmt: skip
    """The weighted mean of the rows of ``probabilities`` (models × rows): a sum over the models in
    order, skipping zero weights, divided by the sum of the weights (by 1 when that is 0)."""
    total = 0.0
    for w in weights:
        total += w
    total = total if total != 0 else 1.0
    out = np.empty(probabilities.shape[1])
    for j in range(probabilities.shape[1]):
        acc = 0.0
        for i in range(probabilities.shape[0]):
            if weights[i] != 0:
                acc += weights[i] * probabilities[i, j]
        out[j] = acc / total
    return out


@njit(cache=True)
def ensemble(raw, odds, platt, weights):  # fmt: skip
    """The ensemble's fraud probability of each column of ``raw`` (models × rows): each model
    :func:`calibrated_rows`, then their :func:`weighted_mean`."""
    return weighted_mean(calibrated_rows(raw, odds, platt), weights)


@njit(cache=True)
def _log_odds_of(raw):  # fmt: skip
    out = np.empty(raw.shape[0])
    for j in range(raw.shape[0]):
        out[j] = _log_odds(raw[j])
    return out


def _on_odds(names: list[str]) -> np.ndarray:
    return np.array([name != ANOMALY for name in names], dtype=np.bool_)


def _stacked(rows: list[np.ndarray], n: int) -> np.ndarray:
    """The 1-d arrays ``rows`` (each ``n`` long) as the rows of one float64 matrix."""
    out = np.empty((len(rows), n))
    for i, row in enumerate(rows):
        out[i] = row
    return out


def logit(name: str, raw: np.ndarray) -> np.ndarray:
    """The raw score on the scale Platt scaling fits a line on: log-odds of a probability (clipped to
    ``[P_MIN, 1 - P_MIN]``), or the Isolation Forest's anomaly score as it is."""
    scores = np.asarray(raw, dtype=np.float64)
    if name == ANOMALY:
        return scores
    return np.asarray(_log_odds_of(np.ascontiguousarray(scores.ravel())).reshape(scores.shape))


def calibrate(name: str, raw: np.ndarray, platt: list[float]) -> np.ndarray:
    """Model ``name``'s raw scores as probabilities, through its Platt line ``platt`` (slope, intercept)."""
    scores = np.asarray(raw, dtype=np.float64)
    line = np.array([platt[:2]], dtype=np.float64)
    out = calibrated_rows(_stacked([scores.ravel()], scores.size), _on_odds([name]), line)
    return np.asarray(out[0].reshape(scores.shape))


def ensemble_probability(
    raw: dict[str, np.ndarray], calibration: dict[str, list[float]], weights: dict[str, float]
) -> np.ndarray:
    """The fraud probability of the models' raw scores ``raw``: each calibrated, then combined with
    the weights of the models present, in the weights' order."""
    n = len(next(iter(raw.values())))
    names = [name for name in weights if name in raw]
    platt = np.array([calibration[name][:2] for name in names], dtype=np.float64).reshape(-1, 2)
    w = np.array([weights[name] for name in names], dtype=np.float64)
    scores = _stacked([np.asarray(raw[name], dtype=np.float64) for name in names], n)
    return np.asarray(ensemble(scores, _on_odds(names), platt, w))


def combine(calibrated: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted mean of calibrated probabilities (:func:`weighted_mean`, in the weights' order): the
    ensemble's fraud probability. A model of weight 0 may be left out of ``calibrated``."""
    n = len(next(iter(calibrated.values())))
    names = list(weights)
    rows = [
        np.asarray(calibrated[name], dtype=np.float64) if weights[name] else np.zeros(n) for name in names
    ]
    w = np.array([weights[name] for name in names], dtype=np.float64)
    return np.asarray(weighted_mean(_stacked(rows, n), w))


@njit(cache=True)
def decision_levels(probability, flag, block):  # fmt: skip
    """0 (APPROVE), 1 (FLAG) or 2 (BLOCK) for each probability: how many of the thresholds ``flag`` and
    ``block`` it reaches, as ``np.digitize`` counts them. With the block threshold below the flag
    threshold (which training never writes), how many it is below instead; NaN is BLOCK with the
    usual order and APPROVE with the other, as ``np.digitize`` has them."""
    out = np.empty(probability.shape[0], np.int64)
    for i in range(probability.shape[0]):
        p = probability[i]
        if flag <= block:
            out[i] = 2 if p != p else (p >= flag) + (p >= block)
        else:
            out[i] = (p < flag) + (p < block)
    return out


def model_decisions(probability: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """APPROVE below the flag threshold, FLAG up to the block threshold, BLOCK from it on (see
    :func:`decision_levels`), as an array of strings."""
    p = np.ascontiguousarray(probability, dtype=np.float64).ravel()
    levels = decision_levels(p, float(thresholds["flag"]), float(thresholds["block"]))
    return _DECISIONS[levels.reshape(np.shape(probability))]
