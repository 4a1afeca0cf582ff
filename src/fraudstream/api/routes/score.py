"""``POST /v1/score``: decide one transaction now, in the request.

The synchronous path for callers that must hold a payment until it is decided. A replayed id gets
the decision already made (``duplicate: true``), never a second one, and leaves the feature state as
it was; ``dry_run`` scores against the current state without recording anything anywhere.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fraudstream.api.deps import BatcherDep
from fraudstream.api.schemas import CONFLICT, DecisionOut
from fraudstream.events.transaction import Transaction

router = APIRouter(tags=["scoring"])


@router.post("/v1/score", response_model=DecisionOut, responses=CONFLICT)
async def score(
    transaction: Transaction,
    batcher: BatcherDep,
    dry_run: Annotated[bool, Query(description="score without storing or updating feature state")] = False,
) -> DecisionOut:
    """Score one transaction synchronously and store the decision (unless ``dry_run``).

    Idempotent by ``transaction_id``: the same id with the same body answers the decision already made
    (``duplicate: true``); with another body, 409 (one id, one transaction). Concurrent requests are
    scored and stored together, as one batch (see :mod:`fraudstream.api.batcher`).
    """
    record, duplicate = await batcher.submit(transaction, dry_run=dry_run)
    return DecisionOut.from_record(record, duplicate=duplicate)
