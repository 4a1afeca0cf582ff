"""What the worker reads and writes: a batch of payloads validated in one call, the reasons a message
is not a transaction, and the messages it publishes for other systems."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError

from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.events.transaction import Transaction

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
    routed = columns.versions()
    versions = routed[0] if routed is not None else [columns.model_version] * len(columns)
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
        for tx_id, version, decision, probability, reasons, rules, timestamp in zip(
            columns.transaction_id.tolist(),
            versions,
            np.asarray(columns.decision, dtype=object).tolist(),
            np.asarray(columns.probability, dtype=np.float64).tolist(),
            columns.reasons,
            columns.rules,
            np.asarray(columns.timestamp, dtype=np.float64).tolist(),
            strict=True,
        )
    ]


def payload_text(payload: Any) -> str:
    """A message's payload as text for its dead letter: itself, its JSON, or at worst a description.

    Never raises, whatever a producer wrote on the broker: a dead letter that cannot be written would
    take the worker down, and every worker that took the message over after it. JSON nested deeper
    than the interpreter's stack allows is written without recursion, so it is kept as it came.
    """
    if isinstance(payload, str):
        return payload
    for write in (_json_text, _flat_json, repr):
        try:
            return write(payload)
        except Exception:  # too deep, circular, or an object that cannot be written: the next way
            continue
    return f"<a {type(payload).__name__} that cannot be written out>"


def transaction_text(tx: Transaction) -> str:
    """A valid transaction's JSON for its dead letter; like :func:`payload_text`, never raises."""
    try:
        return tx.model_dump_json()
    except Exception:
        return payload_text(tx.model_dump())


def _json_text(payload: Any) -> str:
    return json.dumps(payload, default=str)


_END = object()


def _flat_json(value: Any) -> str:
    """``value`` as JSON with an explicit stack instead of recursion (keys written as text, anything that
    is not JSON by :func:`str`); raises ``ValueError`` on a container that holds itself."""
    out: list[str] = []
    stack: list[tuple[Iterator[tuple[Any, Any]], bool, int]] = []  # items, is a dict, container id
    path: set[int] = set()
    item: Any = value
    while True:
        if isinstance(item, dict | list | tuple):
            if id(item) in path:
                raise ValueError("a container holds itself")
            path.add(id(item))
            is_dict = isinstance(item, dict)
            entries = iter(item.items()) if isinstance(item, dict) else enumerate(item)
            out.append("{" if is_dict else "[")
            stack.append((entries, is_dict, id(item)))
        else:
            out.append(json.dumps(item, default=str))
        while stack:
            items, is_dict, ident = stack[-1]
            entry: Any = next(items, _END)
            if entry is _END:
                out.append("}" if is_dict else "]")
                path.discard(ident)
                stack.pop()
                continue
            if out[-1] not in ("{", "["):
                out.append(",")
            key, item = entry
            if is_dict:
                out.append(json.dumps(str(key)) + ":")
            break
        else:
            return "".join(out)
