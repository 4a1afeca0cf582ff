"""A bundle's models as served: one object scores a batch's feature rows into fraud probabilities and
explains the rows that need reasons, the same code for one transaction and for ten thousand.

Scoring is one compiled call (:func:`._step.score`) that walks the trees, applies the logistic model,
and calibrates and combines the scores with the ensemble's own functions; reasons are one more, for
the rows that are not approved only (:func:`._step.explain`). The bundle's stored models are read
once, when the object is built; XGBoost models the kernels do not cover (categorical splits, another
objective) are served by the booster itself, slower but the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np

from fraudstream.events.transaction import MODEL_DECISIONS
from fraudstream.models.bundle import ModelBundle
from fraudstream.models.ensemble import ANOMALY
from fraudstream.models.stored import ForestParams, LinearParams
from fraudstream.scoring import _step
from fraudstream.scoring._explain import TOP_REASONS, pick_explainer, reasons
from fraudstream.scoring._forest import ForestTrees
from fraudstream.scoring._linear import LinearModel
from fraudstream.scoring._xgboost import XGBoostTrees

_NONE = np.empty((0, 0))
_DECISIONS = np.asarray(MODEL_DECISIONS, dtype=object)
T = TypeVar("T")


class Scores(NamedTuple):
    """A batch's ensemble probability per row, the model decision it makes at the bundle's thresholds
    (APPROVE, FLAG or BLOCK), and each served model's raw score (models × rows, the rows in
    :attr:`ServedModels.names` order): a probability for XGBoost and the logistic model,
    ``-IsolationForest.score_samples`` for the forest."""

    probability: np.ndarray
    decision: np.ndarray
    raw: np.ndarray


class ServedModels:
    """The models of ``bundle`` that have a weight in its ensemble, ready to score feature rows (rows ×
    the bundle's features, float64, NaN for a missing value).

    ``descriptions`` are the features' human descriptions, carried by the reasons (the feature names
    when left out). ``ValueError`` when a weighted model is of a kind that cannot be served.
    """

    def __init__(self, bundle: ModelBundle, descriptions: Sequence[str] | None = None) -> None:
        manifest = bundle.manifest
        self.bundle = bundle
        self.feature_names: list[str] = list(manifest.feature_names)
        width = len(self.feature_names)
        self.descriptions: list[str] = list(self.feature_names if descriptions is None else descriptions)
        if len(self.descriptions) != width:
            raise ValueError(f"{len(self.descriptions)} descriptions for {width} features")
        missing = [n for n, w in manifest.weights.items() if w and n not in bundle.models]
        if missing:
            raise ValueError(f"the ensemble weights models the bundle lacks: {', '.join(missing)}")
        self.names: list[str] = [n for n, w in manifest.weights.items() if w]
        """The served models, in the order of the ensemble's weights."""
        self.explainer: str | None = pick_explainer(self.names, manifest.weights)
        """The model whose feature contributions are the reasons: the more heavily weighted of
        XGBoost and the logistic model, or ``None`` when the ensemble weights neither."""
        served = {name: _serve(name, bundle.models[name]) for name in self.names}
        self._boosters = {n: m for n, m in served.items() if _kind(m) == _step.GIVEN}
        xgb = _one(served, XGBoostTrees)
        forest = _one(served, ForestTrees)
        linear = _one(served, LinearModel)
        trees = (xgb.trees, xgb.nodes) if xgb else (np.empty((0, 2), np.int64), np.empty(0, np.uint32))
        params = linear.params if linear else np.zeros((4, width))
        ensembled = [[n != ANOMALY, *manifest.calibration[n][:2], manifest.weights[n]] for n in self.names]
        self._kinds = np.array([_kind(served[n]) for n in self.names], dtype=np.int64)
        self._score = (
            np.float32(xgb.base_margin if xgb else 0.0),
            *trees,
            *(
                (forest.trees, forest.nodes, forest.value, forest.fill, forest.denominator)
                if forest
                else (np.empty((0, 2), np.int64), np.empty(0, np.uint32), np.empty(0), np.zeros(width), 0.0)
            ),
            params,
            linear.intercept if linear else 0.0,
            np.array(ensembled, dtype=np.float64).reshape(-1, 4),
            float(manifest.thresholds["flag"]),
            float(manifest.thresholds["block"]),
        )
        explainer = served[self.explainer] if self.explainer is not None else None
        self._explain_kind = _kind(explainer)
        self._explain = (
            *trees,
            *(
                (xgb.leaf_start, xgb.leaf_features, xgb.leaf_sums)
                if xgb
                else (np.zeros(1, np.int64), np.empty(0, np.uint32), np.empty(0, np.float32))
            ),
            params,
        )
        nothing = np.empty((0, width))
        self.score(nothing)  # the kernels compiled, or loaded from numba's cache, before any request
        if self.explainer is not None:
            self._explained(nothing, nothing, TOP_REASONS)

    def score(self, X: np.ndarray) -> Scores:
        """The ensemble probability of each row of ``X``, its model decision, and each model's raw
        score."""
        if X.dtype != np.float64 or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=np.float64)
        given = self._given(X) if self._boosters else _NONE
        probability, levels, raw = _step.score(X, self._kinds, given, *self._score)
        return Scores(probability, _DECISIONS[levels], raw)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """The explaining model's contribution of each feature to each row of ``X`` (rows ×
        features): coefficient × scaled value for the logistic model, XGBoost's approximate (Saabas)
        contributions, as ``pred_contribs=True, approx_contribs=True`` gives them without the bias
        column. ``ValueError`` when no model explains."""
        if self.explainer is None:
            raise ValueError("no model of this bundle explains its scores")
        return self._explained(np.ascontiguousarray(X, dtype=np.float64), None, 0)[0]

    def reasons(
        self, X: np.ndarray, decisions: np.ndarray, contributions: np.ndarray | None = None
    ) -> list[list[dict[str, Any]]]:
        """Each row's model reasons: for a FLAG or BLOCK among ``decisions``, the explainer's top
        positive contributions (at most :data:`TOP_REASONS`, rounded to 4 places, largest first) among
        the row's known feature values, each as ``{"code", "value", "contribution", "source",
        "description", "direction"}``; none for an APPROVE, nor when no model explains. Every row gets
        a list of its own. ``contributions`` are the explainer's for ``X`` when already at hand."""
        n = len(X)
        rows = [i for i, d in enumerate(decisions.tolist()) if d != "APPROVE"]
        if self.explainer is None or not rows:
            return [[] for _ in range(n)]
        given = None if contributions is None else np.asarray(contributions, dtype=np.float64)[rows]
        chosen = self._explained(np.ascontiguousarray(X[rows], dtype=np.float64), given, TOP_REASONS)[1]
        return reasons(n, rows, chosen, self.feature_names, self.descriptions, self.explainer)

    def _given(self, X: np.ndarray) -> np.ndarray:
        """The raw scores of the models served by their own library, in their rows of ``raw``."""
        given = np.empty((len(self.names), X.shape[0]))
        for i, name in enumerate(self.names):
            if name in self._boosters:
                given[i] = _booster_scores(self._boosters[name], X)
        return given

    def _explained(self, X: np.ndarray, given: np.ndarray | None, k: int) -> Any:
        """:func:`._step.explain` of ``X`` by the explainer (with ``given`` contributions when at
        hand), with ``k`` reasons picked per row."""
        kind = self._explain_kind
        if given is None and kind == _step.GIVEN:
            assert self.explainer is not None
            given = _booster_contributions(self._boosters[self.explainer], X)
        if given is not None:
            kind = _step.GIVEN
        return _step.explain(X, kind, _NONE if given is None else given, *(*self._explain, k))


def _one(served: dict[str, Any], kind: type[T]) -> T | None:
    """The served model of type ``kind``, if any (a bundle has at most one of each)."""
    return next((m for m in served.values() if isinstance(m, kind)), None)


def _serve(name: str, model: Any) -> Any:
    """The serving form of one stored model (:mod:`fraudstream.models.stored`): its arrays for the
    kernels, or an XGBoost booster the kernels do not cover."""
    if name == "isolation_forest" and isinstance(model, ForestParams):
        return ForestTrees.from_params(model)
    if name == "logistic" and isinstance(model, LinearParams):
        return LinearModel.from_params(model)
    if name == "xgboost" and hasattr(model, "inplace_predict"):
        try:
            return XGBoostTrees.from_booster(model)
        except ValueError:
            booster = model.copy()
            booster.set_param({"nthread": 2})
            return booster
    raise ValueError(f"cannot serve model {name!r} of type {type(model).__name__}")


def _kind(served: Any) -> int:
    if served is None:
        return _step.GIVEN
    if isinstance(served, XGBoostTrees):
        return _step.XGBOOST
    if isinstance(served, ForestTrees):
        return _step.FOREST
    if isinstance(served, LinearModel):
        return _step.LINEAR
    return _step.GIVEN


def _booster_scores(booster: Any, X: np.ndarray) -> np.ndarray:
    # the bundle's feature set was checked when it loaded; per-call name checks only cost time
    return np.asarray(booster.inplace_predict(X, validate_features=False), dtype=np.float64)


def _booster_contributions(booster: Any, X: np.ndarray) -> np.ndarray:
    from xgboost import DMatrix

    contribs = booster.predict(DMatrix(X), pred_contribs=True, approx_contribs=True, validate_features=False)
    return np.ascontiguousarray(contribs[:, :-1], dtype=np.float64)
