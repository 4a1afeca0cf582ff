"""How the models' raw scores become one fraud probability (Platt calibration, then a weighted mean),
and the probability a decision at the bundle's thresholds.

Training fits the calibration and the weights and scoring applies them; both call these functions, so
the probability a model was evaluated on is the one it serves.
"""

from __future__ import annotations

import numpy as np

from fraudstream.events.transaction import DECISIONS

_DECISIONS = np.asarray(DECISIONS, dtype=object)


def logit(name: str, raw: np.ndarray) -> np.ndarray:
    """The raw score on the scale Platt scaling fits a line on: log-odds of a probability, or the
    Isolation Forest's anomaly score as it is."""
    if name == "isolation_forest":
        return raw
    p = np.clip(raw, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def calibrate(name: str, raw: np.ndarray, platt: list[float]) -> np.ndarray:
    """Model ``name``'s raw scores as probabilities, through its Platt line ``platt`` (slope, intercept)."""
    z = platt[0] * logit(name, raw) + platt[1]
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def ensemble_probability(
    raw: dict[str, np.ndarray], calibration: dict[str, list[float]], weights: dict[str, float]
) -> np.ndarray:
    """The fraud probability of the models' raw scores ``raw``: each calibrated, then combined with
    the weights of the models present."""
    calibrated = {name: calibrate(name, scores, calibration[name]) for name, scores in raw.items()}
    return combine(calibrated, {n: w for n, w in weights.items() if n in calibrated})


def combine(calibrated: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted mean of calibrated probabilities: the ensemble's fraud probability."""
    total = sum(weights.values()) or 1.0
    out = np.zeros_like(next(iter(calibrated.values())))
    for name, w in weights.items():
        if w:
            out += w * calibrated[name]
    return out / total


def model_decisions(probability: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """APPROVE below the flag threshold, FLAG up to the block threshold, BLOCK from it on.

    For increasing thresholds ``np.digitize`` is this very ``searchsorted`` (NaN past the last bin), after
    checks that cost a batch of one more than the search; other thresholds go through it unchanged."""
    bins = np.array([thresholds["flag"], thresholds["block"]], dtype=np.float64)
    if bins[0] <= bins[1]:
        return _DECISIONS[np.searchsorted(bins, probability, side="right")]
    return _DECISIONS[np.digitize(probability, bins)]
