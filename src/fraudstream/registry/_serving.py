"""Which bundle a server loads: a file, or a registry version fetched once into a local cache.

``FRAUD_MODEL_URI=models:/fraudstream@champion`` resolves the alias when the process starts, downloads
that version's bundle into ``FRAUD_DATA_DIR/models/<name>/<version>/`` unless it is there already
(versions never change, so a cached one is reused), checks that it loads, and serves it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudstream.config import Settings
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.registry._client import Registry
from fraudstream.registry._uri import ModelUri, RegistryUnavailableError, is_registry_uri

CACHED_NAME = "model.fsb"


@dataclass(frozen=True)
class ModelSource:
    """Where the serving bundle came from: a path, and for a registry model its name, version and the
    URI (alias) it was resolved from."""

    path: Path
    uri: str | None = None
    registry_name: str | None = None
    registry_version: str | None = None
    alias: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "uri": self.uri,
            "name": self.registry_name,
            "version": self.registry_version,
            "alias": self.alias,
        }


def cache_path(data_dir: Path, name: str, version: str) -> Path:
    """Where version ``version`` of ``name`` is kept once downloaded."""
    return data_dir / "models" / name / version / CACHED_NAME


def fetch(registry: Registry, uri: ModelUri, data_dir: Path) -> tuple[ModelBundle, ModelSource]:
    """The bundle ``uri`` names (downloaded unless cached, then loaded) and where it came from."""
    info = registry.resolve(uri)
    path = cache_path(data_dir, uri.name, info.version)
    source = ModelSource(path, str(uri), uri.name, info.version, uri.alias)
    if path.is_file():
        return load_bundle(path), source
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=path.parent))
    try:
        got = registry.download(info, scratch)
        bundle = load_bundle(got)  # a bundle that does not load never enters the cache
        got.replace(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return bundle, source


def load_model(settings: Settings) -> tuple[ModelBundle, ModelSource]:
    """The bundle ``settings`` name: ``FRAUD_MODEL_URI`` (registry or path), else ``FRAUD_MODEL_PATH``,
    else ``FRAUD_DATA_DIR/model.fsb``."""
    text = (settings.model_uri or "").strip()
    if not text:
        return load_bundle(settings.bundle_path), ModelSource(settings.bundle_path)
    return _load_uri(settings, text, "FRAUD_MODEL_URI", "serve a file with FRAUD_MODEL_PATH")


def load_challenger(settings: Settings) -> tuple[ModelBundle, ModelSource]:
    """The challenger ``FRAUD_CHALLENGER_URI`` names (registry URI or path), resolved as
    :func:`load_model` resolves ``FRAUD_MODEL_URI``."""
    text = (settings.challenger_uri or "").strip()
    return _load_uri(settings, text, "FRAUD_CHALLENGER_URI", "name a bundle file instead")


def _load_uri(settings: Settings, text: str, setting: str, otherwise: str) -> tuple[ModelBundle, ModelSource]:
    if not is_registry_uri(text):
        path = Path(text.removeprefix("file://"))
        return load_bundle(path), ModelSource(path)
    uri = ModelUri.parse(text)
    if not settings.mlflow_tracking_uri:
        raise RegistryUnavailableError(
            f"{setting}={text} names the MLflow registry but FRAUD_MLFLOW_TRACKING_URI is not set: "
            f"set it to the MLflow server (http://127.0.0.1:5050 for `make services`), or {otherwise}"
        )
    return fetch(Registry(settings.mlflow_tracking_uri, uri.name), uri, settings.data_dir)
