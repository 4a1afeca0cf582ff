"""Key operations for the feature engine, one pass of a Python dictionary or set over the values.

A batch's identifiers are Python objects: hashing them one by one in a dictionary costs the same per
value for one transaction and for a million, without the fixed cost of building a pandas index.
"""

from __future__ import annotations

import numpy as np


def codes(values: np.ndarray) -> np.ndarray:
    """A code per value, in order of first appearance (equal values share one), -1 for ``None`` and
    NaN: what ``pandas.factorize`` gives."""
    seen: dict[object, int] = {}
    return np.fromiter(
        (-1 if v is None or v != v else seen.setdefault(v, len(seen)) for v in values.tolist()),
        np.int64,
        values.shape[0],
    )


def first_rows(values: np.ndarray) -> np.ndarray:
    """For each value, the position of its first occurrence (its own, unless it repeats)."""
    listed = values.tolist()
    if len(set(listed)) == len(listed):
        return np.arange(len(listed), dtype=np.int64)
    first: dict[object, int] = {}
    return np.fromiter((first.setdefault(v, i) for i, v in enumerate(listed)), np.int64, len(listed))
