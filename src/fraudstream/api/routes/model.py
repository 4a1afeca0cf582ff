"""``GET /v1/model``: which model is deciding, how it scored in training, and where its thresholds are.

Read from the loaded bundle's manifest, so an operator (or the dashboard) sees exactly what serves,
not what a file on disk says.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from fraudstream.api.deps import ServicesDep

router = APIRouter(prefix="/v1/model", tags=["model"])


class RegistryOut(BaseModel):
    """Which registered model version serves, and the URI (alias) it was resolved from at start-up."""

    name: str
    version: str
    uri: str = Field(description="as configured: models:/NAME@ALIAS or models:/NAME/VERSION")
    alias: str | None = Field(description="the alias it was resolved from; aliases may have moved since")


class ChallengerOut(BaseModel):
    """The challenger (FRAUD_CHALLENGER_URI): scored beside the served model, its decisions stored, and
    acting only for its A/B share of customers (FRAUD_CHALLENGER_SHARE)."""

    version: str
    thresholds: dict[str, float] = Field(description="its own FLAG and BLOCK thresholds")
    weights: dict[str, float]
    uri: str = Field(description="as configured: a registry URI or a bundle path")
    registry_version: str | None = Field(None, description="the registry version, for a registry URI")
    share: float = Field(
        0.0, description="the share of customers it decides (A/B, by a stable hash); 0: in shadow only"
    )


class ModelOut(BaseModel):
    version: str
    created_at: str
    feature_set_version: str
    features: int = Field(description="how many features the model reads")
    weights: dict[str, float] = Field(description="each model's weight in the calibrated ensemble")
    thresholds: dict[str, float] = Field(description="probabilities at and above which FLAG and BLOCK apply")
    metrics: dict[str, Any] = Field(description="training metrics from the manifest (validation, test, ...)")
    data_fingerprint: str
    libraries: dict[str, str]
    registry: RegistryOut | None = Field(
        None, description="the registry version served, when started from FRAUD_MODEL_URI=models:/..."
    )
    challenger: ChallengerOut | None = Field(
        None, description="the challenger, when FRAUD_CHALLENGER_URI is set"
    )


@router.get("", response_model=ModelOut)
async def model(services: ServicesDep) -> ModelOut:
    """The serving model's manifest: version, ensemble weights, FLAG/BLOCK thresholds, training metrics,
    and, for a model from the registry, its registered name and version."""
    manifest = services.scorer.bundle.manifest
    source = services.model_source
    registry = None
    if source is not None and source.registry_name and source.registry_version and source.uri:
        registry = RegistryOut(
            name=source.registry_name, version=source.registry_version, uri=source.uri, alias=source.alias
        )
    return ModelOut(
        version=manifest.version,
        created_at=manifest.created_at,
        feature_set_version=manifest.feature_set_version,
        features=len(manifest.feature_names),
        weights=manifest.weights,
        thresholds=manifest.thresholds,
        metrics=manifest.metrics,
        data_fingerprint=manifest.data_fingerprint,
        libraries=manifest.libraries,
        registry=registry,
        challenger=_challenger(services),
    )


def _challenger(services: Any) -> ChallengerOut | None:
    bundle = services.scorer.challenger
    if bundle is None:
        return None
    source = services.challenger_source
    return ChallengerOut(
        version=bundle.manifest.version,
        thresholds=bundle.manifest.thresholds,
        weights=bundle.manifest.weights,
        uri=services.settings.challenger_uri or "",
        registry_version=source.registry_version if source is not None else None,
        share=services.scorer.challenger_share,
    )
