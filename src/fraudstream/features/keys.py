"""Key operations for the feature engine that stay cheap for one transaction and for a million.

pandas' hash tables win on large arrays but cost tens of microseconds just to build an ``Index``;
the live path answers batches of one to a few hundred rows, where a Python dict is ten times faster.
Each function picks by size and returns exactly what the pandas version would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SMALL = 256
"""Below this many values the dict implementations are faster than pandas."""
FEW = 4
"""Up to this many needles, scanning a long haystack beats hashing it."""


def present(values: np.ndarray) -> np.ndarray:
    """Which entries are neither ``None`` nor NaN."""
    if values.shape[0] < SMALL:
        return np.fromiter((v is not None and v == v for v in values.tolist()), bool, values.shape[0])
    return np.asarray(pd.notna(values))


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes in order of first appearance (-1 for missing) and the distinct values."""
    if values.shape[0] < SMALL:
        codes, seen = _small_codes(values)
        uniques = np.empty(len(seen), dtype=object)
        uniques[:] = list(seen)
        return codes, uniques
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def codes(values: np.ndarray) -> np.ndarray:
    """The codes of :func:`factorize` alone, for columns whose distinct values are never needed."""
    if values.shape[0] < SMALL:
        return _small_codes(values)[0]
    return factorize(values)[0]


def _small_codes(values: np.ndarray) -> tuple[np.ndarray, dict[object, int]]:
    """:func:`factorize`'s codes with a dict, and the dict of distinct values in order."""
    seen: dict[object, int] = {}
    codes = np.fromiter(
        (-1 if v is None or v != v else seen.setdefault(v, len(seen)) for v in values.tolist()),
        np.int64,
        values.shape[0],
    )
    return codes, seen


def lookup(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Position of each needle in ``haystack`` (whose values are distinct), -1 when absent."""
    if haystack.shape[0] + needles.shape[0] < SMALL:
        where = {v: i for i, v in enumerate(haystack.tolist())}
        return np.fromiter((where.get(v, -1) for v in needles.tolist()), np.int64, needles.shape[0])
    if needles.shape[0] <= FEW:
        out = np.full(needles.shape[0], -1, dtype=np.int64)
        for i, v in enumerate(needles.tolist()):
            hits = np.flatnonzero(haystack == v)
            if hits.size:
                out[i] = hits[0]
        return out
    return np.asarray(pd.Index(haystack, dtype=object).get_indexer(needles), dtype=np.int64)


def first_seen(values: np.ndarray) -> np.ndarray:
    """True at the first occurrence of each value."""
    if values.shape[0] < SMALL:
        seen: set[object] = set()
        out = np.empty(values.shape[0], dtype=bool)
        for i, v in enumerate(values.tolist()):
            out[i] = v not in seen
            seen.add(v)
        return out
    return np.asarray(~pd.Index(values, dtype=object).duplicated())


def distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values in order of first appearance."""
    if values.shape[0] < SMALL:
        out = np.empty(len(dict.fromkeys(values.tolist())), dtype=object)
        out[:] = list(dict.fromkeys(values.tolist()))
        return out
    return np.asarray(pd.unique(values), dtype=object)
