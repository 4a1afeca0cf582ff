"""Plain records that cross the storage boundary, so no caller depends on SQLAlchemy rows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np


class FeatureVector(Mapping[str, float | None]):
    """A decision's feature values by name, held as the scorer's numpy row.

    Scoring ten thousand transactions would otherwise build a million Python floats and ten thousand
    dicts that storage immediately packs back into bytes; this mapping packs straight from the row
    and converts a value only when somebody reads it. Missing values (NaN) read as ``None``.
    """

    __slots__ = ("_index", "names", "row")

    def __init__(self, names: Sequence[str], row: np.ndarray, index: Mapping[str, int] | None = None):
        self.names = names
        self.row = row
        self._index = index if index is not None else {n: i for i, n in enumerate(names)}

    def __getitem__(self, name: str) -> float | None:
        value = float(self.row[self._index[name]])
        return None if value != value else value

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class DecisionRecord:
    """One decision as stored: what was decided for a transaction, why, by which model, and how fast.

    ``transaction_id`` is the idempotency key: the first decision saved for a transaction is final,
    so a replayed message can never produce a second, different outcome.
    """

    transaction_id: str
    customer_id: str
    timestamp: datetime
    amount: float
    decision: str
    probability: float
    reasons: list[dict[str, Any]]
    rules: list[str]
    model_version: str
    features: Mapping[str, float | None]
    latency_ms: dict[str, float]
    decided_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class QueuedMessage:
    """A message claimed from the durable queue; ack its ``id`` once it has been handled."""

    id: int
    topic: str
    key: str | None
    payload: dict[str, Any]
    created_at: datetime
