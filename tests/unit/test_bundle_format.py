"""The bundle file holds data, never code: a pickle in any member is refused unread, whatever the
manifest claims, and every model kind read back from a file scores and explains as it did before it
was saved."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fraudstream.features.engine import default_feature_set
from fraudstream.models.bundle import (
    BUNDLE_FORMAT,
    BundleError,
    IncompatibleBundleError,
    ModelBundle,
    check_compatible,
    load_bundle,
    read_manifest,
)
from fraudstream.scoring.served import ServedModels
from fraudstream.training.importance import top_features
from fraudstream.training.models import raw_score
from tests.unit.model_bundles import Touch, bundle_of, payload, rebuild


def test_the_payload_runs_when_unpickled(tmp_path: Path) -> None:
    """The payload the refusals below are tested with is live: unpickled, it makes its file."""
    marker = tmp_path / "ran"
    pickle.loads(payload(marker))
    assert marker.exists()


@pytest.mark.parametrize("claimed", [1, BUNDLE_FORMAT])
def test_a_pickled_bundle_is_refused_and_never_unpickled(
    bundle_path: Path, tmp_path: Path, claimed: int
) -> None:
    """A format-1 bundle, or one whose copied manifest claims the current format, with its models as
    a pickle: refused, saying to retrain, and the pickle never runs."""
    marker = tmp_path / "ran"
    drop: dict[str, bytes | None] = {"models.json": None, "arrays.npz": None, "xgboost.ubj": None}
    pickled = rebuild(
        bundle_path,
        tmp_path / "pickled.fsb",
        {**drop, "models.joblib": payload(marker)},
        bundle_format=claimed,
    )
    beside = rebuild(bundle_path, tmp_path / "beside.fsb", {"models.joblib": payload(marker)})
    for path in (pickled, beside):
        with pytest.raises(IncompatibleBundleError, match=r"pickled models .*`fraudstream train`"):
            load_bundle(path)
    assert not marker.exists()


@pytest.mark.parametrize("member", ["arrays.npz", "xgboost.ubj", "models.json"])
def test_a_pickle_in_a_member_of_the_format_is_refused_unread(
    bundle_path: Path, tmp_path: Path, member: str
) -> None:
    marker = tmp_path / "ran"
    path = rebuild(bundle_path, tmp_path / "disguised.fsb", {member: payload(marker)})
    with pytest.raises(BundleError, match="fraudstream train"):
        load_bundle(path)
    assert not marker.exists()


def test_an_array_of_python_objects_is_refused(bundle_path: Path, tmp_path: Path) -> None:
    """``.npy`` can hold pickled objects; the bundle's arrays are read with ``allow_pickle=False``."""
    marker = tmp_path / "ran"
    with zipfile.ZipFile(bundle_path) as archive, np.load(io.BytesIO(archive.read("arrays.npz"))) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["logistic.params"] = np.array([Touch(marker)], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = rebuild(bundle_path, tmp_path / "objects.fsb", {"arrays.npz": buffer.getvalue()})
    with pytest.raises(BundleError, match=r"Object arrays .*`fraudstream train`"):
        load_bundle(path)
    assert not marker.exists()


def test_unknown_members_and_kinds_are_refused(bundle_path: Path, tmp_path: Path) -> None:
    extra = rebuild(bundle_path, tmp_path / "extra.fsb", {"hook.py": b"import os"})
    with pytest.raises(IncompatibleBundleError, match=r"unknown members hook\.py.*fraudstream train"):
        load_bundle(extra)
    kinds = json.dumps({"xgboost": {"kind": "pickle"}}).encode()
    other = rebuild(bundle_path, tmp_path / "kind.fsb", {"models.json": kinds})
    with pytest.raises(IncompatibleBundleError, match=r"'xgboost' of kind 'pickle'"):
        load_bundle(other)
    renamed = json.dumps({"svm": {"kind": "linear"}}).encode()
    with pytest.raises(IncompatibleBundleError, match=r"'svm'"):
        load_bundle(rebuild(bundle_path, tmp_path / "svm.fsb", {"models.json": renamed}))


def test_a_manifest_claiming_another_format_is_refused(bundle_path: Path, tmp_path: Path) -> None:
    old = rebuild(bundle_path, tmp_path / "old.fsb", {}, bundle_format=1)
    with pytest.raises(IncompatibleBundleError, match=r"bundle format 1 \(pickled models.*fraudstream train"):
        load_bundle(old)
    with pytest.raises(IncompatibleBundleError, match=r"bundle format 1 \(pickled models"):
        check_compatible(read_manifest(old), old)


def test_a_tree_index_outside_the_tables_is_refused(bundle_path: Path, tmp_path: Path) -> None:
    """The compiled walks index their tables unchecked, so reading checks every index first."""
    with zipfile.ZipFile(bundle_path) as archive, np.load(io.BytesIO(archive.read("arrays.npz"))) as npz:
        arrays = {key: npz[key] for key in npz.files}
    inner = int(np.flatnonzero(arrays["isolation_forest.left"] >= 0)[0])
    for key, value in (("isolation_forest.left", 10**9), ("isolation_forest.feature", 10**6)):
        changed = {**arrays, key: arrays[key].copy()}
        changed[key][inner] = value
        buffer = io.BytesIO()
        np.savez(buffer, **changed)
        path = rebuild(bundle_path, tmp_path / "far.fsb", {"arrays.npz": buffer.getvalue()})
        with pytest.raises(BundleError, match=r"'isolation_forest' does not read .*outside"):
            load_bundle(path)


# -- round trips ---------------------------------------------------------------------------------


def _data(width: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(1500, width)) * rng.choice([1e-2, 1.0, 1e3], size=width)
    X[rng.random(X.shape) < 0.2] = np.nan
    signal = np.nan_to_num(X[:, 0]) * 3 + np.nan_to_num(X[:, 1]) / 1e3 + np.isnan(X[:, 2])
    return X, (signal + rng.normal(size=len(X)) > 1.5).astype(np.int64)


def _fitted(kind: str, X: np.ndarray, y: np.ndarray) -> Any:
    impute = SimpleImputer(strategy="median", keep_empty_features=True)
    if kind == "xgboost":
        return xgb.XGBClassifier(n_estimators=40, max_depth=4, tree_method="hist", n_jobs=1).fit(X, y)
    if kind == "xgboost behind an imputer":  # as with SMOTE: imputer → (SMOTE) → XGBoost
        model = xgb.XGBClassifier(n_estimators=40, max_depth=4, tree_method="hist", n_jobs=1)
        return Pipeline([("impute", impute), ("model", model)]).fit(X, y)
    if kind == "logistic":
        steps = [("impute", impute), ("scale", StandardScaler()), ("model", LogisticRegression(max_iter=500))]
        return Pipeline(steps).fit(X, y)
    forest = IsolationForest(n_estimators=30, random_state=0, n_jobs=1)
    return Pipeline([("impute", impute), ("model", forest)]).fit(X[y == 0])


def _saved_and_loaded(models: dict[str, Any], tmp_path: Path) -> tuple[ModelBundle, ModelBundle]:
    """A bundle of ``models`` on the packaged feature set, and that bundle saved and read back."""
    features = default_feature_set()
    bundle = bundle_of(models, len(features.names))
    bundle.manifest.feature_set_version = features.version
    bundle.manifest.feature_names = list(features.names)
    bundle.manifest.feature_spec = features.to_dict()
    return bundle, load_bundle(bundle.save(tmp_path / "m.fsb"))


KINDS = {
    "xgboost": "xgboost",
    "xgboost behind an imputer": "xgboost",
    "logistic": "logistic",
    "isolation_forest": "isolation_forest",
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_scores_and_explains_the_same_read_back(kind: str, tmp_path: Path) -> None:
    name = KINDS[kind]
    width = len(default_feature_set().names)
    X, y = _data(width)
    fitted = _fitted(kind, X, y)
    bundle, loaded = _saved_and_loaded({name: fitted}, tmp_path)
    assert loaded.manifest == bundle.manifest and loaded.fitted == {}
    before, after = ServedModels(bundle), ServedModels(loaded)
    got, want = after.score(X), before.score(X)
    np.testing.assert_allclose(got.raw, want.raw, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.probability, want.probability, rtol=0, atol=1e-12)
    assert got.decision.tolist() == want.decision.tolist()
    # and as the fitted estimator scores (the forest within exp2's rounding, the logistic model's sum order)
    np.testing.assert_allclose(got.raw[0], raw_score(name, fitted, X), rtol=1e-12, atol=1e-12)
    if name != "isolation_forest":
        np.testing.assert_allclose(after.contributions(X), before.contributions(X), rtol=0, atol=1e-12)
        flagged = np.full(len(X), "FLAG", dtype=object)
        assert after.reasons(X, flagged) == before.reasons(X, flagged)
    assert top_features(loaded) == top_features(bundle)


def test_a_trained_bundle_scores_explains_and_ranks_the_same_read_back(
    trained_bundle: ModelBundle, bundle_path: Path
) -> None:
    loaded = load_bundle(bundle_path)
    assert loaded.manifest == trained_bundle.manifest and loaded.reference == trained_bundle.reference
    X, _ = _data(len(loaded.manifest.feature_names))
    before, after = ServedModels(trained_bundle), ServedModels(loaded)
    got, want = after.score(X), before.score(X)
    np.testing.assert_allclose(got.raw, want.raw, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.probability, want.probability, rtol=0, atol=1e-12)
    np.testing.assert_allclose(after.contributions(X), before.contributions(X), rtol=0, atol=1e-12)
    decisions = np.where(np.arange(len(X)) % 2 == 0, "BLOCK", "APPROVE").astype(object)
    assert after.reasons(X, decisions) == before.reasons(X, decisions)
    assert top_features(loaded) == top_features(trained_bundle)


def test_a_bundle_of_anything_but_stored_models_is_not_saved(tmp_path: Path) -> None:
    bundle = bundle_of({}, 3)
    bundle.models = {"logistic": object()}
    with pytest.raises(BundleError, match="cannot save model 'logistic' of type object"):
        bundle.save(tmp_path / "m.fsb")
    assert not (tmp_path / "m.fsb").exists()
