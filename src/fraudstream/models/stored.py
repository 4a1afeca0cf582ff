"""The fitted models as a bundle keeps them: numbers, never code.

Each model is reduced, when training ends, to what scoring it takes: an XGBoost model to its booster
(kept in XGBoost's own UBJSON model format), the logistic model to the rows of numbers its pipeline
applies, the Isolation Forest to its trees as arrays. These forms are what a bundle holds in memory
and on disk, so a bundle read back from a file is the bundle that was trained, and reading one runs
nothing but array and JSON parsing (:mod:`fraudstream.models.bundle`).

Reading one also checks every index the tree walks will follow, so arrays from an untrusted file
cannot send a compiled walk outside its tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FILL, MEAN, SCALE, COEF = range(4)
"""The rows of :attr:`LinearParams.params`."""

KINDS = {"xgboost": "xgboost", "logistic": "linear", "isolation_forest": "forest"}
"""The stored kind of each model the ensemble knows: the ensemble's maths depends on the name (the
forest's score is not a probability), so a name always comes with its own kind."""


class StoredModelError(ValueError):
    """Stored arrays that do not make a model of their kind."""


@dataclass(frozen=True, eq=False)
class LinearParams:
    """An imputer → scaler → logistic regression pipeline as numbers: ``params`` holds the imputer's
    medians, the scaler's means and scales, and the coefficients, one row each (see :data:`FILL`),
    float64, features as columns; the probability of a row is the logistic of
    ``sum((imputed - mean) / scale * coef) + intercept``."""

    params: np.ndarray
    intercept: float

    def arrays(self) -> dict[str, np.ndarray]:
        return {"params": self.params, "intercept": np.array(self.intercept, np.float64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_features: int) -> LinearParams:
        params = _array(arrays, "params", np.float64, (4, n_features))
        return cls(params=params, intercept=float(_array(arrays, "intercept", np.float64, ())))


@dataclass(frozen=True, eq=False)
class ForestParams:
    """An Isolation Forest behind its imputer as arrays. Nodes of all trees are numbered together:
    tree ``t`` starts at node ``roots[t]`` and is ``depths[t]`` deep; an inner node sends a row left
    when its value, as float32, is at most ``threshold`` (scikit-learn's rule) and right otherwise; a
    leaf has ``left == right == -1`` and ``value`` is its path length (its depth plus the average path
    length of the samples it holds). ``fill`` is the imputer's value per feature, and a row's score
    is ``2 ** -(sum of its path lengths / denominator)``."""

    roots: np.ndarray
    depths: np.ndarray
    feature: np.ndarray
    left: np.ndarray
    right: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    fill: np.ndarray
    denominator: float

    def arrays(self) -> dict[str, np.ndarray]:
        names = ("roots", "depths", "feature", "left", "right", "threshold", "value", "fill")
        return {**{n: getattr(self, n) for n in names}, "denominator": np.array(self.denominator, np.float64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_features: int) -> ForestParams:
        roots = _array(arrays, "roots", np.int64, (None,))
        nodes = _array(arrays, "feature", np.int64, (None,)).shape[0]
        forest = cls(
            roots=roots,
            depths=_array(arrays, "depths", np.int64, roots.shape),
            feature=_array(arrays, "feature", np.int64, (nodes,)),
            left=_array(arrays, "left", np.int64, (nodes,)),
            right=_array(arrays, "right", np.int64, (nodes,)),
            threshold=_array(arrays, "threshold", np.float64, (nodes,)),
            value=_array(arrays, "value", np.float64, (nodes,)),
            fill=_array(arrays, "fill", np.float64, (n_features,)),
            denominator=float(_array(arrays, "denominator", np.float64, ())),
        )
        forest.check(n_features)
        return forest

    def check(self, n_features: int) -> None:
        """``StoredModelError`` unless every root, child and feature index is in range, leaves are
        leaves on both sides, and no tree is deeper than it has nodes."""
        nodes = self.feature.shape[0]
        leaf = self.left == -1
        if not np.array_equal(leaf, self.right == -1):
            raise StoredModelError("forest: a node with one child")
        children = np.concatenate([self.left[~leaf], self.right[~leaf]])
        if children.size and (children.min() < 0 or children.max() >= nodes):
            raise StoredModelError("forest: a child index outside the nodes")
        if self.roots.size == 0 or self.roots.min() < 0 or self.roots.max() >= nodes:
            raise StoredModelError("forest: no trees, or a root outside the nodes")
        if self.depths.min() < 0 or self.depths.max() >= nodes:
            raise StoredModelError("forest: a tree depth out of range")
        inner = self.feature[~leaf]
        if inner.size and (inner.min() < 0 or inner.max() >= n_features):
            raise StoredModelError(f"forest: a split on a feature outside the {n_features} features")
        if not np.isfinite(self.denominator) or self.denominator < 0:
            raise StoredModelError("forest: the score's denominator is not a finite non-negative number")


def _array(arrays: dict[str, np.ndarray], name: str, dtype: Any, shape: tuple[int | None, ...]) -> np.ndarray:
    """``arrays[name]`` if it has exactly ``dtype`` and ``shape`` (``None`` any length), contiguous."""
    if name not in arrays:
        raise StoredModelError(f"missing array {name!r}")
    array = arrays[name]
    if array.dtype != np.dtype(dtype) or array.ndim != len(shape):
        raise StoredModelError(f"array {name!r} is {array.dtype} {array.shape}, expected {np.dtype(dtype)}")
    if any(want is not None and have != want for have, want in zip(array.shape, shape, strict=True)):
        raise StoredModelError(f"array {name!r} has shape {array.shape}, expected {shape}")
    return np.require(array, requirements="C")


def load_booster(raw: bytes) -> Any:
    """An XGBoost booster from its UBJSON (or JSON) model: XGBoost's own parser, which builds trees and
    parameters and runs no code from the file."""
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    return booster


def save_booster(booster: Any) -> bytes:
    """The booster in XGBoost's UBJSON model format."""
    return bytes(booster.save_raw("ubj"))
