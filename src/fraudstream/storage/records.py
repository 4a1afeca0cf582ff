"""Plain records that cross the storage boundary, so no caller depends on SQLAlchemy rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


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
    features: dict[str, float | None]
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
