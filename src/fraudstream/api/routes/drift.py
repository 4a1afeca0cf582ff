"""``GET /v1/drift``: how far the traffic of the last window has moved from the serving model's training data.

The population stability index (PSI) of the fraud score and of every feature, drifting features first,
computed from this process's sliding window of scored transactions (``FRAUD_DRIFT_WINDOW``) against
the reference distributions stored in the model bundle at training. The shares of the outcomes decided
over the window (``decision_rates.decided``) are every process's, from the stored per-minute counts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field

from fraudstream.api.deps import ServicesDep
from fraudstream.events.transaction import DECISIONS
from fraudstream.monitoring.drift import DriftMonitor, DriftReport

router = APIRouter(prefix="/v1/drift", tags=["drift"])


class FeatureDriftOut(BaseModel):
    feature: str
    psi: float = Field(description="population stability index of the feature over the window")
    drifting: bool = Field(description="whether the PSI is above the threshold")
    important: bool = Field(description="among the model's most important features: its drift alerts")
    calendar: bool = Field(
        False, description="a calendar feature (hour, weekday, ...): drifting only over a week or more"
    )


class DriftOut(BaseModel):
    model_version: str
    window_seconds: float = Field(description="the sliding window compared with the reference (seconds)")
    count: int = Field(description="scored transactions in the window")
    min_count: int = Field(description="fewer transactions than this in the window: no PSI yet")
    threshold: float = Field(description="PSI above this counts as drift (FRAUD_DRIFT_PSI_THRESHOLD)")
    score_psi: float | None = Field(description="PSI of the ensemble fraud probability; null without one")
    score_drifting: bool
    drifting: list[str] = Field(description="features whose PSI passes the threshold, most drifted first")
    features: list[FeatureDriftOut] = Field(description="every feature's PSI, highest first")
    decision_rates: dict[str, dict[str, float]] = Field(
        description="reference and window: the share of APPROVE, FLAG and BLOCK by the model's thresholds "
        "in the training data and in the window (the outcomes training knows); decided: the share of every "
        "outcome decided in the window (score bands and rules included, CHALLENGE and HOLD among them), "
        "which has no reference"
    )
    message: str | None = Field(
        description="why there is no PSI: no reference in the bundle, or too few transactions"
    )


def as_out(report: DriftReport) -> DriftOut:
    return DriftOut.model_validate(report.to_dict())


@router.get("", response_model=DriftOut)
def drift(request: Request, services: ServicesDep) -> DriftOut:
    """The score's and each feature's PSI over the window, drifting features first, with the window,
    the number of transactions in it and the threshold. A model bundle trained before references were
    stored answers with a ``message`` saying to retrain, and no PSI."""
    monitor: DriftMonitor | None = getattr(request.app.state, "drift", None)
    if monitor is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "drift monitoring is not started")
    since = datetime.now(UTC) - timedelta(seconds=monitor.window_seconds)
    counts = services.store.decisions.counts(since)
    return as_out(monitor.report(np.array([counts.get(d, 0) for d in DECISIONS], dtype=np.int64)))
