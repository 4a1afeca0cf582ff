"""Model reasons on the batch path: the explaining model's top positive contributions per row.

Shared by the served model and a challenger that decides part of the traffic (A/B), so a decision's
reasons always come from the model that made it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fraudstream.events.reasons import RAISES
from fraudstream.scoring.compiled import top_columns

TOP_REASONS = 3


def pick_explainer(models: dict[str, Any], weights: dict[str, float]) -> str | None:
    """The model whose contributions are the reasons: the more heavily weighted of XGBoost and the
    logistic model, or ``None`` when the ensemble weights neither."""
    named = [n for n in ("xgboost", "logistic") if weights.get(n) and n in models]
    return max(named, key=lambda n: weights[n]) if named else None


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Column numbers of each row's ``k`` largest values, largest first, ties by column number."""
    if values.shape[1] <= k:
        return np.argsort(-values, axis=1, kind="stable")
    return top_columns(np.ascontiguousarray(values, dtype=np.float64), k)


def model_reasons(
    models: dict[str, Any],
    explainer: str | None,
    X: np.ndarray,
    decision: np.ndarray,
    names: list[str],
    descriptions: list[str],
    contributions: np.ndarray | None = None,
) -> list[list[dict[str, Any]]]:
    """Each row's model reasons: for a FLAG or BLOCK among ``decision``, the ``explainer``'s top
    positive contributions (rounded to 4 places) among the row's known feature values; none for an
    APPROVE. Every row gets a list of its own, to which scoring appends the fired rules' reasons.

    ``contributions`` are the explainer's for ``X`` when already computed. The reasons are picked with
    array operations over the whole batch and built as one flat list, split into rows afterwards: a
    loop per row cost more than the dicts themselves.
    """
    n = X.shape[0]
    risky = np.asarray(decision) != "APPROVE"
    if explainer is None or not risky.any():
        return [[] for _ in range(n)]
    contrib = contributions if contributions is not None else models[explainer].contributions(X)
    known = np.where(np.isnan(X), -np.inf, contrib)  # a missing value is never a reason
    top = _top(known, TOP_REASONS)
    c = np.round(np.take_along_axis(known, top, axis=1), 4)
    keep = (c > 0) & risky[:, None]
    v = np.take_along_axis(X, top, axis=1)[keep]
    columns = top[keep]
    codes = np.asarray(names, dtype=object)[columns]
    texts = np.asarray(descriptions, dtype=object)[columns]
    flat = [
        {
            "code": j,
            "value": x,
            "contribution": k,
            "source": explainer,
            "description": d,
            "direction": RAISES,
        }
        for j, k, x, d in zip(codes.tolist(), c[keep].tolist(), v.tolist(), texts.tolist(), strict=True)
    ]
    ends = np.cumsum(keep.sum(axis=1)).tolist()
    return [flat[lo:hi] for lo, hi in zip([0, *ends][:-1], ends, strict=True)]
