"""Explanations: each row's largest contributions of the explaining model in both directions, and the
model reasons made of the ones that raise the score.

Picking is compiled, a row at a time (:func:`pick_row`), so the models step picks each row as it
scores it (:func:`._step.score`) and the whole-matrix helper (:func:`picks`) shares the same code.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from numba import njit

from fraudstream.events.reasons import RAISES

TOP_REASONS = 3
"""Model reasons given per row, at most: the contributions that raise the score most. An explanation
gives as many that lower it."""


def pick_explainer(models: Collection[str], weights: dict[str, float]) -> str | None:
    """The model whose contributions are the reasons: the more heavily weighted of XGBoost and the
    logistic model among ``models``, or ``None`` when the ensemble weights neither."""
    named = [n for n in ("xgboost", "logistic") if weights.get(n) and n in models]
    return max(named, key=lambda n: weights[n]) if named else None


@njit(cache=True, inline="always")
def pick_row(contributions, x, k, best, top, columns, rounded, values, i):  # fmt: skip
    """Row ``i``'s picks: among the features whose value in ``x`` is known (a missing value is never
    picked; a NaN contribution never either), the ``k`` largest ``contributions`` into ``columns[i,
    :k]`` and the ``k`` smallest into ``columns[i, k:2k]``, each largest in size first, ties to the
    lower column, rounded to 4 places as ``np.round`` rounds (times 10⁴, ``rint``, over 10⁴) and kept
    when still above 0 (below 0 for the smallest), with their rounded contributions in ``rounded``
    and values in ``values``; -1 in ``columns`` past the last kept. ``best`` and ``top`` are scratch
    of at least ``2k``.

    One pass keeping the best ``k`` each way in order: a fraction of a sort's cost, and most features
    are passed over after two comparisons."""
    m = x.shape[0]
    high = low = 0
    for j in range(m):
        c = contributions[j]
        if x[j] != x[j] or c != c:
            continue
        if high < k or c > best[k - 1]:
            p = high if high < k else k - 1
            while p > 0 and c > best[p - 1]:
                best[p], top[p] = best[p - 1], top[p - 1]
                p -= 1
            best[p], top[p] = c, j
            high = min(high + 1, k)
        if low < k or -c > best[2 * k - 1]:
            p = low if low < k else k - 1
            while p > 0 and -c > best[k + p - 1]:
                best[k + p], top[k + p] = best[k + p - 1], top[k + p - 1]
                p -= 1
            best[k + p], top[k + p] = -c, j
            low = min(low + 1, k)
    for half in range(2):
        kept, sign = half * k, 1.0 - 2.0 * half
        for p in range(high if half == 0 else low):
            r = np.rint(best[half * k + p] * 10000.0) / 10000.0
            if r > 0:
                j = top[half * k + p]
                columns[i, kept], rounded[i, kept], values[i, kept] = j, sign * r, x[j]
                kept += 1


@njit(cache=True)
def picks(contributions, X, k):  # fmt: skip
    """Every row's :func:`pick_row` of ``k`` each way: their columns (rows × 2k, -1 where none), rounded
    contributions and values. With ``k`` 0, nothing is picked."""
    n, m = X.shape
    k = min(k, m)
    columns = np.full((n, 2 * k), -1, np.int64)
    rounded, values = np.zeros((n, 2 * k)), np.zeros((n, 2 * k))
    best, top = np.empty(max(2 * k, 1)), np.empty(max(2 * k, 1), np.int64)
    for i in range(n if k else 0):
        pick_row(contributions[i], X[i], k, best, top, columns, rounded, values, i)
    return columns, rounded, values


def reasons(
    n: int,
    rows: list[int],
    chosen: tuple[np.ndarray, np.ndarray, np.ndarray],
    names: Sequence[str],
    descriptions: Sequence[str],
    source: str,
) -> list[list[dict[str, Any]]]:
    """The model reasons of ``n`` rows: for each of ``rows``, the raising half of its picks
    (``chosen``, one row each in the same order, as :func:`picks` gives them) as reasons of
    ``source``; none for the others. Every row gets a list of its own, to which scoring appends the
    fired rules' reasons."""
    out: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    k = chosen[0].shape[1] // 2
    columns, rounded, values = (a[:, :k].tolist() for a in chosen)
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
