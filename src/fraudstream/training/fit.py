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


def search(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    pos_weight: float,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Best hyperparameters by mean average precision over time-ordered folds (Optuna TPE)."""
    if name not in SUPERVISED or config.trials <= 0:
        return {}
    folds = list(TimeSeriesSplit(n_splits=config.folds).split(X))
    done = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal done
        params = _space(name, trial, pos_weight)
        scores = []
        for fit_idx, val_idx in folds:
            if y[fit_idx].sum() == 0 or y[val_idx].sum() == 0:
                continue
            model = fit_model(name, make_model(name, params, config, pos_weight), X[fit_idx], y[fit_idx])
            scores.append(metrics.average_precision(y[val_idx], raw_score(name, model, X[val_idx])))
        done += 1
        if progress:
            progress(f"search {name}", done, config.trials)
        return float(np.mean(scores)) if scores else 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed))
    study.optimize(objective, n_trials=config.trials)
    return dict(study.best_params)


def out_of_fold(
    name: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray, config: TrainConfig, pos_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores of every later fold from a model fitted on the days before it, and their row indexes.

    A fold whose earlier days hold no fraud (or nothing else) cannot be fitted and is left out: rare
    fraud in a short window is common in small files."""
    rows, scores = [], []
    for fit_idx, val_idx in TimeSeriesSplit(n_splits=config.folds).split(X):
        if y[fit_idx].min() == y[fit_idx].max():
            continue
        model = fit_model(name, make_model(name, params, config, pos_weight), X[fit_idx], y[fit_idx])
        rows.append(val_idx)
        scores.append(raw_score(name, model, X[val_idx]))
    if not rows:
        raise TrainingError(
            f"every time-ordered fold of the training window lacks fraud or legitimate transactions "
            f"({int(y.sum())} fraud in {len(y)} rows): widen the training window or use fewer --folds"
        )
    return np.concatenate(rows), np.concatenate(scores)


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
    """Fit the configured models on time-ordered training rows and pack them into a bundle."""
    if len(y) == 0 or y.sum() == 0 or y.sum() == len(y):
        raise TrainingError(
            f"training data needs both fraud and legitimate transactions with known labels "
            f"(got {len(y)} rows, {int(y.sum())} fraud): widen the training window"
        )
    order = np.argsort(timestamps, kind="stable")
    X, y = X[order], y[order].astype(np.int64)
    pos_weight = float((y == 0).sum() / max(y.sum(), 1))
    best: dict[str, dict[str, Any]] = {}
    oof: dict[str, np.ndarray] = {}
    oof_rows = np.empty(0, dtype=np.int64)
    platt: dict[str, list[float]] = {}
    for name in config.models:
        best[name] = search(name, X, y, config, pos_weight, progress)
        oof_rows, raw = out_of_fold(name, best[name], X, y, config, pos_weight)
        platt[name] = fit_platt(name, raw, y[oof_rows])
        oof[name] = calibrate(name, raw, platt[name])
        if progress:
            progress(f"validate {name}", 1, 1)
    y_oof = y[oof_rows]
    weights = max(
        weight_grid(list(config.models)), key=lambda w: metrics.average_precision(y_oof, combine(oof, w))
    )
    ensemble = combine(oof, weights)
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
        if progress:
            progress(f"fit {name}", 1, 1)
    print_fp = fingerprint(transaction_ids[order], timestamps[order], y)
    manifest = Manifest(
        version=f"{np.datetime64('now', 's').astype(str).replace(':', '').replace('-', '')}-{print_fp[:8]}",
        feature_set_version=feature_set.version,
        feature_names=list(feature_set.names),
        weights={k: float(v) for k, v in weights.items()},
        calibration=platt,
        thresholds={k: float(v) for k, v in thresholds.items()},
        metrics={"validation": validation.to_dict(), "train_rows": len(y), "train_fraud": int(y.sum())},
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
