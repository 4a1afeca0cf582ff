"""Stand-ins shared by the unit tests."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.decision import DecisionColumns
from fraudstream.state.base import EVENT_FIELDS


class BlockingScorer:
    """BLOCKs every row; with a feature state it records each batch there first, as the real scorer
    does."""

    version = "fake"
    engine = SimpleNamespace(names=["amount"])

    def __init__(self, state: Any = None) -> None:
        self.state = state
        self.scored: list[str] = []

    def score(self, batch: TransactionBatch) -> Any:
        if self.state is not None:
            self.state.record({f: getattr(batch, f) for f in EVENT_FIELDS}, {"customer": "customer_id"})
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
