"""``GET /v1/alerts``: the most recent alerts with their delivery status, for the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from fraudstream.api.deps import StoreDep
from fraudstream.api.params import QueryTime

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


class AlertOut(BaseModel):
    """One alert. ``status``: ``pending`` (being delivered), ``delivered``, ``failed`` (a channel gave
    up after its retries) or ``stored`` (no channel configured)."""

    id: int
    created_at: datetime
    kind: str = Field(description="block, hold, flag_burst, rule, drift or rule_guard")
    entity: str = Field(description="what the alert is about, e.g. customer:c42 or rule:big_amount")
    transaction_id: str | None
    message: str
    status: str
    attempts: int = Field(description="delivery attempts so far, over all channels")
    last_error: str | None = Field(None, description="the latest failed attempt, as 'channel: error'")
    details: dict[str, Any] = Field(default_factory=dict, description="decision, probability, amount, ...")


@router.get("", response_model=list[AlertOut])
def list_alerts(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    since: Annotated[
        QueryTime | None, Query(description="created at or after: ISO 8601, naive meaning UTC")
    ] = None,
) -> list[AlertOut]:
    """Alerts newest first, each with its delivery status and number of attempts."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return [AlertOut(**row) for row in store.alerts.feed(limit=limit, since=since)]
