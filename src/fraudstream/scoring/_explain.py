"""Model reasons: the explaining model's top positive contributions of each row it is asked about."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from numba import njit

from fraudstream.events.reasons import RAISES

TOP_REASONS = 3
"""Model reasons given per row, at most."""


def pick_explainer(models: Collection[str], weights: dict[str, float]) -> str | None:
    """The model whose contributions are the reasons: the more heavily weighted of XGBoost and the
    logistic model among ``models``, or ``None`` when the ensemble weights neither."""
    named = [n for n in ("xgboost", "logistic") if weights.get(n) and n in models]
    return max(named, key=lambda n: weights[n]) if named else None


@njit(cache=True)
def picks(contributions, X, k):  # fmt: skip
    """Each row's reasons: the ``k`` largest contributions among its known values (a missing value is
    never a reason; a NaN contribution counts as the lowest), largest first, ties to the lower
    column, rounded to 4 places as ``np.round`` rounds (times 10⁴, ``rint``, over 10⁴), kept when
    above 0. Returns their columns (-1 past the last kept), rounded contributions and values; with
    ``k`` 0, nothing is picked.

    One pass per row keeping the best ``k`` in order: a fraction of a sort's cost."""
    n, m = X.shape
    k = min(k, m)
    columns = np.full((n, k), -1, np.int64)
    rounded, values = np.zeros((n, k)), np.zeros((n, k))
    best, top = np.empty(k), np.empty(k, np.int64)
    for i in range(n if k else 0):
        filled = 0
        for j in range(m):
            v = -np.inf if X[i, j] != X[i, j] else contributions[i, j]
            v = -np.inf if v != v else v
            if filled == k and not v > best[k - 1]:
                continue
            p = filled if filled < k else k - 1
            while p > 0 and v > best[p - 1]:
                best[p], top[p] = best[p - 1], top[p - 1]
                p -= 1
            best[p], top[p] = v, j
            filled = min(filled + 1, k)
        kept = 0
        for p in range(filled):
            r = np.rint(best[p] * 10000.0) / 10000.0
            if r > 0:
                columns[i, kept], rounded[i, kept], values[i, kept] = top[p], r, X[i, top[p]]
                kept += 1
    return columns, rounded, values


def reasons(
    n: int,
    rows: list[int],
    chosen: tuple[np.ndarray, np.ndarray, np.ndarray],
    names: Sequence[str],
    descriptions: Sequence[str],
    source: str,
) -> list[list[dict[str, Any]]]:
    """The model reasons of ``n`` rows: for each of ``rows``, its :func:`picks` (``chosen``, one row
    each in the same order) as reasons of ``source``; none for the others. Every row gets a list of
    its own, to which scoring appends the fired rules' reasons."""
    out: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    columns, rounded, values = (a.tolist() for a in chosen)
    for i, cols, contribution, value in zip(rows, columns, rounded, values, strict=True):
        out[i] = [
            {
                "code": names[j],
                "value": x,
                "contribution": c,
                "source": source,
                "description": descriptions[j],
                "direction": RAISES,
            }
            for j, c, x in zip(cols, contribution, value, strict=True)
            if j >= 0
        ]
    return out
