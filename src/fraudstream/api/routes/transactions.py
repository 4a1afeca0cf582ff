"""``/v1/transactions``: accept transactions for asynchronous scoring, then look up their status.

``POST`` writes the transactions and their queue messages in one database transaction (the outbox),
so the ``202`` is only sent once nothing can be lost; the worker decides them in micro-batches.
``GET`` can long-poll (``wait``) so a client needs no polling loop of its own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, status
from fastapi.concurrency import run_in_threadpool

from fraudstream.api.bodies import one_or_many, one_or_many_schema
from fraudstream.api.deps import SettingsDep, StoreDep
from fraudstream.api.schemas import AcceptedOut, DecisionOut, TransactionStatusOut
from fraudstream.events.transaction import MAX_ID_LENGTH, Transaction
from fraudstream.storage import tables
from fraudstream.storage.store import Store

router = APIRouter(prefix="/v1/transactions", tags=["transactions"])

MAX_WAIT = 30.0
POLL_INTERVAL = 0.02


@router.post(
    "",
    response_model=AcceptedOut,
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=one_or_many_schema(Transaction),
    responses={413: {"description": "body too large or too many transactions"}},
)
def accept(payload: Annotated[Any, Body()], store: StoreDep, settings: SettingsDep) -> AcceptedOut:
    """Queue one transaction or a list of them (at most ``FRAUD_MAX_BATCH``) for the worker.

    Idempotent by ``transaction_id``: ids already known, or repeated within the request, are listed
    under ``duplicates`` and never decided twice, so a client can safely retry a timed-out request.
    """
    transactions = one_or_many(payload, Transaction, max_items=settings.max_batch, noun="transaction")
    new = set(store.accept(transactions))
    accepted: list[str] = []
    duplicates: dict[str, None] = {}
    for tx in transactions:
        if tx.transaction_id in new:
            new.discard(tx.transaction_id)
            accepted.append(tx.transaction_id)
        else:
            duplicates[tx.transaction_id] = None
    return AcceptedOut(accepted=accepted, duplicates=list(duplicates))


def _status(store: Store, transaction_id: str) -> TransactionStatusOut | None:
    row = store.get_transaction(transaction_id)
    if row is None:
        return None
    # The decision and the status change are written in one database transaction.
    decision = None if row["status"] == tables.TX_QUEUED else store.get_decision(transaction_id)
    state = tables.TX_DECIDED if decision is not None else row["status"]
    return TransactionStatusOut(
        transaction_id=transaction_id,
        status=state,
        decision=None if decision is None else DecisionOut.from_record(decision),
    )


@router.get("/{transaction_id}", response_model=TransactionStatusOut, responses={404: {}})
async def get_status(
    transaction_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
    store: StoreDep,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT, description="seconds to wait for the decision (long poll)")
    ] = 0.0,
) -> TransactionStatusOut:
    """A transaction's status (``queued``, ``decided`` or ``dead``) and its decision once made.

    With ``wait``, answers as soon as the transaction leaves ``queued`` or after ``wait`` seconds,
    whichever is first. The wait is an async sleep, so waiting clients hold no thread.
    """
    deadline = time.monotonic() + wait
    while True:
        found = await run_in_threadpool(_status, store, transaction_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown transaction {transaction_id!r}")
        remaining = deadline - time.monotonic()
        if found.status != tables.TX_QUEUED or remaining <= 0:
            return found
        await asyncio.sleep(min(POLL_INTERVAL, remaining))
