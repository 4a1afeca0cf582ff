"""Batch columns as rule expressions see them, and the vectorised operations on them.

Every value is a numpy array (0-d for constants): float64 for numbers, bool for conditions, object
for text. Missing values are NaN or ``None``; comparisons involving them are False.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import numpy as np
import pandas as pd

from fraudstream.expr.errors import ExprError

F64: Final = np.dtype(np.float64)
"""Every number a rule sees is float64: the case worth a fast path."""


class Columns(Mapping[str, np.ndarray]):
    """A batch's columns as seen by expressions: checked for length and converted once per batch.

    Number columns become float64 (booleans stay booleans), text columns object arrays. Passing the
    same view to many rules (as :class:`~fraudstream.rules.RuleSet` does) converts each column once.
    """

    def __init__(self, columns: Mapping[str, Any], n: int | None = None) -> None:
        if n is None:
            first = next(iter(columns.values()), None)
            if first is None:
                raise ExprError("cannot tell the batch size from an empty set of columns")
            n = len(first)
        self.n = int(n)
        self._raw = columns
        self._seen: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        seen = self._seen.get(name)
        if seen is not None:
            return seen
        if name not in self._raw:
            raise ExprError(f"column {name!r} is not in the batch")
        arr = np.asarray(self._raw[name])
        if arr.shape != (self.n,):
            raise ExprError(f"column {name!r} has shape {arr.shape}, expected ({self.n},)")
        if arr.dtype.kind in "iuf":
            arr = arr.astype(np.float64, copy=False)
        elif arr.dtype.kind in "US":
            arr = arr.astype(object)
        elif arr.dtype.kind not in "bO":
            raise ExprError(f"column {name!r} has unsupported type {arr.dtype}")
        self._seen[name] = arr
        return arr

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def as_array(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return arr.astype(object)
    if arr.dtype.kind in "iu":
        return arr.astype(np.float64)
    return arr


def missing(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    if arr.dtype == object:
        return np.asarray(pd.isna(arr.reshape(-1)), dtype=bool).reshape(arr.shape)
    return np.zeros(arr.shape, dtype=bool)


def isin_text(arr: np.ndarray, values: frozenset[str]) -> np.ndarray:
    """Where an object array's values are among ``values`` (text): a set lookup per value, which costs
    a batch of one little and a large batch about what pandas' ``isin`` does. A value that cannot be
    in a set of text (unhashable) is not in it."""
    flat = arr.reshape(-1).tolist()
    return np.fromiter((_member(v, values) for v in flat), bool, len(flat)).reshape(arr.shape)


def _member(value: Any, values: frozenset[str]) -> bool:
    try:
        return value in values
    except TypeError:
        return False


def as_number(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype == object:
        raise ExprError(f"{what!r} is text, not a number")
    return arr.astype(np.float64, copy=False)


def as_condition(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype == object:
        raise ExprError(f"{what!r} is text, not a condition")
    return (arr != 0) & ~np.isnan(arr)


def settled(mask: np.ndarray, value: bool) -> bool:
    """Whether every value of a condition is ``value`` (so an ``or`` of it is, or an ``and`` is not)."""
    return bool(mask.all()) if value else not mask.any()


def compare_values(symbol: str, op: Callable[[Any, Any], Any], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype is F64 and b.dtype is F64 and symbol != "!=":
        return op(a, b)  # NaN already compares False under every operator but !=
    valid = ~missing(a) & ~missing(b)
    text_a, text_b = a.dtype == object, b.dtype == object
    if text_a or text_b:
        if not (text_a and text_b):
            raise ExprError(f"cannot compare text with a number using {symbol!r}")
        if symbol not in ("==", "!="):
            raise ExprError(f"text can only be compared with == and !=, not {symbol!r}")
    else:
        a, b = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    return np.asarray(op(a, b), dtype=bool) & valid


def quiet(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    @functools.wraps(fn)
    def wrapper(*args: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return fn(*args)

    return wrapper


@quiet
def divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(b == 0, np.nan, np.divide(a, b))


ARITHMETIC: Final[dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    "+": quiet(np.add),
    "-": quiet(np.subtract),
    "*": quiet(np.multiply),
    "/": divide,
}
