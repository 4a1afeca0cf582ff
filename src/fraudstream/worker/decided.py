"""Which transactions of a batch already have a decision, asked of the store as rarely as possible, and
which repeated ids come with a different body.

Shared by the worker and the API's synchronous path, which both must not decide a transaction twice.
"""

from __future__ import annotations

import logging

import numpy as np

from fraudstream.events.transaction import Transaction
from fraudstream.state.base import FeatureState, StateError
from fraudstream.storage.rows import body_hash
from fraudstream.storage.store import Store

log = logging.getLogger(__name__)


def decided_before(
    store: Store, state: FeatureState | None, ids: list[str], *, also: list[bool] | None = None
) -> set[str]:
    """Which of ``ids`` already have a stored decision. Only a transaction the feature state has
    recorded can have one (recording comes before storing), so only those it holds, and those ``also``
    flags, are looked up; every id is when the state cannot say. One decided elsewhere meanwhile, or
    decided so long ago that the state has pruned it, is still caught when storing, by
    :meth:`~fraudstream.storage.decisions.DecisionRepository.save` keeping the first decision."""
    if not ids:
        return set()
    recorded = None
    if state is not None:
        try:
            answer = state.recorded(np.asarray(ids, dtype=object))
            recorded = None if answer is None else answer.tolist()
        except StateError as error:
            log.warning("%s; looking up every transaction of the batch", error)
    if recorded is not None:
        flags = recorded if also is None else [r or a for r, a in zip(recorded, also, strict=True)]
        ids = [i for i, flag in zip(ids, flags, strict=True) if flag]
    return store.decisions.decided_ids(ids) if ids else set()


def different_bodies(store: Store, transactions: list[Transaction]) -> list[Transaction]:
    """Those of ``transactions`` whose id is stored with a different body: a second transaction under an
    id already used, which must not be decided or answered as the first. Costs a query and a body hash
    per transaction, so it is asked about repeated ids only."""
    if not transactions:
        return []
    known = store.decisions.body_hashes([t.transaction_id for t in transactions])
    return [t for t in transactions if known.get(t.transaction_id) not in (None, body_hash(t))]
