"""The model registry's parts that need no server: ``models:/`` URIs, and the errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudstream.config import Settings
from fraudstream.models.bundle import BundleError
from fraudstream.registry import (
    ModelUri,
    ModelUriError,
    Registry,
    RegistryError,
    cache_path,
    is_registry_uri,
    load_model,
    registry_for,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models:/fraudstream@champion", ModelUri("fraudstream", alias="champion")),
        (" models:/fraud.v2-x@challenger ", ModelUri("fraud.v2-x", alias="challenger")),
        ("models:/fraudstream/3", ModelUri("fraudstream", version="3")),
        ("models:/fraudstream/007", ModelUri("fraudstream", version="7")),
    ],
)
def test_model_uris_name_a_model_and_an_alias_or_a_version(text: str, expected: ModelUri) -> None:
    uri = ModelUri.parse(text)
    assert uri == expected
    assert ModelUri.parse(str(uri)) == uri
    assert is_registry_uri(text)


@pytest.mark.parametrize(
    "text",
    [
        "fraudstream@champion",
        "models:/",
        "models:/fraudstream",
        "models:/fraudstream/0",
        "models:/fraudstream/latest",
        "models:/fraudstream@",
        "models:/fraudstream@has space",
        "models:/@champion",
        "models://3",
    ],
)
def test_a_uri_that_names_no_version_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(ModelUriError, match="FRAUD_MODEL_URI") as caught:
        ModelUri.parse(text)
    assert "models:/NAME@ALIAS" in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, BundleError)


def test_files_are_not_registry_uris() -> None:
    assert not is_registry_uri("fraudstream-data/model.fsb")
    assert not is_registry_uri("/models/fraudstream/3")


def test_registry_versions_are_cached_per_model_and_version(tmp_path: Path) -> None:
    assert cache_path(tmp_path, "fraudstream", "4") == tmp_path / "models" / "fraudstream" / "4" / "model.fsb"


def test_serving_from_the_registry_without_a_tracking_uri_says_what_to_set(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, model_uri="models:/fraudstream@champion", mlflow_tracking_uri=None)
    with pytest.raises(RegistryError, match="FRAUD_MLFLOW_TRACKING_URI is not set"):
        load_model(settings)
    with pytest.raises(RegistryError, match="FRAUD_MLFLOW_TRACKING_URI"):
        registry_for(settings)


def test_a_bad_model_uri_fails_before_anything_is_contacted(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, model_uri="models:/fraudstream", mlflow_tracking_uri="http://x:1")
    with pytest.raises(ModelUriError, match="FRAUD_MODEL_URI"):
        load_model(settings)


def test_a_plain_model_uri_is_a_path_and_loads_that_bundle(bundle_path: Path, tmp_path: Path) -> None:
    bundle, source = load_model(Settings(data_dir=tmp_path, model_uri=str(bundle_path)))
    assert source.path == bundle_path and source.registry_version is None
    assert bundle.manifest.version
    _, default = load_model(Settings(data_dir=tmp_path, model_path=bundle_path))
    assert default.path == bundle_path and default.uri is None


def test_an_unreachable_registry_is_a_clear_error_within_seconds(unused_port: int) -> None:
    registry = Registry(f"http://127.0.0.1:{unused_port}", "fraudstream")
    with pytest.raises(RegistryError, match=r"did not answer.*make services"):
        registry.resolve(ModelUri("fraudstream", alias="champion"))


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
