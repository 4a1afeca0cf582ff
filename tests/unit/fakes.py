"""Stand-ins shared by the unit tests."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from types import SimpleNamespace
from typing import Any

import numpy as np

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.decision import DecisionColumns
from fraudstream.state.base import EVENT_FIELDS


class _Engine:
    """Records a batch's events under the customer, as the real engine does for a decider."""

    names = ("amount",)

    def record(self, batch: TransactionBatch, state: Any) -> np.ndarray:
        return state.record({f: getattr(batch, f) for f in EVENT_FIELDS}, {"customer": "customer_id"})


class _NoState:
    """A feature state that cannot say what it holds (every id is looked up) and keeps nothing."""

    def recorded(self, transaction_ids: np.ndarray) -> None:
        return None

    def record(self, events: Any, entities: Any) -> np.ndarray:
        return np.ones(len(events["transaction_id"]), dtype=bool)

    def turn(self) -> AbstractContextManager[None]:
        return nullcontext()


class BlockingScorer:
    """BLOCKs every row, for a :class:`~fraudstream.pipeline.decider.Decider`; without a feature state,
    one that cannot say what it holds."""

    version = "fake"
    engine = _Engine()
    aggregates = None
    bundle = SimpleNamespace(manifest=SimpleNamespace(version="fake"))

    def __init__(self, state: Any = None) -> None:
        self.state = state if state is not None else _NoState()
        self.scored: list[str] = []

    def record_labels(self, *_: Any) -> int:
        return 0

    def score(self, batch: TransactionBatch, *, record: bool = False) -> Any:
        self.scored += batch.transaction_id.tolist()
        n = len(batch)

        def columns(names: Any, version: str | None = None) -> DecisionColumns:
            return DecisionColumns(
                transaction_id=batch.transaction_id,
                customer_id=batch.customer_id,
                timestamp=batch.timestamp,
                amount=batch.amount,
                decision=np.array(["BLOCK"] * n, dtype=object),
                probability=np.full(n, 0.99),
                reasons=[[] for _ in range(n)],
                rules=[[] for _ in range(n)],
                features=batch.amount[:, None].astype(np.float64),
                feature_names=list(names),
                model_version=version or self.version,
                latency_ms={"total": 1.0},
            )

        return SimpleNamespace(columns=columns)
