"""``/v1/holds``: payments decided HOLD, for analysts: the ones still waiting first, then how the others
ended.

A HOLD decision opens a hold, pending, and joins (or opens) its customer's case like a FLAG. The case's
verdict resolves every pending hold of the case: fraud rejects the payment (BLOCK), legitimate releases
it (APPROVE), inconclusive gives it ``FRAUD_HOLD_DEFAULT``. A hold no verdict resolved within
``FRAUD_HOLD_TIMEOUT_SECONDS`` gets ``FRAUD_HOLD_DEFAULT`` from the sweep that serve and worker
processes run. ``GET /v1/transactions/{id}`` shows one transaction's hold; the waiting times are on
``/metrics`` (``fraudstream_hold_wait_seconds``, ``fraudstream_holds_pending``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from fraudstream.api.deps import SettingsDep, StoreDep
from fraudstream.api.schemas import HoldOut
from fraudstream.events.transaction import ID_PATTERN, MAX_ID_LENGTH

router = APIRouter(prefix="/v1/holds", tags=["outcomes"])

HoldStatus = Literal["pending", "released", "rejected"]


class HoldsOut(BaseModel):
    items: list[HoldOut]


@router.get("", response_model=HoldsOut)
async def list_holds(
    store: StoreDep,
    settings: SettingsDep,
    status_: Annotated[
        list[HoldStatus] | None, Query(alias="status", description="default: every status")
    ] = None,
    customer_id: Annotated[
        str | None, Query(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HoldsOut:
    """Holds, pending first (the longest waiting first, with when the default applies), then the
    resolved ones (the latest first, with their outcome and what resolved them). Decisions stored since
    the last look are grouped into cases first, so a new hold shows its case."""
    await run_in_threadpool(store.cases.sync, settings.case_group_by)
    holds = await run_in_threadpool(
        store.holds.list,
        status=list(status_) if status_ else None,
        customer_id=customer_id,
        limit=limit,
        offset=offset,
    )
    return HoldsOut(items=[HoldOut.of(h, settings.hold_timeout_seconds) for h in holds])
