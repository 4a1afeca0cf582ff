"""Event webhooks: typed events (decisions, cases, labels) posted to the endpoints that subscribe to
them, signed with HMAC-SHA256, retried with back-off, every attempt logged.

The events are written by the store (:mod:`fraudstream.storage.webhooks`); :func:`open_webhooks`
starts the background sender a ``serve`` or ``worker`` process runs. The Slack-shaped alert webhook
(:mod:`fraudstream.alerts`) is a different channel: alerts for people, not events for systems.
"""

from __future__ import annotations

from fraudstream.config import Settings
from fraudstream.storage.store import Store
from fraudstream.webhooks.dispatcher import Retry, WebhookDispatcher, post
from fraudstream.webhooks.signing import SIGNATURE_HEADER, TOLERANCE_SECONDS, signature, signature_header


def open_webhooks(settings: Settings, store: Store) -> WebhookDispatcher:
    """A started :class:`WebhookDispatcher` for ``settings`` (with ``FRAUD_WEBHOOK_SENDERS=0``, one that
    runs no thread); close it at shutdown."""
    return WebhookDispatcher.from_settings(settings, store).start()


__all__ = [
    "SIGNATURE_HEADER",
    "TOLERANCE_SECONDS",
    "Retry",
    "WebhookDispatcher",
    "open_webhooks",
    "post",
    "signature",
    "signature_header",
]
