"""Training: search, out-of-fold calibration, ensemble weights, thresholds, final fit.

Everything that is tuned is tuned on out-of-fold predictions from time-ordered folds of the
training window (each fold validated on the days after it), never on a random split and never on
the test window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import optuna
from sklearn.model_selection import TimeSeriesSplit

from fraudstream.features.plan import FeatureSet
from fraudstream.models.bundle import Manifest, ModelBundle, fingerprint
from fraudstream.models.ensemble import calibrate, combine
from fraudstream.models.reference import IMPORTANT, build_reference
from fraudstream.scoring.served import ServedModels
from fraudstream.training import metrics
from fraudstream.training.importance import top_features
from fraudstream.training.models import (
    SUPERVISED,
    TrainConfig,
    TrainingError,
    fit_model,
    fit_platt,
    make_model,
    raw_score,
    stored,
    weight_grid,
)

Progress = Callable[[str, int, int], None]


def _space(name: str, trial: optuna.Trial, pos_weight: float) -> dict[str, Any]:
    if name == "xgboost":
        return {
            "n_estimators": trial.suggest_int("n_estimators", 100, 500, step=50),
            "max_depth": trial.suggest_int("max_depth", 3, 8),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 20.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.6, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 10.0, log=True),
            "scale_pos_weight": trial.suggest_float("scale_pos_weight", 1.0, max(pos_weight, 1.0), log=True),
        }
    if name == "logistic":
        return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)}
    return {}


Fold = tuple[np.ndarray, np.ndarray]
"""The rows a fold fits on (every row before its validation part) and the rows it validates on."""


def time_folds(y: np.ndarray, n: int) -> list[Fold]:
    """Expanding-window folds of time-ordered rows: the training rows cut into ``n + 1`` parts in time,
    fold ``k`` fitted on parts ``0..k`` and validated on part ``k + 1``, so every model is judged on
    days after the ones it learnt from. The rows are those of the training window, whose labels were
    all known by its end (the test start), so no fold sees a label that arrived later.

    A fold whose earlier days hold no fraud (or nothing else) cannot be fitted and is left out: rare
    fraud in a short window is common in small files."""
    folds = [(fit, val) for fit, val in TimeSeriesSplit(n_splits=n).split(y) if y[fit].min() != y[fit].max()]
    if not folds:
        raise TrainingError(
            f"every time-ordered fold of the training window lacks fraud or legitimate transactions "
            f"({int(y.sum())} fraud in {len(y)} rows): widen the training window or use fewer --folds"
        )
    return folds


def search(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    folds: list[Fold],
    config: TrainConfig,
    pos_weight: float,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], list[np.ndarray] | None]:
    """Best hyperparameters by mean average precision over the time-ordered ``folds`` (Optuna TPE),
    and the best trial's raw scores of each fold's validation rows (``None`` without a search), so
    that validating the chosen parameters fits nothing twice."""
    if name not in SUPERVISED or config.trials <= 0:
        return {}, None
    scored: dict[int, list[np.ndarray]] = {}
    label = f"search {name}"
    if progress:
        progress(label, 0, config.trials)

    def objective(trial: optuna.Trial) -> float:
        params = _space(name, trial, pos_weight)
        scores, fold_scores = [], []
        for fit_idx, val_idx in folds:
            model = fit_model(name, make_model(name, params, config, pos_weight), X[fit_idx], y[fit_idx])
            fold_scores.append(raw_score(name, model, X[val_idx]))
            if y[val_idx].any():
                scores.append(metrics.average_precision(y[val_idx], fold_scores[-1]))
        scored[trial.number] = fold_scores
        if progress:
            progress(label, trial.number + 1, config.trials)
        return float(np.mean(scores)) if scores else 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed))
    study.optimize(objective, n_trials=config.trials)
    return dict(study.best_params), scored[study.best_trial.number]


def out_of_fold(
    name: str,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    folds: list[Fold],
    config: TrainConfig,
    pos_weight: float,
) -> list[np.ndarray]:
    """Raw scores of each fold's validation rows from a model fitted on the days before them."""
    return [
        raw_score(name, fit_model(name, make_model(name, params, config, pos_weight), X[f], y[f]), X[v])
        for f, v in folds
    ]


SELECTION_METRIC = "average_precision"
"""What model selection maximises: at fraud base rates it ranks models by the alerts worth raising,
where the ROC AUC is dominated by the mass of easy legitimate transactions."""


def _spread(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation over folds (NaN with fewer than two), and each fold's value."""
    kept = [v for v in values if not np.isnan(v)]
    mean = float(np.mean(kept)) if kept else float("nan")
    sd = float(np.std(kept, ddof=1)) if len(kept) > 1 else float("nan")
    return {"mean": mean, "sd": sd, "folds": [float(v) for v in values]}


def _fold_figures(y: np.ndarray, folds: list[Fold], scores: list[np.ndarray]) -> dict[str, Any]:
    pairs = [(y[val], s) for (_, val), s in zip(folds, scores, strict=True)]
    return {
        "roc_auc": _spread([metrics.roc_auc(t, s) for t, s in pairs]),
        "average_precision": _spread([metrics.average_precision(t, s) for t, s in pairs]),
    }


def select(
    y: np.ndarray, folds: list[Fold], calibrated: dict[str, list[np.ndarray]]
) -> tuple[dict[str, float], dict[str, Any]]:
    """The weights to serve, and the fold figures they were chosen on.

    The simplest model wins unless a blend is better beyond the folds' spread: the strongest single
    supervised model (by mean average precision over the folds) is kept unless the best blend on the
    weight grid beats it by a mean gain larger than the gain's standard deviation across the folds.
    A blend chosen on one pooled fold can lean on a weak model that happened to rank one period
    well, and lose to the single model on the next."""
    names = list(calibrated)
    used = [k for k, (_, val) in enumerate(folds) if y[val].any() and not y[val].all()]

    def per_fold(weights: dict[str, float]) -> list[float]:
        return [
            metrics.average_precision(y[folds[k][1]], combine({n: calibrated[n][k] for n in names}, weights))
            for k in used
        ]

    singles = {n: {m: float(m == n) for m in names} for n in names if n in SUPERVISED}
    single_ap = {n: per_fold(w) for n, w in singles.items()}
    best_single = max(singles, key=lambda n: (np.mean(single_ap[n]) if used else 0.0, -names.index(n)))
    blends = [w for w in weight_grid(names) if sum(v > 0 for v in w.values()) > 1]
    blend_ap = [per_fold(w) for w in blends]
    best = max(range(len(blends)), key=lambda i: np.mean(blend_ap[i]) if used else 0.0, default=None)
    candidates: dict[str, dict[str, Any]] = {}
    for n, w in singles.items():
        candidates[n] = {"weights": w, **_fold_figures(y, folds, _combined(calibrated, w))}
    choice, weights, gain = best_single, singles[best_single], None
    if best is not None:
        candidates["blend"] = {
            "weights": blends[best],
            **_fold_figures(y, folds, _combined(calibrated, blends[best])),
        }
        gain = _spread(list(np.subtract(blend_ap[best], single_ap[best_single])))
        if gain["mean"] > 0 and gain["mean"] > gain["sd"]:  # a NaN spread (one fold) keeps the single model
            choice, weights = "blend", blends[best]
    selection = {
        "metric": SELECTION_METRIC,
        "folds": len(used),
        "candidates": candidates,
        "best_single": best_single,
        "chosen": choice,
        "blend_gain": gain,
    }
    return weights, selection


def _combined(calibrated: dict[str, list[np.ndarray]], weights: dict[str, float]) -> list[np.ndarray]:
    folds = len(next(iter(calibrated.values())))
    return [combine({n: s[k] for n, s in calibrated.items()}, weights) for k in range(folds)]


class _Fits:
    """Progress through training: each stage's steps (search trials, calibration, choosing weights),
    and every model fit counted against all the fits training will make, so that a bar shows the
    time left for the whole of it."""

    LABEL = "train: model fits"

    def __init__(self, progress: Progress | None, config: TrainConfig, folds: int) -> None:
        self.progress = progress
        self.folds = folds
        searched = [n for n in config.models if n in SUPERVISED and config.trials > 0]
        self.total = (len(searched) * config.trials + len(config.models) - len(searched)) * folds
        self.total += len(config.models)  # the final fits on every training row
        self.done = 0
        self.stage(self.LABEL, 0, self.total)

    def stage(self, label: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(label, done, total)

    def add(self, fits: int) -> None:
        self.done += fits
        self.stage(self.LABEL, self.done, self.total)

    def per_trial(self, label: str, done: int, total: int) -> None:
        """The search's progress: its own stage, and one trial's fits on every fold."""
        self.stage(label, done, total)
        if done:
            self.add(self.folds)


def train_bundle(
    X: np.ndarray,
    y: np.ndarray,
    timestamps: np.ndarray,
    transaction_ids: np.ndarray,
    feature_set: FeatureSet,
    config: TrainConfig,
    *,
    params: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> ModelBundle:
    """Fit the configured models on time-ordered training rows and pack them into a bundle: each
    model searched and validated over time-ordered folds, Platt-calibrated on its out-of-fold scores,
    the served weights chosen by :func:`select`, the thresholds set on the chosen model's out-of-fold
    scores, then every model fitted on all the rows."""
    if len(y) == 0 or y.sum() == 0 or y.sum() == len(y):
        raise TrainingError(
            f"training data needs both fraud and legitimate transactions with known labels "
            f"(got {len(y)} rows, {int(y.sum())} fraud): widen the training window"
        )
    order = np.argsort(timestamps, kind="stable")
    X, y = X[order], y[order].astype(np.int64)
    pos_weight = float((y == 0).sum() / max(y.sum(), 1))
    folds = time_folds(y, config.folds)
    y_oof = np.concatenate([y[val] for _, val in folds])
    best: dict[str, dict[str, Any]] = {}
    calibrated: dict[str, list[np.ndarray]] = {}
    platt: dict[str, list[float]] = {}
    fits = _Fits(progress, config, len(folds))
    for name in config.models:
        best[name], raw = search(name, X, y, folds, config, pos_weight, fits.per_trial)
        if raw is None:
            raw = out_of_fold(name, best[name], X, y, folds, config, pos_weight)
            fits.add(len(folds))
        platt[name] = fit_platt(name, np.concatenate(raw), y_oof)
        calibrated[name] = [calibrate(name, r, platt[name]) for r in raw]
        fits.stage("calibrate", len(platt), len(config.models))
    fits.stage("choose weights", 0, 1)
    weights, selection = select(y, folds, calibrated)
    fits.stage("choose weights", 1, 1)
    ensemble = np.concatenate(_combined(calibrated, weights))
    thresholds = {
        "flag": metrics.threshold_at_fpr(y_oof, ensemble, config.flag_fpr),
        "block": metrics.threshold_at_fpr(y_oof, ensemble, config.block_fpr),
    }
    thresholds["flag"] = min(thresholds["flag"], thresholds["block"])
    validation = metrics.evaluate(
        y_oof, ensemble, flag_threshold=thresholds["flag"], block_threshold=thresholds["block"]
    )
    fitted, models = {}, {}
    for name in config.models:
        fitted[name] = fit_model(name, make_model(name, best[name], config, pos_weight), X, y)
        models[name] = stored(name, fitted[name])
        fits.add(1)
    print_fp = fingerprint(transaction_ids[order], timestamps[order], y)
    manifest = Manifest(
        version=f"{np.datetime64('now', 's').astype(str).replace(':', '').replace('-', '')}-{print_fp[:8]}",
        feature_set_version=feature_set.version,
        feature_names=list(feature_set.names),
        weights={k: float(v) for k, v in weights.items()},
        calibration=platt,
        thresholds={k: float(v) for k, v in thresholds.items()},
        metrics={
            "validation": validation.to_dict(),
            "selection": metrics.json_ready(selection),
            "train_rows": len(y),
            "train_fraud": int(y.sum()),
        },
        params={"models": best, "config": metrics.json_ready(asdict(config))},
        data_fingerprint=print_fp,
        feature_spec=feature_set.to_dict(),
    )
    bundle = ModelBundle(manifest=manifest, models=models, fitted=fitted)
    # drift compares live traffic with the training rows and with scores of rows the models did not fit
    important = [f["feature"] for f in top_features(bundle, IMPORTANT)]
    reference = build_reference(X, feature_set.names, ensemble, manifest.thresholds, important=important)
    bundle.reference = reference.to_dict()
    return bundle


def predict(bundle: ModelBundle, X: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The ensemble probability and each weighted model's calibrated probability, for a feature
    matrix, scored as a server scores it (:class:`~fraudstream.scoring.served.ServedModels`)."""
    served = ServedModels(bundle)
    scores = served.score(X)
    per_model = {
        name: calibrate(name, raw, bundle.manifest.calibration[name])
        for name, raw in zip(served.names, scores.raw, strict=True)
    }
    return scores.probability, per_model
