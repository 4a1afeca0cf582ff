"""What every alert channel implements, the area's errors, and the text an alert is shown as."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from fraudstream.events.alert import Alert

#: How many alerts a channel receives in one message at most (Slack allows 50 blocks per message).
MAX_PER_MESSAGE = 20


class AlertError(RuntimeError):
    """Alerting is misconfigured or a channel failed; the message says which and what to do."""


class AlertConfigError(AlertError, ValueError):
    """A channel's settings cannot work (e.g. a malformed ``FRAUD_SMTP_URL``)."""


class DeliveryError(AlertError):
    """One delivery attempt failed; the dispatcher records it and retries with backoff."""


class Channel(ABC):
    """A way to reach people: :meth:`send` delivers a batch of alerts as one message or raises.

    Channels are used from one dispatcher thread each, so they need not be thread-safe; a channel
    must raise :class:`DeliveryError` (or any exception) when the message was not accepted, so that
    the attempt is recorded as failed and retried.
    """

    name: str = "channel"

    @abstractmethod
    def send(self, alerts: list[Alert]) -> None:
        """Deliver ``alerts`` (at most :data:`MAX_PER_MESSAGE`) or raise."""

    def close(self) -> None:  # noqa: B027 - most channels hold nothing open
        """Release connections; the default holds none."""


def title(alerts: list[Alert]) -> str:
    """One line naming what happened: ``"fraudstream: BLOCK for customer:c1"`` or ``"3 fraud alerts"``."""
    if len(alerts) == 1:
        alert = alerts[0]
        return f"fraudstream: {alert.kind.replace('_', ' ')} for {alert.entity}"
    kinds = ", ".join(sorted({a.kind.replace("_", " ") for a in alerts}))
    return f"fraudstream: {len(alerts)} fraud alerts ({kinds})"


def fields(alert: Alert) -> dict[str, Any]:
    """The facts shown next to an alert's message, in a fixed order; missing ones are left out."""
    d = alert.details
    out: dict[str, Any] = {"kind": alert.kind, "entity": alert.entity}
    if alert.transaction_id:
        out["transaction"] = alert.transaction_id
    for key in ("decision", "probability", "amount", "count"):
        if d.get(key) is not None:
            out[key] = d[key]
    if alert.id is not None:
        out["alert id"] = alert.id
    return out


def plain_text(alerts: list[Alert]) -> str:
    """The alerts as plain text, one paragraph each: the e-mail body and the webhook's fallback."""
    parts = []
    for alert in alerts:
        facts = "\n".join(f"  {k}: {v}" for k, v in fields(alert).items())
        parts.append(f"{alert.message}\n{facts}\n  at: {alert.created_at.isoformat(timespec='seconds')}")
    return "\n\n".join(parts) + "\n"
