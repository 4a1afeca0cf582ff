"""``GET /v1/customers/{customer_id}``: a customer's risk profile for an analyst reviewing a case."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from fraudstream.api.deps import DeciderDep, StoreDep
from fraudstream.api.schemas import CustomerOut, LabelOut, StoredDecisionOut
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import ID_PATTERN, MAX_ID_LENGTH, Transaction, UTCTime
from fraudstream.features import plan
from fraudstream.pipeline.decider import Decider

router = APIRouter(prefix="/v1/customers", tags=["customers"])

#: The customer's aggregates and the novelty flags (``new_device``, ``new_ip``, ...).
CUSTOMER_PREFIXES = ("customer_", "new_")
#: Features that compare the probe's own (zero) amount with the customer's: meaningless here.
PROBE_RELATIVE = ("customer_amount_ratio", "customer_amount_zscore")
#: The operations of the same kind, and travel from the previous location (the probe has none).
PROBE_OPS = frozenset(
    {
        plan.RATIO_MEAN,
        plan.RATIO_MEDIAN,
        plan.RATIO_MAX,
        plan.RATIO_QUANTILE,
        plan.ZSCORE,
        plan.DISTANCE,
        plan.SPEED,
    }
)


JUST_AFTER = timedelta(milliseconds=1)
"""A profile is read this long after the customer's latest transaction, so that it counts it."""


def customer_features(decider: Decider, customer_id: str, now: datetime) -> dict[str, float | None]:
    """The customer's features as a transaction at ``now`` would see them, recording nothing.

    A zero-amount probe transaction is scored as a dry run (:meth:`Decider.score`): the features are
    read from the feature state between the decider's batches, and nothing is stored or recorded.
    Only the customer's own features are returned (the probe has no device or merchant, so theirs mean
    nothing, nor do the ones comparing its zero amount with the customer's); NaN (no history) becomes
    ``null``.
    """
    probe = Transaction(
        transaction_id=f"probe-{uuid.uuid4().hex}", timestamp=now, customer_id=customer_id, amount=0.0
    )
    scored = decider.score(TransactionBatch.from_transactions([probe]))
    engine = decider.scorer.engine
    names = engine.names
    keyed = {  # whatever the spec calls them: the features of keys on the customer alone
        names[group.col0 + o]
        for group in engine.feature_set.groups
        if group.column == "customer_id"
        for o, op in enumerate(group.ops[:, 0].tolist())
        if op not in PROBE_OPS
    }
    return {
        name: None if math.isnan(value) else float(value)
        for name, value in zip(names, scored.features[0].tolist(), strict=True)
        if name in keyed or (name.startswith(CUSTOMER_PREFIXES) and not name.startswith(PROBE_RELATIVE))
    }


@router.get("/{customer_id}", response_model=CustomerOut, responses={404: {}})
def customer(
    customer_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)],
    store: StoreDep,
    decider: DeciderDep,
    limit: Annotated[int, Query(ge=1, le=500, description="most recent decisions and labels")] = 50,
    as_of: Annotated[
        UTCTime | None,
        Query(
            description="the features as a transaction at this time would see them (default: just "
            "after the customer's latest transaction)"
        ),
    ] = None,
) -> CustomerOut:
    """Feature values, recent decisions and fraud labels; 404 when none are known.

    The features are those of the data's time, not the clock's: by default as a transaction just
    after the customer's latest one would see them, so a replayed or delayed stream shows the context
    a live one does."""
    history = store.decisions.customer_history(customer_id, limit=limit)
    if not history["decisions"] and not history["labels"]:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decisions or labels for customer {customer_id!r}")
    if as_of is None:
        times = [r.timestamp for r in history["decisions"]]
        as_of = max(times) + JUST_AFTER if times else datetime.now(UTC)
    return CustomerOut(
        customer_id=customer_id,
        as_of=as_of,
        features=customer_features(decider, customer_id, as_of),
        decisions=[StoredDecisionOut.from_record(r) for r in history["decisions"]],
        labels=[LabelOut.model_validate(row) for row in history["labels"]],
    )
