"""The canonical transaction and label: every source is converted into these."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MIN_TIMESTAMP = datetime(1990, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)
MAX_AMOUNT = 1e12
MAX_ID_LENGTH = 128
ID_PATTERN = r"^[^\x00]+$"
"""Identifiers may hold any character but NUL, which PostgreSQL text cannot store."""

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
OptionalId = Annotated[
    str | None, Field(default=None, min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
]


DECISIONS = ("APPROVE", "FLAG", "BLOCK")
"""The outcomes, mildest first: an index into this tuple orders decisions by severity."""


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
    value = value.astimezone(UTC)
    if not MIN_TIMESTAMP <= value < MAX_TIMESTAMP:
        raise ValueError(f"must be between {MIN_TIMESTAMP:%Y-%m-%d} and {MAX_TIMESTAMP:%Y-%m-%d}")
    return value


UTCTime = Annotated[datetime, AfterValidator(_utc)]
"""A time in UTC (naive taken as UTC) within the supported range. On the type rather than a field
validator, so an optional time that is absent costs no Python call: a worker validates thousands a
batch."""


class Transaction(BaseModel):
    """One payment, in the shape every source is converted into.

    ``transaction_id`` is the idempotency key: the same id seen twice is the same transaction.
    Naive timestamps are taken as UTC. The label fields are optional: they are set by datasets
    that carry ground truth, and arrive later in production through the labels feed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    transaction_id: Identifier
    timestamp: UTCTime
    customer_id: Identifier
    amount: float = Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    merchant_id: OptionalId = None
    merchant_category: OptionalId = None
    channel: Channel = Channel.OTHER
    device_id: OptionalId = None
    ip_address: OptionalId = None
    browser: OptionalId = None
    country: OptionalId = None
    latitude: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    longitude: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    account_created_at: UTCTime | None = None
    payment_type: OptionalId = None
    extra: dict[str, Any] = Field(default_factory=dict)
    is_fraud: bool | None = None
    label_time: UTCTime | None = None
    fraud_scenario: OptionalId = None

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
    is_fraud: bool
    label_time: UTCTime
    source: str = Field(default="chargeback", max_length=32)
