"""Alerts: something a person should look at now, and each attempt to tell them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
#: Stored while no channel is configured: listed by the API, never delivered.
STORED = "stored"


@dataclass
class Alert:
    """Something a person should look at now: a BLOCK, a burst of FLAGs, an alerting rule's hit.

    ``entity`` is what the alert is about (``"customer:c42"``); de-duplication is per ``(kind, entity)``.
    ``message`` is the human text; ``details`` the machine-readable facts behind it.
    """

    kind: str
    entity: str
    transaction_id: str | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: str = PENDING
    id: int | None = None


@dataclass
class DeliveryAttempt:
    """One try at delivering one alert on one channel; ``error`` is ``None`` when it worked."""

    alert_id: int
    channel: str
    attempt: int
    ok: bool
    error: str | None = None
    attempted_at: datetime = field(default_factory=lambda: datetime.now(UTC))
