"""``POST /v1/labels``: fraud feedback (chargebacks, analyst verdicts) for decided transactions.

Labels are stored, then fed into the feature state at once, so fraud-rate features of the devices,
IPs and merchants involved reflect them from the next decision on (as they would after a restart,
when the state is rebuilt from stored labels).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body

from fraudstream.api.bodies import one_or_many, one_or_many_schema
from fraudstream.api.deps import ScorerDep, SettingsDep, StoreDep
from fraudstream.api.schemas import LabelIn, LabelsOut
from fraudstream.scoring.scorer import Scorer
from fraudstream.storage.store import Store

router = APIRouter(prefix="/v1/labels", tags=["labels"])


def unknown_ids(store: Store, ids: list[str]) -> list[str]:
    """Which ``ids`` have no stored transaction (decided ones are found in one query)."""
    unique = list(dict.fromkeys(ids))
    decided = store.decided_ids(unique)
    return [i for i in unique if i not in decided and store.get_transaction(i) is None]


def feed_state(scorer: Scorer, labels: list[LabelIn]) -> int:
    """Attach the labels to the feature state; how many fraud labels were new there.

    Holds the scorer's lock, as scoring does: the in-memory state is not safe to change while the
    embedded worker reads or prunes it.
    """
    ids = np.array([label.transaction_id for label in labels], dtype=object)
    times = np.array([label.label_time.timestamp() for label in labels], dtype=np.float64)
    fraud = np.array([label.is_fraud for label in labels], dtype=bool)
    return scorer.record_labels(ids, times, fraud)


@router.post("", response_model=LabelsOut, openapi_extra=one_or_many_schema(LabelIn))
def add_labels(
    payload: Annotated[Any, Body()], store: StoreDep, scorer: ScorerDep, settings: SettingsDep
) -> LabelsOut:
    """Store one label or a list (at most ``FRAUD_MAX_BATCH``); a repeat per (transaction, source) is
    ignored. Labels for ids the engine has not seen are kept too and listed under ``unknown``."""
    labels = one_or_many(payload, LabelIn, max_items=settings.max_batch, noun="label")
    accepted = store.add_labels(labels)
    feed_state(scorer, labels)
    unknown = unknown_ids(store, [label.transaction_id for label in labels])
    return LabelsOut(accepted=accepted, unknown=unknown)
