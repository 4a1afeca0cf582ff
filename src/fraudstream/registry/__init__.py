"""The MLflow Model Registry: register bundles, serve ``models:/NAME@ALIAS``, promote and roll back.

Versions of one registered model (``FRAUD_MODEL_REGISTRY_NAME``, default ``fraudstream``) carry three
aliases: ``challenger`` (the newest registered), ``champion`` (what serves ``models:/fraudstream@champion``)
and ``previous`` (the champion before the last promotion, where ``rollback`` goes). Every move of
``champion`` is tagged on the versions and recorded in our database (``store.promotions``).
Nothing here imports MLflow until it is used; training and serving from files never need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fraudstream.config import Settings
from fraudstream.registry._client import (
    CHALLENGER,
    CHAMPION,
    KEY_METRICS,
    PREVIOUS,
    Registry,
    VersionInfo,
)
from fraudstream.registry._lifecycle import default_author, promote, register_run, rollback
from fraudstream.registry._serving import ModelSource, cache_path, load_challenger, load_model
from fraudstream.registry._uri import (
    ModelUri,
    ModelUriError,
    RegistryConflictError,
    RegistryError,
    RegistryUnavailableError,
    is_registry_uri,
)
from fraudstream.registry._watch import ModelWatcher, watch_model

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "KEY_METRICS",
    "PREVIOUS",
    "ModelSource",
    "ModelUri",
    "ModelUriError",
    "ModelWatcher",
    "Registry",
    "RegistryConflictError",
    "RegistryError",
    "RegistryUnavailableError",
    "VersionInfo",
    "cache_path",
    "default_author",
    "is_registry_uri",
    "load_challenger",
    "load_model",
    "promote",
    "register",
    "registry_for",
    "rollback",
    "watch_model",
]


def registry_for(settings: Settings) -> Registry:
    """The registered model ``settings`` name, on their MLflow server; a clear error without one."""
    if not settings.mlflow_tracking_uri:
        raise RegistryUnavailableError(
            "the model registry needs FRAUD_MLFLOW_TRACKING_URI: set it to the MLflow server "
            "(http://127.0.0.1:5050 for `make services`)"
        )
    return Registry(settings.mlflow_tracking_uri, settings.model_registry_name)


def register(
    bundle_path: Path,
    metrics: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    run_id: str | None = None,
    comparison: dict[str, Any] | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """Register the bundle at ``bundle_path`` as a new version with the alias ``challenger`` (and
    ``champion`` when the model has none yet, which is then recorded in the database as well).

    Logs the run first (parameters, ``metrics`` as test metrics, the data fingerprint, the bundle)
    unless ``run_id`` names one that logged it already. Returns ``{"name", "version", "uri",
    "aliases", "run_id"}``; :class:`RegistryError` says what to do when MLflow is absent or unreachable.
    """
    from fraudstream.models.bundle import load_bundle
    from fraudstream.training.tracking import TrackingError, log_to_mlflow

    settings = settings or Settings()
    registry = registry_for(settings)
    registry.client()  # MLflow installed?
    if run_id is None:
        extra = {"comparison": comparison} if comparison is not None else None
        try:
            run_id = log_to_mlflow(
                registry.tracking_uri, load_bundle(bundle_path), bundle_path, metrics or {}, extra_tags=extra
            )
        except TrackingError as error:
            raise RegistryUnavailableError(str(error)) from None
    info, first = register_run(registry, run_id, bundle_path)
    if first:
        from fraudstream.storage import open_store
        from fraudstream.storage.promotions import Promotion

        with open_store(settings.db_url) as store:
            store.migrate()
            store.promotions.add(Promotion(registry.name, "register", info.version, by or default_author()))
    return {
        "name": info.name,
        "version": info.version,
        "uri": info.uri,
        "aliases": list(info.aliases),
        "run_id": run_id,
    }
