"""Alerts to a Slack-compatible incoming webhook: one POST of JSON per batch of alerts.

The body carries ``text`` (what notifications and plain receivers show) and Slack ``blocks`` with one
section per alert and its facts as fields; Mattermost, Rocket.Chat and Teams' Slack-compatible
endpoints accept the same shape.
"""

from __future__ import annotations

from typing import Any

import httpx

from fraudstream.alerts.base import AlertConfigError, Channel, DeliveryError, fields, plain_text, title
from fraudstream.events.alert import Alert

#: Slack rejects a section whose text exceeds 3000 characters.
_MAX_TEXT = 2900


def _section(alert: Alert) -> dict[str, Any]:
    facts = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields(alert).items()][:10]
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": alert.message[:_MAX_TEXT]},
        "fields": facts,
    }


def webhook_body(alerts: list[Alert]) -> dict[str, Any]:
    """The JSON posted for ``alerts``: ``text`` plus a header and one section per alert."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(alerts)[:150]}}
    ]
    for alert in alerts:
        blocks += [_section(alert), {"type": "divider"}]
    return {"text": f"{title(alerts)}\n{plain_text(alerts)}"[:_MAX_TEXT], "blocks": blocks[:50]}


class WebhookChannel(Channel):
    """POSTs alerts to ``url``; any answer but a 2xx, a timeout or a refused connection is a failure."""

    name = "webhook"

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise AlertConfigError(
                f"FRAUD_ALERT_WEBHOOK_URL must start with http:// or https://, not {url!r}"
            )
        self.url = url
        self._client = httpx.Client(timeout=timeout, headers={"User-Agent": "fraudstream-alerts"})

    def send(self, alerts: list[Alert]) -> None:
        try:
            response = self._client.post(self.url, json=webhook_body(alerts))
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook unreachable: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            body = response.text.strip().replace("\n", " ")[:200]
            raise DeliveryError(f"webhook answered HTTP {response.status_code}: {body}")

    def close(self) -> None:
        self._client.close()
