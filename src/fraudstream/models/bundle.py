"""The model bundle: one versioned file holding everything needed to score.

A bundle is a zip with a readable ``manifest.json`` and a joblib pickle of the fitted models.
Pickles execute code when loaded: load bundles only from places you trust, as you would a Python
package. Loading checks the manifest first and refuses a bundle built for other features or
incompatible library versions, before unpickling anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from fraudstream.features.plan import FeatureSet
from fraudstream.features.spec import SpecError

BUNDLE_FORMAT = 1
PINNED_LIBRARIES = ("scikit-learn", "xgboost-cpu", "numpy")
#: The zip member holding the reference distributions for drift monitoring.
REFERENCE_MEMBER = "reference.json"


class BundleError(Exception):
    """A model bundle is missing, unreadable or does not fit this installation."""


class IncompatibleBundleError(BundleError):
    """The bundle was built for another feature set, bundle format or library version."""


def library_versions() -> dict[str, str]:
    return {name: version(name) for name in (*PINNED_LIBRARIES, "fraudstream")}


def fingerprint(*arrays: np.ndarray) -> str:
    """A short SHA-256 over the training data's ids, times and labels: which data made this model."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.asarray(array).astype(str).astype(bytes).tobytes())
    return digest.hexdigest()[:16]


@dataclass
class Manifest:
    """What a bundle is, readable without unpickling it (``unzip -p model.fsb manifest.json``)."""

    version: str
    feature_set_version: str
    feature_names: list[str]
    weights: dict[str, float]
    calibration: dict[str, list[float]]
    thresholds: dict[str, float]
    metrics: dict[str, Any]
    params: dict[str, Any]
    data_fingerprint: str
    feature_spec: dict[str, Any] | None = None
    """The feature spec the model was trained on, with what fitting learned (categorical values):
    serving compiles it, so it computes exactly these features. Bundles made before specs lack it
    and mean the packaged default."""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    libraries: dict[str, str] = field(default_factory=library_versions)
    bundle_format: int = BUNDLE_FORMAT


@dataclass
class ModelBundle:
    """Fitted models plus the manifest that says how to combine them, and the reference
    distributions drift monitoring compares live traffic with (``None`` in bundles made before
    references were stored: see :mod:`fraudstream.models.reference`)."""

    manifest: Manifest
    models: dict[str, Any]
    reference: dict[str, Any] | None = None

    def feature_set(self) -> FeatureSet:
        """The features this model reads (see :func:`bundle_feature_set`)."""
        return bundle_feature_set(self.manifest)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        joblib.dump(self.models, buffer, compress=3)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("manifest.json", json.dumps(asdict(self.manifest), indent=2, default=str))
            archive.writestr("models.joblib", buffer.getvalue())
            if self.reference is not None:
                archive.writestr(REFERENCE_MEMBER, json.dumps(self.reference))
        tmp.replace(path)
        return path


def read_manifest(path: Path) -> Manifest:
    """The manifest alone: safe to call on any file, since nothing is unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            raw = json.loads(archive.read("manifest.json"))
    except FileNotFoundError:
        raise BundleError(f"no model bundle at {path}: train one with `fraudstream train`") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not a fraudstream model bundle ({exc})") from None
    try:
        return Manifest(**raw)
    except TypeError as exc:
        raise IncompatibleBundleError(f"{path}: unrecognised manifest ({exc}); retrain the model") from None


def read_reference(path: Path) -> dict[str, Any] | None:
    """The bundle's reference distributions (``reference.json``), or ``None`` when it has none;
    nothing is unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            if REFERENCE_MEMBER not in archive.namelist():
                return None
            raw: dict[str, Any] = json.loads(archive.read(REFERENCE_MEMBER))
            return raw
    except FileNotFoundError:
        raise BundleError(f"no model bundle at {path}: train one with `fraudstream train`") from None
    except (zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not a fraudstream model bundle ({exc})") from None


def bundle_feature_set(manifest: Manifest, path: Path | str = "bundle") -> FeatureSet:
    """The feature set a bundle's model was trained on, compiled from the spec it carries."""
    if manifest.feature_spec is None:
        from fraudstream.features.engine import default_feature_set

        return default_feature_set()
    try:
        return FeatureSet.from_dict(manifest.feature_spec)
    except SpecError as exc:
        raise IncompatibleBundleError(
            f"model bundle {path}: its feature spec does not load here: {exc}"
        ) from None


def check_compatible(manifest: Manifest, path: Path, feature_set: FeatureSet | None = None) -> FeatureSet:
    """Refuse a bundle this installation cannot serve; returns the feature set it computes. With
    ``feature_set``, the bundle must also have been trained on exactly those features."""
    problems = []
    if manifest.bundle_format != BUNDLE_FORMAT:
        problems.append(f"bundle format {manifest.bundle_format}, this fraudstream reads {BUNDLE_FORMAT}")
    bundled = bundle_feature_set(manifest, path)
    if manifest.feature_set_version != bundled.version or manifest.feature_names != bundled.names:
        problems.append(
            f"feature set {manifest.feature_set_version} ({len(manifest.feature_names)} features), "
            f"its spec computes {bundled.version} ({len(bundled.names)} features)"
        )
    if feature_set is not None and feature_set.names != manifest.feature_names:
        problems.append(
            f"feature set {manifest.feature_set_version} ({len(manifest.feature_names)} features), "
            f"expected {feature_set.version} ({len(feature_set.names)} features)"
        )
    installed = library_versions()
    for name in PINNED_LIBRARIES:
        built, have = manifest.libraries.get(name, "?"), installed[name]
        if built.split(".")[:2] != have.split(".")[:2]:
            problems.append(f"{name} {built} at training, {have} installed")
    if problems:
        raise IncompatibleBundleError(
            f"model bundle {path} does not fit this installation: {'; '.join(problems)}. "
            "Retrain with `fraudstream train`, or install the versions it was built with."
        )
    return bundled


def load_bundle(path: Path, feature_set: FeatureSet | None = None) -> ModelBundle:
    """Load a bundle after checking it fits; only load bundles from trusted places (they hold pickles)."""
    manifest = read_manifest(path)
    check_compatible(manifest, path, feature_set)
    with zipfile.ZipFile(path) as archive:
        models = joblib.load(io.BytesIO(archive.read("models.joblib")))
    return ModelBundle(manifest=manifest, models=models, reference=read_reference(path))
