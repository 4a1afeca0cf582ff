"""Alerts by e-mail over SMTP, from ``FRAUD_SMTP_URL``: one message per batch of alerts.

``smtp://user:password@host:587`` uses STARTTLS when the server offers it and credentials are given
(a password is never sent in clear when TLS is available); ``smtps://...:465`` uses TLS from the
start; without credentials no login is attempted (a local relay).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from fraudstream.alerts.base import AlertConfigError, Channel, DeliveryError, plain_text, title
from fraudstream.events.alert import Alert

_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


class EmailChannel(Channel):
    """Sends alerts from ``sender`` to ``recipients`` through the SMTP server of ``url``."""

    name = "email"

    def __init__(self, url: str, sender: str, recipients: list[str], *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise AlertConfigError(
                f"FRAUD_SMTP_URL must look like smtp://user:password@host:port (or smtps://), not {url!r}"
            )
        if not recipients:
            raise AlertConfigError("FRAUD_SMTP_URL is set but FRAUD_ALERT_EMAIL_TO names no recipients")
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise AlertConfigError(f"FRAUD_SMTP_URL has an invalid port: {exc}") from None
        self.tls = parts.scheme == "smtps"
        self.host, self.port = parts.hostname, port
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else ""
        self.sender, self.recipients, self.timeout = sender, list(recipients), timeout

    def message(self, alerts: list[Alert]) -> EmailMessage:
        """The e-mail for ``alerts``: the title as subject, the plain-text alerts as body."""
        msg = EmailMessage()
        msg["Subject"] = title(alerts)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg.set_content(plain_text(alerts))
        return msg

    def send(self, alerts: list[Alert]) -> None:
        msg = self.message(alerts)
        try:
            if self.tls:
                context = ssl.create_default_context()
                with smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context) as smtp:
                    self._deliver(smtp, msg)
            else:
                with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                    smtp.ehlo()
                    if self.user and smtp.has_extn("starttls"):
                        smtp.starttls(context=ssl.create_default_context())
                        smtp.ehlo()
                    self._deliver(smtp, msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"SMTP {self.host}:{self.port} failed: {type(exc).__name__}: {exc}".strip()
            ) from exc

    def _deliver(self, smtp: smtplib.SMTP, msg: EmailMessage) -> None:
        if self.user:
            smtp.login(self.user, self.password)
        smtp.send_message(msg, from_addr=self.sender, to_addrs=self.recipients)
