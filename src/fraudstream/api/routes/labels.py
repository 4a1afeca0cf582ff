"""``/v1/labels``: fraud feedback (chargebacks, analyst verdicts) for transactions the engine has seen.

``POST`` takes labels for known transactions only: an unknown ``transaction_id``, or a ``label_time``
before the transaction's own time, is a 422 naming the label and the field, and nothing of the request
is stored (a verdict given in advance could otherwise stand in for the real one). Each source has one
current verdict per transaction; a later label from the same source that says the opposite, with a
``label_time`` not before the current one's, supersedes it, and the old verdict is kept in the history
(``GET /v1/labels/{transaction_id}``). Where sources disagree, fraud wins.

Fraud labels that take effect are fed into the feature state at once, so the fraud features of the
devices, IPs and merchants involved reflect them from the next decision on. The state counts a
transaction as known fraud once, from the first fraud label it learns; a verdict changed from fraud to
legitimate is in the store at once, and in the state when it is next rebuilt from the store (a restart
of the in-memory state; a Redis state keeps the fraud until the transaction ages out).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, HTTPException, Path, status
from fastapi.exceptions import RequestValidationError

from fraudstream.api.bodies import one_or_many, one_or_many_schema
from fraudstream.api.deps import DeciderDep, SettingsDep, StoreDep
from fraudstream.api.schemas import LabelIn, LabelOut, LabelsOut, SupersededLabelOut, TransactionLabelsOut
from fraudstream.events.transaction import ID_PATTERN, MAX_ID_LENGTH
from fraudstream.pipeline.decider import Decider
from fraudstream.storage.store import Store

router = APIRouter(prefix="/v1/labels", tags=["labels"])


def refuse_unlabelable(store: Store, labels: list[LabelIn], *, many: bool) -> None:
    """Raise a 422 naming each label whose transaction is unknown or whose ``label_time`` precedes the
    transaction (``loc`` ``body.<index>.<field>`` for a list, ``body.<field>`` for one label)."""
    times = store.decisions.transaction_times([label.transaction_id for label in labels])
    errors: list[dict[str, Any]] = []
    for k, label in enumerate(labels):
        at = ("body", k) if many else ("body",)
        timestamp = times.get(label.transaction_id)
        if timestamp is None:
            errors.append(
                {
                    "type": "unknown_transaction",
                    "loc": (*at, "transaction_id"),
                    "msg": "no transaction with this id is known: label a transaction once it has been sent",
                    "input": label.transaction_id,
                }
            )
        elif label.label_time < timestamp:
            errors.append(
                {
                    "type": "label_before_transaction",
                    "loc": (*at, "label_time"),
                    "msg": f"label_time is before the transaction's timestamp ({timestamp.isoformat()})",
                    "input": label.label_time.isoformat(),
                }
            )
    if errors:
        raise RequestValidationError(errors)


def feed_state(decider: Decider, labels: list[LabelIn]) -> int:
    """Attach the labels to the feature state, between the decider's batches; how many fraud labels
    were new there."""
    ids = np.array([label.transaction_id for label in labels], dtype=object)
    times = np.array([label.label_time.timestamp() for label in labels], dtype=np.float64)
    fraud = np.array([label.is_fraud for label in labels], dtype=bool)
    return decider.record_labels(ids, times, fraud)


@router.post(
    "",
    response_model=LabelsOut,
    openapi_extra=one_or_many_schema(LabelIn),
    responses={422: {"description": "an invalid label, an unknown transaction, or a label_time before it"}},
)
def add_labels(
    payload: Annotated[Any, Body()], store: StoreDep, decider: DeciderDep, settings: SettingsDep
) -> LabelsOut:
    """Store one label or a list (at most ``FRAUD_MAX_BATCH``), in order, for known transactions.

    Per (transaction, source): the first label is stored; one saying the opposite of the current verdict,
    with a ``label_time`` not before it, supersedes it (the old one is kept in the history); the same
    verdict again, or an older one, is ignored. A label for an unknown transaction, or with a
    ``label_time`` before the transaction's, makes the request a 422 and nothing is stored.
    """
    labels = one_or_many(payload, LabelIn, max_items=settings.max_batch, noun="label")
    refuse_unlabelable(store, labels, many=isinstance(payload, list))
    changes = store.labels.apply(labels)
    if changes.fraud:
        feed_state(decider, changes.fraud)
    return LabelsOut(accepted=changes.accepted, superseded=changes.superseded, ignored=changes.ignored)


@router.get("/{transaction_id}", response_model=TransactionLabelsOut, responses={404: {}})
def get_labels(
    transaction_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)],
    store: StoreDep,
) -> TransactionLabelsOut:
    """A transaction's labels: each source's current verdict, what they add up to (fraud when any says
    fraud), and the verdicts that were superseded. 404 for a transaction neither known nor labelled."""
    current = store.labels.for_transactions([transaction_id])
    history = store.labels.history(transaction_id)
    if not current and not history and not store.decisions.transaction_times([transaction_id]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown transaction {transaction_id!r}")
    return TransactionLabelsOut(
        transaction_id=transaction_id,
        is_fraud=any(row["is_fraud"] for row in current) if current else None,
        labels=[LabelOut.model_validate(row) for row in current],
        history=[SupersededLabelOut.model_validate(row) for row in history],
    )
