"""What a model learned: its features ranked by importance, for ``train`` and ``evaluate`` to show."""

from __future__ import annotations

from typing import Any

import numpy as np

from fraudstream.models.bundle import ModelBundle
from fraudstream.models.stored import COEF

TOP = 15


def top_features(bundle: ModelBundle, k: int = TOP) -> list[dict[str, Any]]:
    """The ``k`` features with the most total gain in the bundle's XGBoost model, or, without one,
    the largest standardised logistic coefficients: each with its ``share`` of the total and what it
    is a share ``by``."""
    names = bundle.manifest.feature_names
    booster = bundle.models.get("xgboost")
    if booster is not None:
        gain = booster.get_score(importance_type="total_gain")
        values = np.array([gain.get(f"f{i}", gain.get(name, 0.0)) for i, name in enumerate(names)])
        kind = "gain"
    elif "logistic" in bundle.models:
        values = np.abs(bundle.models["logistic"].params[COEF])
        kind = "|coefficient|"
    else:
        return []
    total = float(values.sum()) or 1.0
    order = np.argsort(-values, kind="stable")[:k]
    return [
        {"feature": names[i], "share": round(float(values[i] / total), 4), "by": kind}
        for i in order
        if values[i] > 0
    ]
