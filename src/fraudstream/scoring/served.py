"""A bundle's models as served: one object scores a batch's feature rows into fraud probabilities and
explains them, the same code for one transaction and for ten thousand.

Scoring is one compiled call (:func:`._step.score`) that walks the trees, applies the logistic model,
calibrates and combines the scores with the ensemble's own functions, and, when asked, picks each
row's largest contributions both ways from the explaining model's, found in the same walk. The
bundle's stored models are read once, when the object is built, with the words that make the
explanations readable (:attr:`ServedModels.words`); XGBoost models the kernels do not cover
(categorical splits, another objective) are served by the booster itself, slower but the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np

from fraudstream.events.explanation import Explainer
from fraudstream.events.transaction import MODEL_DECISIONS
from fraudstream.features.plan import FeatureSet
from fraudstream.models.bundle import BundleError, ModelBundle
from fraudstream.models.ensemble import ANOMALY
from fraudstream.models.reference import Reference
from fraudstream.models.stored import ForestParams, LinearParams
from fraudstream.scoring import _step
from fraudstream.scoring._explain import TOP_REASONS, pick_explainer, reasons
from fraudstream.scoring._forest import ForestTrees
from fraudstream.scoring._linear import LinearModel
from fraudstream.scoring._words import explainer_words
from fraudstream.scoring._xgboost import XGBoostTrees

_NONE = np.empty((0, 0))
_DECISIONS = np.asarray(MODEL_DECISIONS, dtype=object)
T = TypeVar("T")


class Explained(NamedTuple):
    """Each row's picked contributions (rows × 2 :data:`TOP_REASONS`): the features' ``columns``, the
    first half those that raised the score most, largest first, the second those that lowered it
    most, most negative first, -1 past the last in each half; their ``contributions``, rounded to 4
    places, and ``values``."""

    columns: np.ndarray
    contributions: np.ndarray
    values: np.ndarray


class Scores(NamedTuple):
    """A batch's ensemble probability per row, the model decision it makes at the bundle's thresholds
    (APPROVE, FLAG or BLOCK), each served model's raw score (models × rows, the rows in
    :attr:`ServedModels.names` order): a probability for XGBoost and the logistic model,
    ``-IsolationForest.score_samples`` for the forest; and, when asked and a model explains, each
    row's picked contributions."""

    probability: np.ndarray
    decision: np.ndarray
    raw: np.ndarray
    explained: Explained | None = None


class ServedModels:
    """The models of ``bundle`` that have a weight in its ensemble, ready to score feature rows (rows ×
    the bundle's features, float64, NaN for a missing value).

    ``descriptions`` are the features' human descriptions, carried by the reasons (the feature names
    when left out); ``feature_set`` is the one computing the bundle's features, whose spec phrases
    the explanations (the bundle's own when left out). ``ValueError`` when a weighted model is of a
    kind that cannot be served.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        descriptions: Sequence[str] | None = None,
        feature_set: FeatureSet | None = None,
    ) -> None:
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
        tables = (
            (xgb.leaf_start, xgb.leaf_features, xgb.leaf_sums)
            if xgb
            else (np.zeros(1, np.int64), np.empty(0, np.uint32), np.empty(0, np.float32))
        )
        self._tables = tables
        self._explain = (*trees, *tables, params)
        self.words: Explainer | None = None
        """How the explainer's contributions read (``None`` when no model explains): each feature's
        description and sentence, the training data's medians from the bundle's reference, and where
        an entity's own usual value is."""
        if self.explainer is not None:
            if feature_set is None:
                feature_set = _bundle_features(bundle)
            medians = _medians(bundle)
            names, descriptions = self.feature_names, self.descriptions
            self.words = explainer_words(
                self.explainer, TOP_REASONS, names, descriptions, feature_set, medians
            )
        nothing = np.empty((0, width))
        # A decision's kernels compiled, or loaded from numba's cache, before any request; those of
        # contributions() and reasons(), which no decision uses, on their first call.
        self.score(nothing)
        if self.explainer is not None:
            self.score(nothing, explain=True)

    def score(self, X: np.ndarray, *, explain: bool = False) -> Scores:
        """The ensemble probability of each row of ``X``, its model decision, and each model's raw
        score; with ``explain``, each row's picked contributions as well (none when no model
        explains), found in the same walk of the trees."""
        if X.dtype != np.float64 or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=np.float64)
        given = self._given(X) if self._boosters else _NONE
        k = TOP_REASONS if explain and self.explainer is not None else 0
        kind, contributions = (self._explain_kind, _NONE) if k else (-1, _NONE)
        if k and kind == _step.GIVEN:
            assert self.explainer is not None
            contributions = _booster_contributions(self._boosters[self.explainer], X)
        probability, levels, raw, chosen = _step.score(
            X, self._kinds, given, *(*self._score, kind, contributions, *self._tables, k)
        )
        return Scores(probability, _DECISIONS[levels], raw, Explained(*chosen) if k else None)

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

    def reasons_of(self, explained: Explained, decisions: np.ndarray) -> list[list[dict[str, Any]]]:
        """Each row's model reasons (as :meth:`reasons` gives them) from its picked contributions
        ``explained``, as :meth:`score` gave them: the raising half of a FLAG's or BLOCK's."""
        n = len(decisions)
        rows = [i for i, d in enumerate(decisions.tolist()) if d != "APPROVE"]
        if self.explainer is None or not rows:
            return [[] for _ in range(n)]
        chosen = (explained.columns[rows], explained.contributions[rows], explained.values[rows])
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


def _bundle_features(bundle: ModelBundle) -> FeatureSet | None:
    """The feature set of the bundle's spec, when it loads and computes the bundle's features."""
    try:
        feature_set = bundle.feature_set()
    except (BundleError, ValueError):  # a bundle whose spec does not load here still scores
        return None
    return feature_set if list(feature_set.names) == list(bundle.manifest.feature_names) else None


def _medians(bundle: ModelBundle) -> np.ndarray | None:
    """The training data's median of each feature from the bundle's drift reference, in the bundle's
    feature order (NaN where unknown); ``None`` without a reference."""
    if bundle.reference is None:
        return None
    try:
        reference = Reference.from_dict(bundle.reference)
    except (KeyError, TypeError, ValueError):
        return None
    if reference.medians is None:
        return None
    at = {n: i for i, n in enumerate(reference.names)}
    medians = reference.medians
    return np.array([medians[at[n]] if n in at else np.nan for n in bundle.manifest.feature_names])


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
    contribs = np.asarray(contribs).reshape(X.shape[0], X.shape[1] + 1)  # no rows: XGBoost answers flat
    return np.ascontiguousarray(contribs[:, :-1], dtype=np.float64)
