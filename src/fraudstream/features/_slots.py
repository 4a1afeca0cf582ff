"""Which context event answers each row of a batch, for :mod:`fraudstream.features._inputs`.

A row whose transaction is already in the fetched history (a redelivery) is answered by that event;
the first row of each other transaction joins the context after the history, and later rows of the
same transaction share its event. Two versions give the same answer: lists for the API's few rows,
numpy for batches.
"""

from __future__ import annotations

import numpy as np

from fraudstream.features import keys
from fraudstream.state.base import History


def slots_few(
    history: History, rows: list[int], q_tx: np.ndarray, known: np.ndarray | None
) -> tuple[list[int], list[int], bool]:
    """:func:`slots_many` for a few rows, in plain Python: the same answer, as lists."""
    n, n_hist = len(rows), len(history)
    found = [-1] * n
    if n_hist and known is None:
        found = keys.lookup(history.events["transaction_id"], q_tx).tolist()
    elif n_hist and known is not None:
        ask = [i for i, k in enumerate(known.tolist()) if k]
        if ask:
            hits = keys.lookup(history.events["transaction_id"], q_tx[ask]).tolist()
            for i, s in zip(ask, hits, strict=True):
                found[i] = s
    add: list[int] = []
    added: dict[object, int] = {}
    for i, tx in enumerate(q_tx.tolist()):
        if found[i] < 0:
            s = added.get(tx)
            if s is None:
                s = added[tx] = n_hist + len(add)
                add.append(rows[i])
            found[i] = s
    return found, add, len(add) < n


def slots_many(
    history: History, rows: np.ndarray, q_tx: np.ndarray, known: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Which context event answers each row, which batch rows join the context, and whether some
    rows share an event.

    A row whose transaction is among the fetched events (redelivered) is answered by that event; the
    first row of each other transaction is added after the history; later rows of the same transaction
    share its event. ``known`` (from :meth:`FeatureState.recorded`) limits the search of the history
    to the transactions that can be in it."""
    n, n_hist = q_tx.shape[0], len(history)
    if not n_hist:
        slot = np.full(n, -1, dtype=np.int64)
    elif known is None:
        slot = keys.lookup(history.events["transaction_id"], q_tx)
    else:
        slot = np.full(n, -1, dtype=np.int64)
        ask = np.flatnonzero(known)
        if ask.size:
            slot[ask] = keys.lookup(history.events["transaction_id"], q_tx[ask])
    first = keys.first_seen(q_tx)
    fresh = (slot < 0) & first
    slot[fresh] = n_hist + np.arange(np.count_nonzero(fresh))
    repeated = (slot < 0) & ~first
    if repeated.any():
        slot[repeated] = slot[fresh][keys.lookup(q_tx[fresh], q_tx[repeated])]
    return slot, rows[fresh], not fresh.all()
