"""``POST /v1/score``: decide one transaction now, in the request.

The synchronous path for callers that must hold a payment until it is decided. A replayed id gets
the decision already made (``duplicate: true``), never a second one, and leaves the feature state as
it was; ``dry_run`` scores against the current state without recording anything anywhere.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from fraudstream.api.deps import MetricsDep, ScorerDep, StoreDep
from fraudstream.api.schemas import DecisionOut
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Transaction

router = APIRouter(tags=["scoring"])


@router.post("/v1/score", response_model=DecisionOut)
def score(
    transaction: Transaction,
    store: StoreDep,
    scorer: ScorerDep,
    metrics: MetricsDep,
    dry_run: Annotated[bool, Query(description="score without storing or updating feature state")] = False,
) -> DecisionOut:
    """Score one transaction synchronously and store the decision (unless ``dry_run``).

    A plain ``def``: scoring is CPU work, so FastAPI runs it in its thread pool and the event loop
    keeps serving other requests.
    """
    if not dry_run:
        existing = store.get_decision(transaction.transaction_id)
        if existing is not None:
            return DecisionOut.from_record(existing, duplicate=True)
    started = time.perf_counter()
    scored = scorer.score(TransactionBatch.from_transactions([transaction]), record=not dry_run)
    metrics.observe_scoring("sync", time.perf_counter() - started)
    record = scored.records(scorer.engine.names, scorer.version)[0]
    if dry_run:
        return DecisionOut.from_record(record)
    if not store.save_decisions([record], [transaction]):
        # Decided meanwhile by the worker or a concurrent request: the first decision stands.
        stored = store.get_decision(transaction.transaction_id)
        if stored is not None:
            return DecisionOut.from_record(stored, duplicate=True)
    metrics.count_decisions([record.decision])
    return DecisionOut.from_record(record)
