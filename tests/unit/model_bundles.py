"""Model bundles made in the tests around fitted models, stored as training stores them, to serve them
as the scorer would."""

from __future__ import annotations

import copy
import json
import pickle
import zipfile
from pathlib import Path
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


class Touch:
    """Unpickling this creates ``path``: the kind of payload a pickled bundle can carry."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def payload(marker: Path) -> bytes:
    return pickle.dumps({"xgboost": Touch(marker)})


def rebuild(src: Path, dst: Path, members: dict[str, bytes | None], **manifest: object) -> Path:
    """``src`` with ``members`` replaced (``None`` drops one) or added, and the manifest changed."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name == "manifest.json":
                zout.writestr(name, json.dumps(json.loads(zin.read(name)) | manifest))
            elif name not in members:
                zout.writestr(name, zin.read(name))
        for name, data in members.items():
            if data is not None:
                zout.writestr(name, data)
    return dst


def pickled_bundle(src: Path, dst: Path, marker: Path) -> Path:
    """``src``'s manifest with its models as a pickle that creates ``marker`` when unpickled: a
    bundle as format 1 held them, or as an attacker would write one."""
    drop: dict[str, bytes | None] = {"models.json": None, "arrays.npz": None, "xgboost.ubj": None}
    return rebuild(src, dst, {**drop, "models.joblib": payload(marker)})
