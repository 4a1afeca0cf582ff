"""``GET /v1/stats``: what the engine decided over a recent window, for dashboards and smoke checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from fraudstream.api.deps import ScorerDep, StoreDep
from fraudstream.api.schemas import StatsOut
from fraudstream.worker.worker import TRANSACTIONS

router = APIRouter(prefix="/v1/stats", tags=["stats"])

MAX_WINDOW = 30 * 86_400.0


@router.get("", response_model=StatsOut)
def stats(
    store: StoreDep,
    scorer: ScorerDep,
    window: Annotated[float, Query(ge=1, le=MAX_WINDOW, description="seconds back from now")] = 3600.0,
) -> StatsOut:
    """Counts by decision, flagged rate, latency percentiles, throughput and labels in the window,
    with the current queue lag and the model version serving."""
    since = datetime.now(UTC) - timedelta(seconds=window)
    return StatsOut(
        since=since,
        window_s=window,
        queue_lag=store.pending(TRANSACTIONS),
        model_version=scorer.version,
        **store.stats(since),
    )
