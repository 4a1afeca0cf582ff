"""Alerts: detect what should page someone, store it, deliver it to a webhook and by e-mail.

Start one :class:`AlertDispatcher` per process with :func:`open_dispatcher` and give its
:meth:`~AlertDispatcher.submit` every batch of newly stored decisions (``Worker(on_decided=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fraudstream.alerts.base import AlertConfigError, AlertError, Channel, DeliveryError
from fraudstream.alerts.detect import AlertDetector, alerting_rules
from fraudstream.alerts.dispatcher import AlertDispatcher, Retry
from fraudstream.config import Settings
from fraudstream.events.alert import Alert
from fraudstream.storage.store import Store


def channels_from_settings(settings: Settings) -> list[Channel]:
    """The channels the settings configure: the webhook and/or e-mail; none is fine (store only)."""
    channels: list[Channel] = []
    if settings.alert_webhook_url:
        from fraudstream.alerts.webhook import WebhookChannel

        channels.append(WebhookChannel(settings.alert_webhook_url))
    if settings.smtp_url:
        from fraudstream.alerts.email import EmailChannel

        channels.append(EmailChannel(settings.smtp_url, settings.alert_email_from, settings.alert_recipients))
    return channels


def open_dispatcher(
    settings: Settings,
    store: Store,
    alert_rules: Callable[[], Iterable[str]] = frozenset,
    *,
    retry: Retry | None = None,
) -> AlertDispatcher:
    """A started dispatcher for ``settings``: bursts and de-duplication see the stored decisions and
    alerts, so they hold across processes; pending alerts of an earlier run are delivered first.

    Raises :class:`AlertConfigError` when a channel's settings cannot work.
    """
    detector = AlertDetector.from_settings(
        settings, alert_rules=alert_rules, history=store.alerts.flag_history, recent=store.alerts.recent_keys
    )
    return AlertDispatcher(store, detector, channels_from_settings(settings), retry=retry).start()


__all__ = [
    "Alert",
    "AlertConfigError",
    "AlertDetector",
    "AlertDispatcher",
    "AlertError",
    "Channel",
    "DeliveryError",
    "Retry",
    "alerting_rules",
    "channels_from_settings",
    "open_dispatcher",
]
