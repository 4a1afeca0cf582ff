"""``GET /v1/stats``: what the engine decided over a recent window, for dashboards and smoke checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from fraudstream.api.deps import ScorerDep, StoreDep
from fraudstream.api.schemas import StatsOut
from fraudstream.storage.rollup import MINUTE, SCORE_BINS, minute_series, series_from_decisions
from fraudstream.storage.store import Store
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
    with the current queue lag and the model version serving. Throughput comes twice: averaged over
    the window, and over its last minute (``recent_throughput_per_s``), the rate flowing now."""
    since = datetime.now(UTC) - timedelta(seconds=window)
    return StatsOut(
        since=since,
        window_s=window,
        queue_lag=store.queue.pending(TRANSACTIONS),
        model_version=scorer.version,
        **store.decisions.stats(since),
    )


MAX_BUCKETS = 1440
BUCKET_HELP = "seconds per point; a whole number of minutes is read from the per-minute counts (fast)"


class SeriesPoint(BaseModel):
    start: datetime
    by_decision: dict[str, int]
    latency_ms: dict[str, float | None] = Field(description="mean and max total scoring latency")


class ScoreBin(BaseModel):
    low: float
    high: float
    by_decision: dict[str, int]


class SeriesOut(BaseModel):
    """Decisions per time bucket (oldest first; empty buckets omitted) and the score histogram."""

    since: datetime
    window_s: float
    bucket_s: int
    points: list[SeriesPoint]
    scores: list[ScoreBin]


def decision_series(store: Store, since: datetime, bucket: int) -> dict[str, Any]:
    """Aggregated in the database, so a dashboard refreshing every few seconds never loads the window's
    rows: from the per-minute counts (:mod:`fraudstream.storage.rollup`) when the bucket is a whole
    number of minutes, the window then starting at the minute that holds ``since``; else from the
    decisions themselves (two GROUP BY queries over the window)."""
    by_time, by_score = (minute_series if bucket % MINUTE == 0 else series_from_decisions)(
        store, since, bucket
    )
    points: dict[int, dict[str, Any]] = {}
    weighted: dict[int, list[float]] = {}
    scores: dict[int, dict[str, int]] = {}
    for index, decision, count, n, total, peak in by_time:
        point = points.setdefault(int(index), {"by_decision": {}, "latency_ms": {"mean": None, "max": None}})
        point["by_decision"][decision] = int(count)
        if n:
            sums = weighted.setdefault(int(index), [0.0, 0.0])
            sums[0], sums[1] = sums[0] + float(total), sums[1] + int(n)
            point["latency_ms"]["max"] = max(point["latency_ms"]["max"] or 0.0, float(peak))
    for index, decision, count in by_score:
        slot_scores = scores.setdefault(min(int(index), SCORE_BINS - 1), {})
        slot_scores[decision] = slot_scores.get(decision, 0) + int(count)
    for index, (total, n) in weighted.items():
        points[index]["latency_ms"]["mean"] = total / n if n else None
    return {
        "points": [
            {"start": datetime.fromtimestamp(index * bucket, UTC), **points[index]}
            for index in sorted(points)
        ],
        "scores": [
            {"low": i / SCORE_BINS, "high": (i + 1) / SCORE_BINS, "by_decision": scores.get(i, {})}
            for i in range(SCORE_BINS)
        ],
    }


@router.get("/series", response_model=SeriesOut)
def series(
    store: StoreDep,
    window: Annotated[float, Query(ge=1, le=MAX_WINDOW, description="seconds back from now")] = 3600.0,
    bucket: Annotated[int, Query(ge=1, le=86_400, description=BUCKET_HELP)] = 60,
) -> SeriesOut:
    """Charts over time: decisions by outcome and latency per bucket, and the score distribution."""
    if window / bucket > MAX_BUCKETS:
        bucket = max(bucket, int(window // MAX_BUCKETS) + 1)
        bucket = -(-bucket // MINUTE) * MINUTE if bucket > MINUTE else bucket  # whole minutes: the counts
    since = datetime.now(UTC) - timedelta(seconds=window)
    return SeriesOut(since=since, window_s=window, bucket_s=bucket, **decision_series(store, since, bucket))
