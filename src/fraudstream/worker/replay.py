"""Replay: push a dataset through exactly what production does — the decider's state, models, rules,
storage.

Transactions go through in event-time order in large batches; fraud labels are delivered to the
feature state as they arrive (once their ``label_time`` has passed), just as chargebacks would.
The result is an offline backtest of the online path, with its throughput.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.events.frame import iter_records
from fraudstream.events.transaction import Label, Transaction
from fraudstream.pipeline.decider import DUPLICATE, Decider
from fraudstream.pipeline.scorer import Scorer
from fraudstream.storage.decisions import Known
from fraudstream.storage.store import Store
from fraudstream.storage.writer import DecisionWriter


@dataclass
class ReplayResult:
    """Row-aligned with the replayed table: what was decided, and how fast."""

    probability: np.ndarray
    decision: np.ndarray
    seconds: float
    stored: int

    @property
    def rate(self) -> float:
        return len(self.probability) / self.seconds if self.seconds else 0.0


class _Written:
    """The replay's :class:`~fraudstream.pipeline.decider.Ledger`: decisions go to the writer process
    (or nowhere, without a store), with the labels that arrived before their batch. A replay decides
    its file's rows afresh, so nothing is looked up: the writer keeps the first decision of an id."""

    def __init__(self, writer: DecisionWriter | None) -> None:
        self.writer = writer
        self.labels: list[Label] = []
        self.bodies: dict[str, Transaction] | None = None
        """The batch's transactions by id, when they are stored too (``keep_transactions``)."""

    def known(self, ids: list[str]) -> dict[str, Known]:
        return {}

    def save(
        self, decided: DecisionColumns, bodies: list[Transaction] | None, clashes: set[str]
    ) -> list[str]:
        if self.writer is not None:
            if bodies is None and self.bodies is not None:
                bodies = [self.bodies[i] for i in decided.transaction_id.tolist()]
            self.writer.save(decided, self.labels, bodies)
        self.labels = []
        return decided.transaction_id.tolist()

    def decisions(self, ids: list[str]) -> dict[str, DecisionRecord]:
        return {}


def replay(
    frame: pd.DataFrame,
    scorer: Scorer,
    store: Store | None,
    *,
    batch_size: int = 5000,
    progress: Callable[[str, int, int], None] | None = None,
    around_batch: Callable[[], AbstractContextManager[Any]] = nullcontext,
    keep_transactions: bool = False,
) -> ReplayResult:
    """Decide ``frame`` in time order, batch by batch, through a :class:`Decider` as the online path
    does, storing decisions when ``store`` is given; ``around_batch`` (a module-level function, for the
    writer process to call too) is entered around deciding and around writing each batch
    (``fraudstream replay`` pauses the collector).

    The result is aligned with ``frame`` sorted by timestamp (stably); pass it sorted to align with it.
    A row repeating an earlier row's id gets that row's decision.

    With ``keep_transactions`` the transactions are stored beside their decisions, as the live paths
    store them, so a server or worker started on that store afterwards warms its feature state with
    this history (a team's history loaded before going live); it costs a validated transaction per row.
    """
    if not frame["timestamp"].is_monotonic_increasing:
        frame = frame.sort_values("timestamp", kind="stable")
    frame = frame.reset_index(drop=True)
    batch = TransactionBatch.from_frame(frame)
    n = len(batch)
    fraud = np.flatnonzero((batch.is_fraud == 1) & ~np.isnan(batch.label_time))
    fraud = fraud[np.argsort(batch.label_time[fraud], kind="stable")]
    delivered = np.zeros(n, dtype=bool)
    probability = np.full(n, np.nan)
    decision = np.empty(n, dtype=object)
    started = time.perf_counter()
    writer = DecisionWriter(store, around_batch) if store is not None else None
    ledger = _Written(writer)
    decider = Decider(scorer, ledger)
    with writer or nullcontext():
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            due = fraud[(batch.label_time[fraud] < batch.timestamp[hi - 1]) & (fraud < lo)]
            due = due[~delivered[due]]
            if due.size:
                delivered[due] = True
                ids, times = batch.transaction_id[due], batch.label_time[due]
                decider.record_labels(ids, times, np.ones(due.size, dtype=bool))
                if writer is not None:
                    pairs = zip(ids, pd.to_datetime(times, unit="s", utc=True), strict=True)
                    ledger.labels = [Label(transaction_id=t, is_fraud=True, label_time=w) for t, w in pairs]
            if keep_transactions and writer is not None:
                bodies = (Transaction.model_validate(r) for r in iter_records(frame.iloc[lo:hi]))
                ledger.bodies = {t.transaction_id: t for t in bodies}
            with around_batch():
                decided = decider.decide(batch.take(np.arange(lo, hi)))
            if decided.new is not None:
                at = lo + decided.new_rows
                probability[at] = decided.new.probability
                decision[at] = decided.new.decision
            for row in decided.rows(DUPLICATE):  # an id seen before: its first row's decision
                first = _first_row(batch.transaction_id, lo + row)
                probability[lo + row], decision[lo + row] = probability[first], decision[first]
            if progress:
                progress("replay", hi, n)
    stored = writer.stored if writer is not None else 0  # complete: leaving the block waited for it
    return ReplayResult(probability, decision, time.perf_counter() - started, stored)


def _first_row(ids: np.ndarray, row: int) -> int:
    return int(np.flatnonzero(ids[: row + 1] == ids[row])[0])
