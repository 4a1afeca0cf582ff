"""Replay: push a dataset through exactly what production does — state, models, rules, storage.

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
from fraudstream.events.transaction import Label
from fraudstream.pipeline.scorer import Scorer
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


def replay(
    frame: pd.DataFrame,
    scorer: Scorer,
    store: Store | None,
    *,
    batch_size: int = 5000,
    progress: Callable[[str, int, int], None] | None = None,
    around_batch: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> ReplayResult:
    """Score ``frame`` in time order, batch by batch, storing decisions when ``store`` is given;
    ``around_batch`` is entered around scoring each batch (``fraudstream replay`` pauses the collector).

    The result is aligned with ``frame`` sorted by timestamp (stably); pass it sorted to align with it.
    """
    if not frame["timestamp"].is_monotonic_increasing:
        frame = frame.sort_values("timestamp", kind="stable")
    frame = frame.reset_index(drop=True)
    batch = TransactionBatch.from_frame(frame)
    n = len(batch)
    fraud = np.flatnonzero((batch.is_fraud == 1) & ~np.isnan(batch.label_time))
    fraud = fraud[np.argsort(batch.label_time[fraud], kind="stable")]
    delivered = np.zeros(n, dtype=bool)
    probability = np.empty(n)
    decision = np.empty(n, dtype=object)
    started = time.perf_counter()
    writer = DecisionWriter(store) if store is not None else None
    with writer or nullcontext():
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            due = fraud[(batch.label_time[fraud] < batch.timestamp[hi - 1]) & (fraud < lo)]
            due = due[~delivered[due]]
            labels = []
            if due.size:
                delivered[due] = True
                ids, times = batch.transaction_id[due], batch.label_time[due]
                scorer.state.record_labels(ids, times, np.ones(due.size, dtype=bool))
                if writer is not None:
                    pairs = zip(ids, pd.to_datetime(times, unit="s", utc=True), strict=True)
                    labels = [Label(transaction_id=t, is_fraud=True, label_time=w) for t, w in pairs]
            with around_batch():
                scored = scorer.score(batch.take(np.arange(lo, hi)))
            probability[lo:hi] = scored.probability
            decision[lo:hi] = scored.decision
            if writer is not None:
                writer.save(scored.columns(scorer.engine.names), labels)
            if progress:
                progress("replay", hi, n)
    stored = writer.stored if writer is not None else 0  # complete: leaving the block waited for it
    return ReplayResult(probability, decision, time.perf_counter() - started, stored)
