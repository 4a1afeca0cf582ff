"""scikit-learn's logistic regression (behind its imputer and scaler) as four rows of numbers (the
bundle's :class:`~fraudstream.models.stored.LinearParams`), and the per-row arithmetic of its
contributions and probability, compiled into the models step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from fraudstream.models.stored import COEF, FILL, MEAN, SCALE, LinearParams


@njit(cache=True, inline="always")
def contributions(X, i, params, out):  # fmt: skip
    """Row ``i``'s contribution of each feature into ``out``: the coefficient times the feature
    imputed (the median where missing) and standardised."""
    for j in range(X.shape[1]):
        x = X[i, j]
        out[j] = ((params[FILL, j] if x != x else x) - params[MEAN, j]) / params[SCALE, j] * params[COEF, j]


@njit(cache=True, inline="always")
def probability(contributions, intercept):  # fmt: skip
    """``predict_proba`` of a row whose :func:`contributions` are ``contributions``: the logistic of
    their sum, in feature order, plus the intercept."""
    z = 0.0
    for c in contributions:
        z += c
    return 1.0 / (1.0 + np.exp(-(z + intercept)))


@dataclass(frozen=True)
class LinearModel:
    """A fitted imputer → scaler → logistic regression pipeline: ``params`` holds the imputer's
    medians, the scaler's means and scales, and the coefficients, one row each (see
    :data:`~fraudstream.models.stored.FILL`)."""

    params: np.ndarray
    intercept: float

    @classmethod
    def from_params(cls, stored: LinearParams) -> LinearModel:
        return cls(np.ascontiguousarray(stored.params, dtype=np.float64), float(stored.intercept))
