"""The canonical transaction and label: every source is converted into these."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    field_validator,
    model_validator,
)

MIN_TIMESTAMP = datetime(1990, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)
MAX_AMOUNT = 1e12
MAX_ID_LENGTH = 128
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+$"
"""Identifiers may hold any character but control characters (NUL cannot be stored in PostgreSQL
text; the others would rewrite the logs, alerts, e-mails and reports that show an id) and the line
separators and bidirectional overrides that make shown text read differently from what it is."""

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
OptionalId = Annotated[
    str | None, Field(default=None, min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
]


MAX_EXTRA_KEYS = 256
MAX_EXTRA_DEPTH = 4
MAX_EXTRA_BYTES = 32 * 1024


def check_extra(extra: dict[str, Any]) -> None:
    """Refuse an ``extra`` that is too large, too deep, or holds text that cannot be kept: not valid
    Unicode (a lone surrogate cannot be stored, logged or sent on) or holding NUL (PostgreSQL's text
    and JSON cannot hold it, so one such value would break every later read of its field). The error
    names the key. So does a number that is not finite (NaN, Infinity), which JSON cannot carry."""
    if not extra:
        return
    keys = 0

    def walk(value: Any, path: str, depth: int) -> None:
        nonlocal keys
        if isinstance(value, str):
            _unicode(value, path)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{path} is {value}: only finite numbers can be stored (JSON has no NaN)")
        elif isinstance(value, dict | list):
            if depth > MAX_EXTRA_DEPTH:
                raise ValueError(f"{path} is nested more than {MAX_EXTRA_DEPTH} deep")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                keys += 1
                if keys > MAX_EXTRA_KEYS:
                    raise ValueError(f"extra holds more than {MAX_EXTRA_KEYS} keys and items")
                if isinstance(key, str):
                    _unicode(key, f"{path} key")
                walk(item, f"{path}.{key}" if isinstance(value, dict) else f"{path}[{key}]", depth + 1)

    walk(extra, "extra", 1)
    size = len(json.dumps(extra, default=str))
    if size > MAX_EXTRA_BYTES:
        raise ValueError(f"extra is {size:,} bytes as JSON; at most {MAX_EXTRA_BYTES:,}")


def _unicode(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{path}: not valid Unicode text (character {exc.start + 1})") from None
    at = text.find("\x00")
    if at >= 0:
        raise ValueError(f"{path}: holds a NUL character (character {at + 1}), which cannot be stored")


DECISIONS = ("APPROVE", "FLAG", "CHALLENGE", "HOLD", "BLOCK")
"""The outcomes, mildest first: an index into this tuple orders decisions by severity.

APPROVE lets the payment through; FLAG lets it through and puts it in front of an analyst; CHALLENGE
asks the customer for step-up authentication (3-D Secure, a one-time code) and lets the payment through
if it is passed; HOLD keeps the payment waiting until an analyst's verdict (or a timeout) releases or
rejects it; BLOCK refuses it. CHALLENGE sits above FLAG because it stops the payment until the customer
answers, and below HOLD because the customer can clear it alone, where a hold needs an analyst."""
MODEL_DECISIONS = ("APPROVE", "FLAG", "BLOCK")
"""The outcomes a model's two thresholds give (``flag`` and ``block``), mildest first: training and a
bundle's drift reference know only these. CHALLENGE and HOLD come from score bands set at serving time
and from rules."""
FLAGGED = DECISIONS[1:]
"""Every outcome but APPROVE: the decisions counted as flagged (stats, reports, precision)."""
_ONE_DECISION = "(" + "|".join([*DECISIONS, *(d.lower() for d in DECISIONS)]) + ")"
DECISIONS_PATTERN = f"^ *{_ONE_DECISION} *(, *{_ONE_DECISION} *)*$"
"""A comma-separated list of outcomes, in either case."""


class Channel(StrEnum):
    """Where the payment was made."""

    ONLINE = "online"
    POS = "pos"
    MOBILE = "mobile"
    ATM = "atm"
    TRANSFER = "transfer"
    OTHER = "other"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, or 9999 with a negative one
        raise _out_of_range() from None
    if not MIN_TIMESTAMP <= value < MAX_TIMESTAMP:
        raise _out_of_range()
    return value


def _out_of_range() -> ValueError:
    """Made only when a time is refused: every transaction's times pass through :func:`_utc`."""
    return ValueError(f"must be between {MIN_TIMESTAMP:%Y-%m-%d} and {MAX_TIMESTAMP:%Y-%m-%d}")


StrictNumber = Annotated[float, Strict()]
"""A JSON number: text (``"12.5"``) and booleans are refused rather than converted."""
StrictBool = Annotated[bool, Strict()]
"""``true`` or ``false``: ``0``, ``1`` and ``"yes"`` are refused rather than converted."""

UTCTime = Annotated[datetime, AfterValidator(_utc)]
"""A time in UTC (naive taken as UTC) within the supported range. On the type rather than a field
validator, so an optional time that is absent costs no Python call: a worker validates thousands a
batch."""


def _needs(present: str, required: str, kind: str) -> JsonValue:
    """JSON Schema: when ``present`` holds a value, ``required`` must hold a ``kind``."""
    return {
        "if": {"required": [present], "properties": {present: {"not": {"type": "null"}}}},
        "then": {"required": [required], "properties": {required: {"type": kind}}},
    }


_TOGETHER: list[JsonValue] = [
    _needs("latitude", "longitude", "number"),
    _needs("longitude", "latitude", "number"),
    _needs("label_time", "is_fraud", "boolean"),
]
"""The rules across fields that JSON Schema can state, for the OpenAPI document."""


class Transaction(BaseModel):
    """One payment, in the shape every source is converted into.

    ``transaction_id`` is the idempotency key: the same id seen twice is the same transaction.
    Naive timestamps are taken as UTC. The label fields are optional: they are set by datasets
    that carry ground truth, and arrive later in production through the labels feed.

    Rules across fields: every time lies in 1990-01-01 to 2100-01-01; ``latitude`` and ``longitude``
    come together or not at all; ``label_time`` needs ``is_fraud`` and is not before ``timestamp``.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, json_schema_extra={"allOf": _TOGETHER}
    )

    transaction_id: Identifier
    timestamp: UTCTime
    customer_id: Identifier
    amount: StrictNumber = Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    merchant_id: OptionalId = None
    merchant_category: OptionalId = None
    channel: Channel = Channel.OTHER
    device_id: OptionalId = None
    ip_address: OptionalId = None
    browser: OptionalId = None
    country: OptionalId = None
    latitude: StrictNumber | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    longitude: StrictNumber | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    account_created_at: UTCTime | None = None
    payment_type: OptionalId = None
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            f"Your own fields (a feature spec reads them as extra.<name>): at most {MAX_EXTRA_KEYS} keys "
            f"in all, nested at most {MAX_EXTRA_DEPTH} deep, {MAX_EXTRA_BYTES // 1024} KiB as JSON; text "
            "must be valid Unicode"
        ),
    )
    is_fraud: StrictBool | None = None
    label_time: UTCTime | None = None
    fraud_scenario: OptionalId = None

    @field_validator("extra")
    @classmethod
    def _bounded(cls, extra: dict[str, Any]) -> dict[str, Any]:
        check_extra(extra)
        return extra

    @model_validator(mode="after")
    def _consistent(self) -> Transaction:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude must be given together")
        if self.label_time is not None and self.is_fraud is None:
            raise ValueError("label_time is set but is_fraud is not")
        if self.label_time is not None and self.label_time < self.timestamp:
            raise ValueError("label_time is before the transaction's timestamp")
        return self


class Label(BaseModel):
    """Fraud feedback for a transaction, known from ``label_time`` on (chargebacks come days later)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transaction_id: Identifier
    is_fraud: StrictBool
    label_time: UTCTime
    source: str = Field(default="chargeback", min_length=1, max_length=32, pattern=ID_PATTERN)
