"""How a delivery is signed, and the headers that carry the signature and the event's identity.

The signature is HMAC-SHA256, keyed with the endpoint's secret, over ``"{timestamp}.{raw body}"``,
sent as ``Fraudstream-Signature: t=<unix seconds>,v1=<hex digest>``. The timestamp is the attempt's
own, so a receiver that rejects old timestamps (:data:`TOLERANCE_SECONDS` is the tolerance the
documentation recommends) rejects a captured request replayed later, and an attempt made again, or a
replay, signs afresh. Receivers de-duplicate by ``Fraudstream-Event-Id``, since delivery is
at-least-once.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Fraudstream-Signature"
EVENT_ID_HEADER = "Fraudstream-Event-Id"
EVENT_TYPE_HEADER = "Fraudstream-Event-Type"
DELIVERY_HEADER = "Fraudstream-Delivery-Id"
ATTEMPT_HEADER = "Fraudstream-Delivery-Attempt"
TOLERANCE_SECONDS = 300
"""How old a signature's timestamp a receiver should accept at most: five minutes."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"{timestamp}.{body}"`` keyed with ``secret`` (its UTF-8 bytes, whole)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<timestamp>,v1=<signature>``: the value of :data:`SIGNATURE_HEADER`."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


__all__ = [
    "ATTEMPT_HEADER",
    "DELIVERY_HEADER",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "TOLERANCE_SECONDS",
    "signature",
    "signature_header",
]
