"""Event webhooks' events: typed, with a stable JSON envelope, one per fact another system may act on.

An event is ``{"id", "type", "created", "emitted", "data"}``: ``id`` is stable (the same fact
emitted twice is the same event, and a replay re-sends it unchanged), ``created`` is the time of the
fact in the data where it has one (a decision's transaction time, a label's ``label_time``) and
otherwise when it happened, ``emitted`` when fraudstream wrote the event, and ``data`` the fact
itself. Times are ISO 8601 in UTC with a ``Z``.

A new kind of event is a name in :data:`EVENT_TYPES` and a :class:`WebhookEvent` handed to
:func:`fraudstream.storage.webhooks.emit` inside the database transaction that stores the fact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

DECISION_CREATED = "decision.created"
"""A decision was stored (of the outcomes ``FRAUD_WEBHOOK_DECISIONS`` names); ``data``: the decision."""
CASE_OPENED = "case.opened"
"""A FLAG, HOLD or BLOCK opened a case; ``data``: the case."""
CASE_UPDATED = "case.updated"
"""A case was claimed or assigned (its assignee, and its status to ``in_review``); ``data``: the case
with ``change``, ``actor`` and ``previous`` (status and assignee before)."""
CASE_VERDICT = "case.verdict"
"""An analyst gave a case its verdict and closed it; ``data``: the case with ``actor``, ``note``, its
``transaction_ids`` and the ``holds`` it resolved."""
LABEL_CREATED = "label.created"
"""A label took effect: a source's first verdict on a transaction, or a changed one (``supersedes``
holds the verdict it replaced); ``data``: the label."""

HOLD_RESOLVED = "hold.resolved"
"""A held payment's wait ended: released (APPROVE) or rejected (BLOCK) by its case's verdict or by the
timeout; ``data``: the hold, with its ``outcome``, ``resolution`` and ``waited_seconds``."""
CHALLENGE_RESULT = "challenge.result"
"""The result of a step-up challenge was posted back (first time only); ``data``: the result."""

EVENT_TYPES: tuple[str, ...] = (
    DECISION_CREATED,
    CASE_OPENED,
    CASE_UPDATED,
    CASE_VERDICT,
    LABEL_CREATED,
    HOLD_RESOLVED,
    CHALLENGE_RESULT,
)
"""Every event type, in the order the documentation lists them; an endpoint subscribes to some of them
or to :data:`ALL_TYPES`."""
ALL_TYPES = "*"
"""An endpoint's subscription to every type, including those added later."""


def event_id(type_: str, key: str) -> str:
    """``evt_`` and 32 hex digits derived from the type and the key: every process names one fact's
    event alike, so emitting it twice stores it once."""
    return "evt_" + hashlib.sha256(f"{type_}\x00{key}".encode()).hexdigest()[:32]


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@dataclass(frozen=True)
class WebhookEvent:
    """One event before it is stored: ``type``, a ``key`` that names the fact within its type (a
    transaction id, ``case:12``, an audit entry's id), the ``data``, the fact's own time in the data
    (``occurred``, if it has one) and the ``subject`` it is about, by which it can be found."""

    type: str
    key: str
    data: dict[str, Any]
    occurred: datetime | None = None
    subject: str = ""
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", event_id(self.type, self.key))

    def created(self, emitted: datetime) -> datetime:
        """The envelope's ``created``: the fact's time in the data, or ``emitted`` without one."""
        return _utc(self.occurred) if self.occurred is not None else _utc(emitted)

    def body(self, emitted: datetime) -> bytes:
        """The envelope as the exact bytes every delivery of this event sends and signs."""
        envelope = {
            "id": self.id,
            "type": self.type,
            "created": self.created(emitted),
            "emitted": _utc(emitted),
            "data": self.data,
        }
        try:
            return orjson.dumps(
                envelope, default=_json_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
            )
        except orjson.JSONEncodeError:  # what orjson refuses (integers beyond 64 bits): the standard library
            return json.dumps(envelope, default=_json_default, separators=(",", ":")).encode()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, datetime):
        return _utc(value).isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


__all__ = [
    "ALL_TYPES",
    "CASE_OPENED",
    "CASE_UPDATED",
    "CASE_VERDICT",
    "DECISION_CREATED",
    "EVENT_TYPES",
    "LABEL_CREATED",
    "WebhookEvent",
    "event_id",
]
