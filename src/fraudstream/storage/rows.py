"""Conversions between the app's objects and table rows, and the opaque pagination cursor."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from fraudstream.events.transaction import Transaction
from fraudstream.storage.records import DecisionRecord

T = TypeVar("T")

#: Bound parameters per statement stay well under SQLite's (32766) and PostgreSQL's (65535) limits.
IN_CHUNK = 5000


def unique_by(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """``items`` without repeats of ``key``, first occurrence kept, order preserved."""
    seen: set[Hashable] = set()
    out: list[T] = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``, for ``IN (...)`` lists of any length."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def transaction_row(tx: Transaction, received_at: datetime, status: str) -> dict[str, Any]:
    """The ``transactions`` row for ``tx``; ``payload`` is the full transaction, JSON-ready."""
    return {
        "transaction_id": tx.transaction_id,
        "received_at": received_at,
        "timestamp": tx.timestamp,
        "customer_id": tx.customer_id,
        "merchant_id": tx.merchant_id,
        "device_id": tx.device_id,
        "ip_address": tx.ip_address,
        "amount": tx.amount,
        "payload": tx.model_dump(mode="json"),
        "status": status,
    }


def decision_row(record: DecisionRecord) -> dict[str, Any]:
    """The ``decisions`` row for ``record``; NaN and infinite numbers become ``null`` (JSON has neither)."""
    return {
        "transaction_id": record.transaction_id,
        "decided_at": record.decided_at,
        "timestamp": record.timestamp,
        "customer_id": record.customer_id,
        "amount": float(record.amount),
        "decision": record.decision,
        "probability": float(record.probability),
        "reasons": list(record.reasons),
        "rules": [str(rule) for rule in record.rules],
        "model_version": record.model_version,
        "features": record.features,  # NaN and infinity are written as null by the JSON encoder
        "latency_ms": {str(name): _finite(value) or 0.0 for name, value in record.latency_ms.items()},
    }


def decision_from_row(row: Mapping[Any, Any]) -> DecisionRecord:
    """The record stored in a ``decisions`` row."""
    return DecisionRecord(
        transaction_id=row["transaction_id"],
        customer_id=row["customer_id"],
        timestamp=row["timestamp"],
        amount=row["amount"],
        decision=row["decision"],
        probability=row["probability"],
        reasons=row["reasons"],
        rules=row["rules"],
        model_version=row["model_version"],
        features=row["features"],
        latency_ms=row["latency_ms"],
        decided_at=row["decided_at"],
    )


def encode_cursor(decided_at: datetime, transaction_id: str) -> str:
    """An opaque, URL-safe cursor for the position just after this decision (newest first)."""
    raw = json.dumps([decided_at.isoformat(), transaction_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position in ``cursor``; ``ValueError("invalid cursor")`` for anything not made by us."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, transaction_id = json.loads(raw)
        decided_at = datetime.fromisoformat(when)
    except (binascii.Error, UnicodeError, TypeError, ValueError) as exc:
        raise ValueError("invalid cursor") from exc
    if decided_at.tzinfo is None or not isinstance(transaction_id, str):
        raise ValueError("invalid cursor")
    return decided_at, transaction_id
