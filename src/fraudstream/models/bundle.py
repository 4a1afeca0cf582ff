"""The model bundle: one versioned file holding everything needed to score, and nothing that runs.

A bundle is a zip of data only: ``manifest.json`` (what the bundle is, and how its models combine),
``models.json`` (which models it holds, and of what kind), ``arrays.npz`` (the models' numbers,
read with ``allow_pickle=False``), ``xgboost.ubj`` (an XGBoost booster, in XGBoost's own model
format) and, when training stored them, ``reference.json`` (drift monitoring's reference
distributions). See :mod:`fraudstream.models.stored` for the forms the models take.

A model registry is a place anyone who can write to it hands models to every server: a bundle that
could carry code would let them run it there. So loading reads nothing but JSON, plain arrays and
XGBoost's model format, and refuses any other member, including the pickled models of bundles
before format 2 (``models.joblib``), with a message to retrain. What a bundle can still do, in the
wrong hands, is score badly: who may move a registry's champion decides how transactions are
judged, and is to be trusted that far (see the model registry's documentation).

Loading checks the manifest first and refuses a bundle built for other features or incompatible
library versions, before reading any model.
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

import numpy as np

from fraudstream.features.plan import FeatureSet
from fraudstream.features.spec import SpecError
from fraudstream.models.stored import (
    KINDS,
    ForestParams,
    LinearParams,
    StoredModelError,
    load_booster,
    save_booster,
)

BUNDLE_FORMAT = 2
"""2: models as arrays, JSON and XGBoost's model format; 1 held them as a pickle, no longer loaded."""
PINNED_LIBRARIES = ("scikit-learn", "xgboost-cpu", "numpy")
MANIFEST_MEMBER = "manifest.json"
MODELS_MEMBER = "models.json"
ARRAYS_MEMBER = "arrays.npz"
BOOSTER_MEMBER = "xgboost.ubj"
#: The zip member holding the reference distributions for drift monitoring.
REFERENCE_MEMBER = "reference.json"
MEMBERS = frozenset({MANIFEST_MEMBER, MODELS_MEMBER, ARRAYS_MEMBER, BOOSTER_MEMBER, REFERENCE_MEMBER})
"""Every member a bundle may hold; a bundle holding any other is refused."""
PICKLED_MEMBER = "models.joblib"
"""Where bundles before format 2 kept their models, as a pickle: refused, never read."""
RETRAIN = "retrain it with this version of fraudstream (`fraudstream train`)"


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
    input_mapping: dict[str, Any] | None = None
    """The YAML mapping of the team's own events the model was trained through (``train --mapping``),
    which every live path applies (see :mod:`fraudstream.events.mapping`); ``None`` for canonical
    transactions."""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    libraries: dict[str, str] = field(default_factory=library_versions)
    bundle_format: int = BUNDLE_FORMAT


@dataclass
class ModelBundle:
    """Fitted models plus the manifest that says how to combine them, and the reference
    distributions drift monitoring compares live traffic with (``None`` in bundles made before
    references were stored: see :mod:`fraudstream.models.reference`).

    ``models`` maps each model's name to its stored form (:mod:`fraudstream.models.stored`): an
    XGBoost ``Booster`` for ``xgboost``, :class:`~fraudstream.models.stored.LinearParams` for
    ``logistic``, :class:`~fraudstream.models.stored.ForestParams` for ``isolation_forest``. A bundle
    just trained holds the same forms as one loaded from its file, so both score alike.
    ``fitted`` keeps the estimators training fitted, in the process that trained them only, for
    comparing with them: it is never saved, and nothing that scores reads it."""

    manifest: Manifest
    models: dict[str, Any]
    reference: dict[str, Any] | None = None
    fitted: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def feature_set(self) -> FeatureSet:
        """The features this model reads (see :func:`bundle_feature_set`)."""
        return bundle_feature_set(self.manifest)

    def save(self, path: Path) -> Path:
        """Write the bundle to ``path`` (whole or not at all: it is written beside and moved in)."""
        kinds, arrays, booster = _encode(self.models)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST_MEMBER, json.dumps(asdict(self.manifest), indent=2, default=str))
            archive.writestr(MODELS_MEMBER, json.dumps(kinds, indent=2))
            if arrays:
                buffer = io.BytesIO()
                np.savez(buffer, allow_pickle=False, **arrays)
                archive.writestr(ARRAYS_MEMBER, buffer.getvalue())
            if booster is not None:
                archive.writestr(BOOSTER_MEMBER, booster)
            if self.reference is not None:
                archive.writestr(REFERENCE_MEMBER, json.dumps(self.reference))
        tmp.replace(path)
        return path


def _encode(models: dict[str, Any]) -> tuple[dict[str, dict[str, str]], dict[str, np.ndarray], bytes | None]:
    """``models.json``'s entries, the arrays (named ``<model>.<array>``) and the booster's model."""
    kinds: dict[str, dict[str, str]] = {}
    arrays: dict[str, np.ndarray] = {}
    booster = None
    for name, model in models.items():
        kind = KINDS.get(name)
        if kind == "xgboost" and hasattr(model, "save_raw"):
            booster = save_booster(model)
        elif (kind == "linear" and isinstance(model, LinearParams)) or (
            kind == "forest" and isinstance(model, ForestParams)
        ):
            arrays |= {f"{name}.{key}": value for key, value in model.arrays().items()}
        else:
            raise BundleError(
                f"cannot save model {name!r} of type {type(model).__name__}: a bundle holds "
                "the stored forms of fraudstream.models.stored"
            )
        kinds[name] = {"kind": str(kind)}
    return kinds, arrays, booster


def _decode(path: Path, archive: zipfile.ZipFile, n_features: int) -> dict[str, Any]:
    """The models of a bundle whose members were checked: JSON, plain arrays and a booster."""
    try:
        kinds = json.loads(archive.read(MODELS_MEMBER))
        names = set(archive.namelist())
        arrays: dict[str, np.ndarray] = {}
        if ARRAYS_MEMBER in names:
            with np.load(io.BytesIO(archive.read(ARRAYS_MEMBER)), allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
    except (KeyError, json.JSONDecodeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"model bundle {path}: its models do not read ({exc}); {RETRAIN}") from None
    if not isinstance(kinds, dict) or not kinds:
        raise BundleError(f"model bundle {path}: {MODELS_MEMBER} names no models; {RETRAIN}")
    models: dict[str, Any] = {}
    for name, entry in kinds.items():
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if KINDS.get(name) is None or kind != KINDS[name]:
            raise IncompatibleBundleError(
                f"model bundle {path}: model {name!r} of kind {kind!r} is not one this fraudstream "
                f"serves ({', '.join(f'{n} as {k}' for n, k in KINDS.items())}); {RETRAIN}"
            )
        prefix = f"{name}."
        own = {key.removeprefix(prefix): value for key, value in arrays.items() if key.startswith(prefix)}
        try:
            if kind == "xgboost":
                if BOOSTER_MEMBER not in names:
                    raise StoredModelError(f"no {BOOSTER_MEMBER}")
                models[name] = _booster(archive.read(BOOSTER_MEMBER), n_features)
            elif kind == "linear":
                models[name] = LinearParams.from_arrays(own, n_features)
            else:
                models[name] = ForestParams.from_arrays(own, n_features)
        except (StoredModelError, ValueError, zipfile.BadZipFile) as exc:
            raise BundleError(
                f"model bundle {path}: model {name!r} does not read ({exc}); {RETRAIN}"
            ) from None
    return models


def _booster(raw: bytes, n_features: int) -> Any:
    """The booster of ``raw``, refused unless it reads the bundle's number of features."""
    try:
        booster = load_booster(raw)
    except Exception as exc:  # XGBoost raises its own error type, from a library loaded only here
        raise StoredModelError(f"XGBoost cannot read it: {exc}") from None
    if booster.num_features() != n_features:
        raise StoredModelError(f"the booster reads {booster.num_features()} features, not {n_features}")
    return booster


def read_manifest(path: Path) -> Manifest:
    """The manifest alone: safe to call on any file, since it is JSON only."""
    try:
        with zipfile.ZipFile(path) as archive:
            raw = json.loads(archive.read(MANIFEST_MEMBER))
    except FileNotFoundError:
        raise BundleError(f"no model bundle at {path}: train one with `fraudstream train`") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not a fraudstream model bundle ({exc})") from None
    try:
        return Manifest(**raw)
    except TypeError as exc:
        raise IncompatibleBundleError(f"{path}: unrecognised manifest ({exc}); retrain the model") from None


def read_reference(path: Path) -> dict[str, Any] | None:
    """The bundle's reference distributions (``reference.json``), or ``None`` when it has none; JSON
    only."""
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
        held = " (pickled models, no longer loaded)" if manifest.bundle_format == 1 else ""
        problems.append(
            f"bundle format {manifest.bundle_format}{held}, this fraudstream reads {BUNDLE_FORMAT}"
        )
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


def check_members(path: Path, names: list[str]) -> None:
    """Refuse a bundle holding anything but the members a bundle may hold (:data:`MEMBERS`): a
    pickle of models from before format 2 above all, which would run code if it were read."""
    if PICKLED_MEMBER in names:
        raise IncompatibleBundleError(
            f"model bundle {path} holds pickled models ({PICKLED_MEMBER}, bundle format 1), which "
            f"fraudstream no longer loads since unpickling can run any code; {RETRAIN}"
        )
    unknown = sorted(set(names) - MEMBERS)
    if unknown or len(names) != len(set(names)) or MODELS_MEMBER not in names:
        what = (
            f"unknown members {', '.join(unknown)}"
            if unknown
            else f"no {MODELS_MEMBER}, or a repeated member"
        )
        raise IncompatibleBundleError(
            f"model bundle {path} is not a bundle this fraudstream reads ({what}); a bundle holds "
            f"only {', '.join(sorted(MEMBERS))}: {RETRAIN}"
        )


def load_bundle(path: Path, feature_set: FeatureSet | None = None) -> ModelBundle:
    """Load a bundle after checking it fits this installation and holds data only: its members are
    JSON, arrays read without pickle, and an XGBoost model in XGBoost's own format, so loading one
    runs no code from it (a bundle with any other member is refused, unread)."""
    manifest = read_manifest(path)
    with zipfile.ZipFile(path) as archive:
        check_members(path, archive.namelist())
        check_compatible(manifest, path, feature_set)
        models = _decode(path, archive, len(manifest.feature_names))
    return ModelBundle(manifest=manifest, models=models, reference=read_reference(path))
