"""The model zoo: how each model is built, fitted, scored and calibrated, and reduced to the form a
bundle stores (how calibrated scores are applied and combined is :mod:`fraudstream.models.ensemble`,
shared with scoring; the stored forms are :mod:`fraudstream.models.stored`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fraudstream.models.ensemble import logit
from fraudstream.models.stored import ForestParams, LinearParams, load_booster, save_booster

MODEL_NAMES = ("xgboost", "logistic", "isolation_forest")
SUPERVISED = ("xgboost", "logistic")


class TrainingError(Exception):
    """Training cannot proceed with the data or options given."""


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``fraudstream train``; defaults suit a 2-core machine."""

    models: tuple[str, ...] = MODEL_NAMES
    trials: int = 12
    folds: int = 3
    threads: int = 2
    seed: int = 7
    smote: bool = False
    block_fpr: float = 0.001
    flag_fpr: float = 0.01

    def __post_init__(self) -> None:
        unknown = set(self.models) - set(MODEL_NAMES)
        if unknown:
            raise TrainingError(f"unknown models {sorted(unknown)}: choose from {', '.join(MODEL_NAMES)}")
        if not set(self.models) & set(SUPERVISED):
            raise TrainingError(f"at least one supervised model is needed ({', '.join(SUPERVISED)})")
        if not 0 < self.block_fpr <= self.flag_fpr < 1:
            raise TrainingError("need 0 < block_fpr <= flag_fpr < 1")
        if self.folds < 2:
            raise TrainingError("folds must be at least 2")


def _imputer() -> SimpleImputer:
    return SimpleImputer(strategy="median", keep_empty_features=True)


def make_model(name: str, params: dict[str, Any], config: TrainConfig, pos_weight: float) -> Any:
    """A fresh, unfitted estimator for ``name`` with ``params`` from the search."""
    if name == "xgboost":
        from xgboost import XGBClassifier

        model: Any = XGBClassifier(
            tree_method="hist",
            n_jobs=config.threads,
            random_state=config.seed,
            eval_metric="aucpr",
            **{"scale_pos_weight": pos_weight, **params},
        )
        steps: list[tuple[str, Any]] = [("model", model)]
        if config.smote:
            steps = [("impute", _imputer()), *_smote(config), ("model", model)]
        return Pipeline(steps) if config.smote else model
    if name == "logistic":
        lr = LogisticRegression(max_iter=2000, class_weight=None if config.smote else "balanced", **params)
        return _pipeline(
            [("impute", _imputer()), ("scale", StandardScaler()), *_smote(config), ("model", lr)]
        )
    if name == "isolation_forest":
        forest = IsolationForest(n_estimators=200, random_state=config.seed, n_jobs=config.threads, **params)
        return Pipeline([("impute", _imputer()), ("model", forest)])
    raise TrainingError(f"unknown model {name!r}")


def _smote(config: TrainConfig) -> list[tuple[str, Any]]:
    if not config.smote:
        return []
    from imblearn.over_sampling import SMOTE

    return [("smote", SMOTE(random_state=config.seed))]


def _pipeline(steps: list[tuple[str, Any]]) -> Any:
    if any(name == "smote" for name, _ in steps):
        from imblearn.pipeline import Pipeline as ImbPipeline

        return ImbPipeline(steps)
    return Pipeline(steps)


def fit_model(name: str, model: Any, X: np.ndarray, y: np.ndarray) -> Any:
    if name == "isolation_forest":
        return model.fit(X[y == 0] if (y == 0).any() else X)
    return model.fit(X, y)


def raw_score(name: str, model: Any, X: np.ndarray) -> np.ndarray:
    """Higher means more suspicious; not yet a probability."""
    if name == "isolation_forest":
        return np.asarray(-model.score_samples(X), dtype=np.float64)
    return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)


def fit_platt(name: str, raw: np.ndarray, y: np.ndarray) -> list[float]:
    """Platt scaling on held-out scores: keeps each model's ranking, fixes its probabilities."""
    x = logit(name, raw).reshape(-1, 1)
    if len(np.unique(y)) < 2:
        return [1.0, 0.0]
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(x, y)
    return [float(lr.coef_[0, 0]), float(lr.intercept_[0])]


def weight_grid(names: list[str], step: float = 0.1) -> list[dict[str, float]]:
    """All weightings on a simplex grid, the supervised models always getting some weight."""
    ticks = np.round(np.arange(0, 1 + step / 2, step), 6)
    grids: list[dict[str, float]] = [{}]
    for name in names:
        grids = [{**g, name: float(t)} for g in grids for t in ticks]
    keep = [
        g
        for g in grids
        if abs(sum(g.values()) - 1) < 1e-6 and any(g[n] > 0 for n in names if n in SUPERVISED)
    ]
    return keep


def stored(name: str, model: Any) -> Any:
    """The form a bundle keeps of the fitted ``model`` (see :mod:`fraudstream.models.stored`), which
    scores as it does; ``ValueError`` for a model no stored form holds. Steps that act only in fitting
    (SMOTE) are left out, as the pipelines skip them when they score."""
    if name == "xgboost":
        return _stored_booster(model)
    if name == "logistic":
        steps = model.named_steps
        scaler, lr = steps["scale"], steps["model"]
        params = np.stack([steps["impute"].statistics_, scaler.mean_, scaler.scale_, lr.coef_[0]])
        return LinearParams(np.ascontiguousarray(params, dtype=np.float64), float(lr.intercept_[0]))
    if name == "isolation_forest":
        return _stored_forest(model)
    raise ValueError(f"no stored form for model {name!r}")


def _stored_booster(model: Any) -> Any:
    """A copy of the model's booster (or of a booster), as read back from XGBoost's model format.
    Behind an imputer
    (the SMOTE pipeline) the imputer is folded into the trees: a missing value takes, at each split,
    the side its imputed value would, which is exactly what imputing it first does."""
    if hasattr(model, "get_booster") or hasattr(model, "save_raw"):
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        return load_booster(save_booster(booster))
    steps = model.named_steps
    fill = np.asarray(steps["impute"].statistics_, dtype=np.float64).astype(np.float32)
    document = json.loads(steps["model"].get_booster().save_raw("json"))
    for tree in document["learner"]["gradient_booster"]["model"]["trees"]:
        left = np.asarray(tree["left_children"])
        feature = np.asarray(tree["split_indices"], dtype=np.int64)
        condition = np.asarray(tree["split_conditions"], dtype=np.float32)
        goes_left = fill[np.where(left < 0, 0, feature)] < condition  # XGBoost: left when value < condition
        tree["default_left"] = np.where(left < 0, tree["default_left"], goes_left).astype(int).tolist()
    return load_booster(json.dumps(document).encode())


def _stored_forest(pipeline: Any) -> ForestParams:
    """From a fitted ``Pipeline`` of a ``SimpleImputer`` (``impute``) and an ``IsolationForest``
    (``model``) that saw every feature in every tree (the walks read no feature subsets)."""
    from sklearn.ensemble._iforest import _average_path_length

    forest = pipeline.named_steps["model"]
    if forest._max_features != forest.n_features_in_:
        raise ValueError("a stored Isolation Forest needs max_features=1.0")
    trees = [estimator.tree_ for estimator in forest.estimators_]
    sizes = np.array([tree.node_count for tree in trees], dtype=np.int64)
    roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    offsets = np.repeat(roots, sizes)
    left = np.concatenate([tree.children_left for tree in trees]).astype(np.int64)
    right = np.concatenate([tree.children_right for tree in trees]).astype(np.int64)
    leaf = left == -1
    lengths = [
        forest._decision_path_lengths[i] + forest._average_path_length_per_tree[i] - 1.0
        for i in range(len(trees))
    ]
    return ForestParams(
        roots=roots,
        depths=np.array([tree.max_depth for tree in trees], dtype=np.int64),
        feature=np.where(leaf, 0, np.concatenate([tree.feature for tree in trees])).astype(np.int64),
        left=np.where(leaf, -1, left + offsets),
        right=np.where(leaf, -1, right + offsets),
        threshold=np.concatenate([tree.threshold for tree in trees]).astype(np.float64),
        value=np.concatenate(lengths).astype(np.float64),
        fill=np.asarray(pipeline.named_steps["impute"].statistics_, dtype=np.float64),
        denominator=len(trees) * float(_average_path_length([forest._max_samples])[0]),
    )
