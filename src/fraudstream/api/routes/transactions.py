"""``/v1/transactions``: accept transactions for asynchronous scoring, then look up their status.

``POST`` writes the transactions and their queue messages in one database transaction (the outbox),
so the ``202`` is only sent once nothing can be lost; the worker decides them in micro-batches.
``GET`` can long-poll (``wait``) so a client needs no polling loop of its own. ``wait`` is in seconds on
both.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from fraudstream.api.batcher import ScoreBatcher
from fraudstream.api.bodies import one_or_many, one_or_many_events, one_or_many_schema
from fraudstream.api.deps import BatcherDep, ServicesDep, SettingsDep, StoreDep, WaitersDep
from fraudstream.api.schemas import (
    CONFLICT,
    AcceptedOut,
    ChallengeOut,
    DecisionOut,
    HoldOut,
    StoredDecisionOut,
    TransactionStatusOut,
)
from fraudstream.api.waiters import FIRST_CHECK, LAST_CHECK, Waiters
from fraudstream.events.transaction import ID_PATTERN, MAX_ID_LENGTH, Transaction
from fraudstream.runtime import Services
from fraudstream.storage import tables
from fraudstream.storage.store import Store
from fraudstream.worker.enqueue import enqueue

router = APIRouter(prefix="/v1/transactions", tags=["transactions"])

#: The longest ``wait``, in seconds (the unit of ``wait`` on both endpoints).
MAX_WAIT = 30.0


def _enqueue(services: Services, transactions: list[Transaction]) -> list[str]:
    """Durably accept (see :func:`enqueue`); a broker that refuses raises :class:`BrokerError` (503)."""
    store, broker, settings = services.store, services.broker, services.settings
    return enqueue(store, broker, settings.broker_url, transactions, partition_key=settings.partition_key)


async def _decide_within(
    request_ids: list[str],
    by_id: dict[str, Transaction],
    store: Store,
    batcher: ScoreBatcher,
    waiters: Waiters,
    budget: float,
) -> tuple[list[DecisionOut], list[str]]:
    """Wait up to ``budget`` seconds for the worker's decisions; past it, score the rest here.

    The worker skips a transaction that is already decided and decisions are first-wins, so whoever
    comes second (worker or API) finds the decision made: exactly one exists either way.
    """
    deadline = time.monotonic() + budget
    pending = list(request_ids)
    step = FIRST_CHECK
    while pending:
        decided = await run_in_threadpool(store.decisions.decided_ids, pending)
        pending = [i for i in pending if i not in decided]
        remaining = deadline - time.monotonic()
        if not pending or remaining <= 0:
            break
        await waiters.sleep(pending, min(step, remaining))
        step = min(2 * step, LAST_CHECK)
    late = set(pending)
    scored = await asyncio.gather(*(batcher.submit(by_id[i]) for i in pending))
    made = {rec.transaction_id: rec for rec, _ in scored}
    made |= await run_in_threadpool(store.decisions.get_many, [i for i in request_ids if i not in made])
    out = [DecisionOut.from_record(made[i]) for i in request_ids if i in made]
    return out, [i for i in request_ids if i in late]


@router.post(
    "",
    response_model=AcceptedOut,
    response_model_exclude_none=True,
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=one_or_many_schema(Transaction),
    responses={
        200: {"model": AcceptedOut, "description": "with ?wait=: accepted and decided"},
        **CONFLICT,
        413: {"description": "body too large or too many transactions"},
    },
)
async def accept(
    payload: Annotated[Any, Body()],
    services: ServicesDep,
    batcher: BatcherDep,
    waiters: WaitersDep,
    response: Response,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_WAIT,
            description=f"latency budget in seconds (0 to {MAX_WAIT:g}): answer 200 with the decisions, "
            "made by the worker when it is quick enough and by the API itself past the budget",
        ),
    ] = None,
) -> AcceptedOut:
    """Queue one transaction or a list of them (at most ``FRAUD_MAX_BATCH``) for the worker.

    Idempotent by ``transaction_id``: ids already known, or repeated within the request, are listed
    under ``duplicates`` and never decided twice, so a client can safely retry a timed-out request.
    An id names one transaction: one already received (here or by ``POST /v1/score``) or repeated with
    a different body is a 409 naming it, and nothing of the request is accepted. With ``wait``
    (seconds) the answer is 200 and carries every decision.
    """
    settings = services.settings
    mapping = services.intake.mapping
    if mapping is None:
        transactions = one_or_many(payload, Transaction, max_items=settings.max_batch, noun="transaction")
    else:  # the team's own events, read as the model's training read its file
        transactions = one_or_many_events(payload, mapping, max_items=settings.max_batch)
    new = set(await run_in_threadpool(_enqueue, services, transactions))
    accepted: list[str] = []
    duplicates: dict[str, None] = {}
    for tx in transactions:
        if tx.transaction_id in new:
            new.discard(tx.transaction_id)
            accepted.append(tx.transaction_id)
        else:
            duplicates[tx.transaction_id] = None
    result = AcceptedOut(accepted=accepted, duplicates=list(duplicates))
    if wait is None:
        return result
    by_id = {tx.transaction_id: tx for tx in transactions}
    result.decisions, result.decided_by_api = await _decide_within(
        list(by_id), by_id, services.store, batcher, waiters, wait
    )
    response.status_code = status.HTTP_200_OK
    return result


def _status(store: Store, transaction_id: str, hold_timeout: float) -> TransactionStatusOut | None:
    row = store.decisions.get_transaction(transaction_id)
    if row is None:
        return None
    # The decision and the status change are written in one database transaction; so is a hold.
    decision = None if row["status"] == tables.TX_QUEUED else store.decisions.get(transaction_id)
    state = tables.TX_DECIDED if decision is not None else row["status"]
    out = TransactionStatusOut(
        transaction_id=transaction_id,
        status=state,
        decision=None if decision is None else StoredDecisionOut.from_record(decision),
    )
    if decision is not None and decision.decision == "HOLD":
        hold = store.holds.get(transaction_id)
        out.hold = None if hold is None else HoldOut.of(hold, hold_timeout)
    elif decision is not None and decision.decision == "CHALLENGE":
        challenge = store.challenges.get(transaction_id)
        out.challenge = None if challenge is None else ChallengeOut.of(challenge)
    return out


@router.get("/{transaction_id}", response_model=TransactionStatusOut, responses={404: {}})
async def get_status(
    transaction_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)],
    store: StoreDep,
    settings: SettingsDep,
    waiters: WaitersDep,
    wait: Annotated[
        float,
        Query(
            ge=0, le=MAX_WAIT, description=f"seconds to wait for the decision (long poll), 0 to {MAX_WAIT:g}"
        ),
    ] = 0.0,
) -> TransactionStatusOut:
    """A transaction's status (``queued``, ``decided`` or ``dead``) and its decision once made; for a
    HOLD, the hold (pending, or released or rejected and by what); for a CHALLENGE, its result once
    posted back.

    With ``wait``, answers as soon as the transaction leaves ``queued`` or after ``wait`` seconds,
    whichever is first. Waiting clients hold no thread, and are woken by the decision when this process
    makes it (see :mod:`fraudstream.api.waiters`).
    """
    deadline = time.monotonic() + wait
    step = FIRST_CHECK
    while True:
        found = await run_in_threadpool(_status, store, transaction_id, settings.hold_timeout_seconds)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown transaction {transaction_id!r}")
        remaining = deadline - time.monotonic()
        if found.status != tables.TX_QUEUED or remaining <= 0:
            return found
        await waiters.sleep([transaction_id], min(step, remaining))
        step = min(2 * step, LAST_CHECK)
