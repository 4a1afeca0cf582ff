"""``GET /v1/reports/daily``: the daily report for one UTC day, as JSON, CSV or Markdown."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from fraudstream.api.deps import StoreDep
from fraudstream.api.params import QueryDate
from fraudstream.events.transaction import MAX_TIMESTAMP, MIN_TIMESTAMP
from fraudstream.reports import MEDIA_TYPES, daily_report, parse_day, render

router = APIRouter(prefix="/v1/reports", tags=["reports"])


@router.get(
    "/daily",
    responses={200: {"content": {"text/csv": {}, "text/markdown": {}}, "description": "the report"}},
)
def daily(
    store: StoreDep,
    day: Annotated[
        QueryDate | None,
        Query(
            alias="date",
            description="YYYY-MM-DD, UTC, by decision time, 1990-01-01 to 2099-12-31; default: yesterday",
            ge=MIN_TIMESTAMP.date(),
            lt=MAX_TIMESTAMP.date(),
        ),
    ] = None,
    format: Annotated[Literal["json", "csv", "markdown"], Query()] = "json",
) -> Any:
    """Decisions and amounts by decision, top rules and reasons, and caught fraud, missed fraud and
    false positives from the labels known so far, for decisions made on that UTC day."""
    report = daily_report(store, day or parse_day(None))
    if format == "json":
        return JSONResponse(report.to_dict())
    return Response(render(report, format), media_type=f"{MEDIA_TYPES[format]}; charset=utf-8")
