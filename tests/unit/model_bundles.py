"""Model bundles made in the tests around fitted models, stored as training stores them, to serve them
as the scorer would."""

from __future__ import annotations

import copy
from typing import Any

from fraudstream.models.bundle import Manifest, ModelBundle
from fraudstream.scoring.served import ServedModels
from fraudstream.training.models import stored


def bundle_of(
    models: dict[str, Any], n_features: int, weights: dict[str, float] | None = None
) -> ModelBundle:
    """A bundle of the fitted ``models`` (in their stored forms; the estimators as ``fitted``) on
    ``n_features`` features ``f0``, ``f1``..., each calibrated by the identity line, weighted equally
    unless ``weights`` says otherwise."""
    weights = weights if weights is not None else {name: 1.0 for name in models}
    manifest = Manifest(
        version="test",
        feature_set_version="test",
        feature_names=[f"f{j}" for j in range(n_features)],
        weights=weights,
        calibration={name: [1.0, 0.0] for name in models},
        thresholds={"flag": 0.5, "block": 0.9},
        metrics={},
        params={},
        data_fingerprint="test",
    )
    kept = {name: stored(name, model) for name, model in models.items()}
    return ModelBundle(manifest=manifest, models=kept, fitted=dict(models))


def served_alone(name: str, model: Any, n_features: int) -> ServedModels:
    """``model`` served as the only model of a bundle, under ``name``."""
    return ServedModels(bundle_of({name: model}, n_features))


def reweighted(bundle: ModelBundle, weights: dict[str, float] | None) -> ModelBundle:
    """``bundle`` with other ensemble weights (its own when ``None``), the models shared."""
    out = copy.copy(bundle)
    out.manifest = copy.deepcopy(bundle.manifest)
    if weights is not None:
        out.manifest.weights = weights
    return out
