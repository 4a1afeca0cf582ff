"""What the worker reads and writes: a batch of payloads validated in one call, the reasons a message
is not a transaction, and the messages it publishes for other systems."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError

from fraudstream.alerts.detect import may_alert
from fraudstream.events.transaction import Transaction
from fraudstream.storage.records import DecisionColumns, DecisionRecord

PAYLOADS = TypeAdapter(list[Annotated[Transaction | Any, Field(union_mode="left_to_right")]])
"""Validates a batch of payloads in one call, a valid one becoming a :class:`Transaction` and an invalid
one left as it was, so that one bad message costs no second pass over the batch."""


def describe_invalid(error: ValidationError, most: int = 5) -> str:
    """``field.path: reason`` for the first few problems, so a dead letter says what to fix."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in error.errors()[:most]]
    more = error.error_count() - most
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def transaction_message(tx: Transaction, partition_key: str) -> tuple[str | None, dict[str, Any]]:
    """A transaction as the API and a redrive publish it: keyed by its ``partition_key`` field (so Kafka
    keeps one customer's transactions in order), the payload its JSON form."""
    key = getattr(tx, partition_key, None)
    return None if key is None else str(key), tx.model_dump(mode="json")


def decision_message(record: DecisionRecord) -> dict[str, Any]:
    """What the results topic carries per decision: the outcome and why, not the feature vector.

    The timestamp stays a ``datetime``: the server brokers' JSON encoder writes it in ISO 8601, as
    ``isoformat`` would, in a third of the time that ``isoformat`` takes on an aware datetime.
    """
    return {
        "transaction_id": record.transaction_id,
        "decision": record.decision,
        "probability": record.probability,
        "reasons": record.reasons,
        "rules": record.rules,
        "model_version": record.model_version,
        "timestamp": record.timestamp,
    }


def decision_messages(columns: DecisionColumns) -> list[dict[str, Any]]:
    """:func:`decision_message` of every row, straight from the scored batch's columns."""
    fromtimestamp = datetime.fromtimestamp
    version = columns.model_version
    return [
        {
            "transaction_id": tx_id,
            "decision": str(decision),
            "probability": probability,
            "reasons": reasons,
            "rules": rules,
            "model_version": version,
            "timestamp": fromtimestamp(timestamp, UTC),
        }
        for tx_id, decision, probability, reasons, rules, timestamp in zip(
            columns.transaction_id.tolist(),
            np.asarray(columns.decision, dtype=object).tolist(),
            np.asarray(columns.probability, dtype=np.float64).tolist(),
            columns.reasons,
            columns.rules,
            np.asarray(columns.timestamp, dtype=np.float64).tolist(),
            strict=True,
        )
    ]


def alerting_rows(columns: DecisionColumns) -> list[int]:
    """The rows that can raise an alert: every FLAG and BLOCK, and every decision a rule fired on."""
    decisions = np.asarray(columns.decision, dtype=object).tolist()
    pairs = zip(decisions, columns.rules, strict=True)
    return [k for k, (decision, rules) in enumerate(pairs) if may_alert(decision, rules)]


def payload_text(payload: Any) -> str:
    """A message's payload as text for its dead letter: itself, JSON, or at worst its ``repr``."""
    if isinstance(payload, str):
        return payload
    try:
        return json.dumps(payload, default=str)
    except (TypeError, ValueError):
        return repr(payload)
