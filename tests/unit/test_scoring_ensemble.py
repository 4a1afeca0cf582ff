"""The ensemble's maths (calibration, weighted mean, log-odds), the one implementation training
evaluates with and serving scores with, gives what the plain formulas give."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.models.ensemble import calibrate, combine, ensemble_probability, logit


def _raw(rng: np.random.Generator, n: int) -> np.ndarray:
    """Probabilities over the whole range: exact 0 and 1, values within 1e-7 of them, NaN."""
    p = rng.random(n) ** rng.choice([1.0, 8.0, 40.0], size=n)
    p[:10] = [0.0, 1.0, 1e-9, 1 - 1e-9, 1e-7, 1 - 1e-7, 0.5, np.nan, 1e-300, 0.25]
    return p


def _plain_logit(name: str, raw: np.ndarray) -> np.ndarray:
    if name == "isolation_forest":
        return raw
    p = np.clip(raw, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def _plain_calibrate(name: str, raw: np.ndarray, platt: list[float]) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(platt[0] * _plain_logit(name, raw) + platt[1], -50, 50)))


@pytest.mark.parametrize("name", ["xgboost", "logistic", "isolation_forest"])
@pytest.mark.parametrize("platt", [[1.0, 0.0], [0.51, -0.7], [16.9, -12.6], [-3.0, 80.0], [900.0, 2.0]])
def test_calibration_is_the_platt_line_over_the_log_odds(name: str, platt: list[float]) -> None:
    rng = np.random.default_rng(len(name))
    raw = _raw(rng, 5000) if name != "isolation_forest" else rng.normal(0.5, 0.3, size=5000)
    got, want = calibrate(name, raw, platt), _plain_calibrate(name, raw, platt)
    assert got.shape == raw.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(raw))  # NaN stays NaN
    np.testing.assert_allclose(logit(name, raw), _plain_logit(name, raw), rtol=1e-12, atol=1e-12)


def test_the_ensemble_is_the_weighted_mean_of_the_calibrated_scores() -> None:
    rng = np.random.default_rng(1)
    raw = {"xgboost": _raw(rng, 3000), "logistic": _raw(rng, 3000), "isolation_forest": rng.random(3000)}
    calibration = {"xgboost": [0.5, -0.7], "logistic": [0.22, -4.9], "isolation_forest": [16.9, -12.6]}
    calibrated = {n: _plain_calibrate(n, r, calibration[n]) for n, r in raw.items()}
    for weights in (
        {"xgboost": 0.6, "logistic": 0.2, "isolation_forest": 0.2},
        {"logistic": 1, "isolation_forest": 2, "xgboost": 3},
        {"xgboost": 1.0, "logistic": 0.0},
        {"xgboost": 0.0, "logistic": 0.0},
    ):
        total = sum(weights.values()) or 1.0
        want = sum((w * calibrated[n] for n, w in weights.items() if w), np.zeros(3000)) / total
        np.testing.assert_allclose(combine(calibrated, weights), want, rtol=0, atol=1e-12)
        got = ensemble_probability(raw, calibration, weights)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # a model of weight 0 need not be scored at all
    only = ensemble_probability({"xgboost": raw["xgboost"]}, calibration, {"xgboost": 2.0, "logistic": 0.0})
    np.testing.assert_allclose(only, calibrated["xgboost"], rtol=0, atol=1e-12)
    both = combine({"xgboost": calibrated["xgboost"]}, {"xgboost": 2.0, "logistic": 0.0})
    np.testing.assert_allclose(both, calibrated["xgboost"], rtol=0, atol=1e-12)
