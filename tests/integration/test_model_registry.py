"""The MLflow Model Registry against a real tracking server (``make services`` runs one on :5050).

Each test registers its own model name, so runs never see each other's versions or aliases.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from fraudstream.config import Settings
from fraudstream.models.bundle import read_manifest
from fraudstream.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    ModelUri,
    RegistryError,
    cache_path,
    promote,
    register,
    registry_for,
    rollback,
)
from fraudstream.runtime import open_services
from fraudstream.storage import open_store

pytestmark = pytest.mark.mlflow


@pytest.fixture
def settings(mlflow_url: str, tmp_path: Path) -> Settings:
    name = f"fs-test-{secrets.token_hex(4)}"
    return Settings(data_dir=tmp_path, mlflow_tracking_uri=mlflow_url, model_registry_name=name)


def served_version(settings: Settings, alias: str) -> tuple[str | None, str]:
    """The registry version and bundle version a process started with ``models:/NAME@alias`` serves."""
    uri = f"models:/{settings.model_registry_name}@{alias}"
    services = open_services(settings.model_copy(update={"model_uri": uri}), warm=False)
    try:
        assert services.model_source is not None and services.model_source.uri == uri
        return services.model_source.registry_version, services.scorer.version
    finally:
        services.close()


def test_register_serve_promote_and_roll_back(settings: Settings, bundle_path: Path) -> None:
    metrics: dict[str, Any] = {"average_precision": 0.7, "roc_auc": 0.9}
    first = register(bundle_path, metrics, settings=settings, by="trainer")
    assert first["version"] == "1" and set(first["aliases"]) == {CHAMPION, CHALLENGER}
    second = register(bundle_path, metrics, settings=settings)
    assert second["version"] == "2" and second["aliases"] == [CHALLENGER]

    registry = registry_for(settings)
    versions = {v.version: v for v in registry.versions()}
    assert versions["2"].metrics["test.average_precision"] == pytest.approx(0.7)
    assert versions["1"].tags["fraudstream.data_fingerprint"]

    version, model = served_version(settings, CHAMPION)
    assert version == "1" and model == read_manifest(bundle_path).version
    assert cache_path(settings.data_dir, settings.model_registry_name, "1").is_file()

    comparison = {"delta": {"average_precision": 0.02}}
    with open_store(settings.db_url) as store:
        store.migrate()
        done = promote(registry, by="alice", comparison=comparison, store=store)
        assert (done.from_version, done.to_version, done.action) == ("1", "2", "promote")
        assert registry.aliases() == {CHAMPION: "2", PREVIOUS: "1"}  # the promoted challenger is champion
        assert served_version(settings, CHAMPION)[0] == "2"
        tags = registry.get("2").tags
        assert tags["fraudstream.promoted_by"] == "alice" and tags["fraudstream.promoted_from"] == "1"
        assert '"average_precision": 0.02' in tags["fraudstream.comparison"]

        back = rollback(registry, by="bob", store=store)
        assert (back.from_version, back.to_version, back.action) == ("2", "1", "rollback")
        assert registry.aliases() == {CHAMPION: "1"}
        assert served_version(settings, CHAMPION)[0] == "1"
        with pytest.raises(RegistryError, match="no previous champion"):
            rollback(registry, store=store)
        with pytest.raises(RegistryError, match="already the champion"):
            promote(registry, "1", store=store)
        records = store.promotions.list(settings.model_registry_name)
    assert [(r.action, r.from_version, r.to_version, r.promoted_by) for r in records] == [
        ("rollback", "2", "1", "bob"),
        ("promote", "1", "2", "alice"),
        ("register", None, "1", "trainer"),
    ]
    assert records[1].comparison == comparison


def test_a_missing_alias_or_version_says_how_to_get_one(settings: Settings, bundle_path: Path) -> None:
    registry = registry_for(settings)
    with pytest.raises(RegistryError, match=r"no alias 'champion'.*--register"):
        registry.resolve(ModelUri(settings.model_registry_name, alias=CHAMPION))
    register(bundle_path, settings=settings)
    with pytest.raises(RegistryError, match="no alias 'nope'"):
        served_version(settings, "nope")
    with pytest.raises(RegistryError, match="version 9"):
        promote(registry, "9")


def test_check_resolves_the_registry_uri_it_would_serve(settings: Settings, bundle_path: Path) -> None:
    from fraudstream.checks import check_settings

    register(bundle_path, settings=settings)
    uri = f"models:/{settings.model_registry_name}@champion"
    checks = {c.name: c for c in check_settings(settings.model_copy(update={"model_uri": uri}))}
    assert checks["model"].ok and checks["model"].target == uri
    assert checks["model"].detail.startswith("registry version 1 (model ")
    missing = f"models:/{settings.model_registry_name}@nope"
    checks = {c.name: c for c in check_settings(settings.model_copy(update={"model_uri": missing}))}
    assert not checks["model"].ok and "no alias 'nope'" in checks["model"].detail
