"""``GET /v1/model``: which model is deciding, how it scored in training, and where its thresholds are.

Read from the loaded bundle's manifest, so an operator (or the dashboard) sees exactly what serves,
not what a file on disk says.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from fraudstream.api.deps import ScorerDep

router = APIRouter(prefix="/v1/model", tags=["model"])


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


@router.get("", response_model=ModelOut)
async def model(scorer: ScorerDep) -> ModelOut:
    """The serving model's manifest: version, ensemble weights, FLAG/BLOCK thresholds, training metrics."""
    manifest = scorer.bundle.manifest
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
    )
