"""The model watcher follows the challenger alias (FRAUD_CHALLENGER_URI=models:/NAME@challenger): a new
version shadows the unchanged champion from the next batch; one on another feature set, or carrying a
pickle, is refused and the old challenger keeps shadowing; a deleted alias stops shadowing. Driven
through a fake registry."""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from fraudstream.config import Settings
from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.pipeline.scorer import Scorer
from fraudstream.registry import ModelUri, ModelWatcher, RegistryError
from fraudstream.rules import default_known_names, parse_rules
from fraudstream.state import MemoryFeatureState
from tests.unit.model_bundles import pickled_bundle

URI = ModelUri.parse("models:/fs@challenger")


class FakeRegistry:
    """Versions by number (saved bundle files) and where the alias ``challenger`` points (or ``None``)."""

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.challenger: str | None = None

    def resolve(self, uri: ModelUri) -> Any:
        if self.challenger is None:
            raise RegistryError(f"{uri}: no alias 'challenger'")
        return SimpleNamespace(version=self.challenger)

    def download(self, info: Any, into: Path) -> Path:
        into.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(self.files[info.version], into / "model.fsb"))


def _other(bundle: ModelBundle, version: str) -> ModelBundle:
    out = copy.copy(bundle)
    out.manifest = copy.deepcopy(bundle.manifest)
    out.manifest.version = version
    out.manifest.weights = {"xgboost": 0.2, "logistic": 0.5, "isolation_forest": 0.3}
    return out


@pytest.fixture
def setup(tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame) -> Any:
    bundle = load_bundle(bundle_path)
    rules = parse_rules({"rules": []}, default_known_names(FeatureEngine().feature_set))
    registry = FakeRegistry()
    for version in ("1", "2"):
        registry.files[version] = _other(bundle, f"shadow-{version}").save(tmp_path / f"v{version}.fsb")
    narrow = _other(bundle, "shadow-narrow")
    spec = FeatureEngine().feature_set.to_dict()
    spec["features"] = spec["features"][:-1]
    narrow.manifest.feature_spec = spec
    registry.files["3"] = narrow.save(tmp_path / "v3.fsb")
    scorer = Scorer(bundle, MemoryFeatureState(retention=86400.0), lambda: rules)
    serving = SimpleNamespace(scorer=scorer, model_source=None, challenger_source=None)
    lines: list[str] = []
    watcher = ModelWatcher(
        serving,
        Settings(data_dir=tmp_path / "data"),
        None,
        lines.append,
        challenger_uri=URI,
        registry=lambda name: registry,  # type: ignore[arg-type,return-value]
    )
    batch = TransactionBatch.from_frame(small_frame.iloc[:5])
    return bundle, registry, serving, watcher, lines, batch


def test_a_moved_challenger_alias_is_followed_beside_the_same_champion(setup: Any) -> None:
    bundle, registry, serving, watcher, lines, batch = setup
    assert not watcher.check()  # no alias yet: nothing to shadow
    registry.challenger = "1"
    assert watcher.check()
    got = serving.scorer.score(batch)
    assert (got.model_version, got.shadow_version) == (bundle.manifest.version, "shadow-1")
    assert serving.challenger_source.registry_version == "1"
    assert not watcher.check()  # unchanged alias: no reload

    registry.challenger = "2"
    assert watcher.check()
    got = serving.scorer.score(batch)
    assert (got.model_version, got.shadow_version) == (bundle.manifest.version, "shadow-2")
    assert "version 1 -> version 2" in lines[-1]


def test_a_challenger_on_another_feature_set_is_refused_and_the_old_one_keeps_shadowing(
    setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, registry, serving, watcher, _, batch = setup
    registry.challenger = "1"
    watcher.check()
    registry.challenger = "3"
    with caplog.at_level(logging.ERROR):
        assert not watcher.check()
    assert "version 3, which cannot shadow the champion" in caplog.text
    assert serving.scorer.score(batch).shadow_version == "shadow-1"
    assert serving.challenger_source.registry_version == "1"


def test_a_pickled_challenger_is_refused_unread_and_the_old_one_keeps_shadowing(
    setup: Any, bundle_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever can move the alias cannot run code in the servers following it: a version whose bundle
    carries a pickle is refused without unpickling it."""
    _, registry, serving, watcher, _, batch = setup
    marker = tmp_path / "ran"
    registry.files["4"] = pickled_bundle(bundle_path, tmp_path / "v4.fsb", marker)
    registry.challenger = "1"
    watcher.check()
    registry.challenger = "4"
    with caplog.at_level(logging.ERROR):
        assert not watcher.check()
    assert "pickled models" in caplog.text and not marker.exists()
    assert serving.scorer.score(batch).shadow_version == "shadow-1"
    assert serving.challenger_source.registry_version == "1"


def test_a_deleted_challenger_alias_stops_shadowing(setup: Any) -> None:
    bundle, registry, serving, watcher, lines, batch = setup
    registry.challenger = "2"
    watcher.check()
    registry.challenger = None
    assert watcher.check()
    got = serving.scorer.score(batch)
    assert (got.model_version, got.shadow_version) == (bundle.manifest.version, None)
    assert serving.challenger_source is None
    assert "shadowing stopped" in lines[-1]
