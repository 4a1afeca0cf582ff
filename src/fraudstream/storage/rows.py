"""Conversions between the app's objects and table rows, and the opaque pagination cursor."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import chain
from typing import Any, TypeVar

import numpy as np
import orjson

from fraudstream.events.decision import DecisionRecord, FeatureVector
from fraudstream.events.explanation import Explainer, Explanation
from fraudstream.events.transaction import Transaction
from fraudstream.storage.database import dumps, loads

T = TypeVar("T")

#: Bound parameters per statement stay well under SQLite's (32766) and PostgreSQL's (65535) limits.
IN_CHUNK = 5000


#: Column order of the tuples made by :func:`transaction_rows` and :func:`decision_rows`.
TRANSACTION_COLUMNS = (
    "transaction_id",
    "received_at",
    "timestamp",
    "customer_id",
    "merchant_id",
    "device_id",
    "ip_address",
    "amount",
    "payload",
    "status",
    "body_hash",
)
DECISION_COLUMNS = (
    "transaction_id",
    "decided_at",
    "timestamp",
    "customer_id",
    "amount",
    "decision",
    "probability",
    "reasons",
    "rules",
    "model_version",
    "feature_set",
    "feature_values",
    "latency_ms",
    "shadow_version",
    "shadow_probability",
    "shadow_decision",
    "rules_version",
    "aggregates",
    "explainer",
    "explanation",
)


def unique_by(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """``items`` without repeats of ``key``, first occurrence kept, order preserved."""
    items = list(items)
    if len(set(map(key, items))) == len(items):  # the usual case, at C speed with an attrgetter
        return items
    seen: set[Hashable] = set()
    out: list[T] = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def dicts(rows: Iterable[Mapping[Any, Any]]) -> list[dict[str, Any]]:
    """Result rows (``.mappings()``) as plain dictionaries, for answers that outlive the connection."""
    return [dict(row) for row in rows]


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``, for ``IN (...)`` lists of any length."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def transaction_rows(
    transactions: Sequence[Transaction], received_at: Any, status: str, ts: Callable[[datetime], Any]
) -> list[tuple[Any, ...]]:
    """``transactions`` rows in :data:`TRANSACTION_COLUMNS` order; ``payload`` is the transaction's JSON,
    ``body_hash`` its :func:`body_hash`.

    ``ts`` puts a datetime in the driver's form (see :mod:`~fraudstream.storage.bulk`). The JSON is
    ``model_dump_json``'s, byte for byte (see :func:`payload_json`).
    """
    return [
        (
            tx.transaction_id,
            received_at,
            ts(tx.timestamp),
            tx.customer_id,
            tx.merchant_id,
            tx.device_id,
            tx.ip_address,
            tx.amount,
            payload_json(tx),
            status,
            body_hash(tx),
        )
        for tx in transactions
    ]


_CANONICAL = orjson.OPT_UTC_Z | orjson.OPT_SORT_KEYS


def body_hash(tx: Transaction) -> str:
    """A digest of the transaction's canonical body, the same for every body that validates to the same
    transaction: every field (none left out), keys sorted at every depth (``extra``'s order is the
    client's), times in UTC, numbers as the model holds them. An id names one body: this is what tells a
    retry (same digest) from a different transaction sent under a known id. 128 bits of SHA-256."""
    try:
        data = orjson.dumps(tx.__dict__, option=_CANONICAL)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits in ``extra``: the standard library's JSON
        data = json.dumps(tx.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:32]


def stored_body_hash(stored: str | None, payload: Any) -> str | None:
    """The body hash of a stored ``transactions`` row: its ``body_hash``, or for a row stored before that
    column existed the hash of its payload (JSON text or parsed); ``None`` if the payload is unreadable."""
    if stored is not None:
        return stored
    try:
        return body_hash(
            Transaction.model_validate(loads(payload) if isinstance(payload, str | bytes) else payload)
        )
    except ValueError:  # pydantic's ValidationError and JSON's decoding errors are ValueErrors
        return None


_to_json = Transaction.__pydantic_serializer__.to_json


def payload_json(tx: Transaction) -> str:
    """``tx.model_dump_json()``: orjson writes a validated transaction's fields the same way (UTC times
    with ``Z``, the shortest float that reads back, enums as their values) in less than half the time
    of pydantic's serializer; what orjson refuses (an integer beyond 64 bits in ``extra``) goes to
    pydantic's."""
    try:
        return orjson.dumps(tx.__dict__, option=orjson.OPT_UTC_Z).decode()
    except orjson.JSONEncodeError:
        return _to_json(tx).decode()


def feature_set_id(names: Sequence[str]) -> str:
    """The id of a list of feature names: a digest of the list, the same in every process.

    Remembered for the few lists a process sees (one per model), since the score API asks for it on
    every request."""
    return _feature_set_id(tuple(names))


@lru_cache(maxsize=64)
def _feature_set_id(names: tuple[str, ...]) -> str:
    return hashlib.sha256(orjson.dumps(list(names))).hexdigest()[:32]


def pack_features(
    vectors: Sequence[Mapping[str, Any]],
) -> tuple[list[str], list[bytes], dict[str, list[str]]]:
    """Each vector's feature-set id and its values as little-endian float64 (``None`` → NaN), and the
    names of every set seen.

    The scorer's vectors of one batch share their names and are numpy rows already, each packed as it
    is; other vectors with the same names in the same order are converted in one numpy call (comparing
    a vector's key tuple with the previous one's is cheap, as they share the name objects).
    """
    lazy = [v for v in vectors if isinstance(v, FeatureVector)]
    if lazy and len(lazy) == len(vectors) and all(v.names is lazy[0].names for v in lazy):
        set_id = feature_set_id(lazy[0].names)  # one scoring batch: every row has the same names
        blobs = [np.asarray(v.row, dtype="<f8").tobytes() for v in lazy]
        return [set_id] * len(lazy), blobs, {set_id: list(lazy[0].names)}
    groups: dict[tuple[str, ...], list[int]] = {}
    last: tuple[str, ...] | None = None
    members: list[int] = []
    for i, vector in enumerate(vectors):
        keys = tuple(vector)
        if keys != last:
            last = keys
            members = groups.setdefault(keys, [])
        members.append(i)
    set_ids: list[str] = [""] * len(vectors)
    packed: list[bytes] = [b""] * len(vectors)
    names: dict[str, list[str]] = {}
    for keys, rows in groups.items():
        set_id = feature_set_id(keys)
        names[set_id] = list(keys)
        width = len(keys) * 8
        flat = np.fromiter(
            chain.from_iterable(vectors[i].values() for i in rows), dtype=object, count=len(rows) * len(keys)
        )
        buffer = flat.astype("<f8").tobytes()
        pieces = [buffer[k : k + width] for k in range(0, len(buffer), width)] if width else [b""] * len(rows)
        if len(groups) == 1:
            return [set_id] * len(rows), pieces, names
        for i, piece in zip(rows, pieces, strict=True):
            set_ids[i] = set_id
            packed[i] = piece
    return set_ids, packed, names


def unpack_features(names: Sequence[str], packed: bytes) -> dict[str, float | None]:
    """The vector stored as ``packed`` under ``names``; NaN and infinity come back as ``None``."""
    values = np.frombuffer(packed, dtype="<f8")
    out: list[float | None] = values.tolist()
    if not np.isfinite(values).all():
        out = [_finite(v) for v in out]
    return dict(zip(names, out, strict=True))


def explanation_blobs(columns: np.ndarray, contributions: np.ndarray) -> list[bytes]:
    """Each row's picked explanation as the ``explanation`` column stores it: its columns as
    little-endian int32 (-1 for none), then its contributions as little-endian float64. One numpy
    copy for the batch, a slice per row: nothing is formatted row by row."""
    n = columns.shape[0]
    if n == 0:
        return []
    packed = np.concatenate(
        [
            np.ascontiguousarray(columns, dtype="<i4").view(np.uint8).reshape(n, -1),
            np.ascontiguousarray(contributions, dtype="<f8").view(np.uint8).reshape(n, -1),
        ],
        axis=1,
    )
    width, blob = packed.shape[1], packed.tobytes()
    return [blob[i * width : (i + 1) * width] for i in range(n)]


def unpack_explanation(packed: bytes) -> tuple[list[int], list[float]]:
    """The columns and contributions stored by :func:`explanation_blobs` for one row."""
    slots = len(packed) // 12
    columns = np.frombuffer(packed, dtype="<i4", count=slots)
    contributions = np.frombuffer(packed, dtype="<f8", count=slots, offset=4 * slots)
    return columns.tolist(), contributions.tolist()


def latency_text(latency_ms: Mapping[str, float]) -> str:
    """The ``latency_ms`` column: JSON, with NaN and infinite latencies as 0."""
    return dumps({str(k): _finite(v) or 0.0 for k, v in latency_ms.items()})


def stored_total(latency_ms: Mapping[str, float]) -> float | None:
    """The total latency as :func:`latency_text` stores it (None when there is none), for the counts."""
    return _finite(latency_ms["total"]) or 0.0 if "total" in latency_ms else None


def decision_rows(
    records: Sequence[DecisionRecord], set_ids: list[str], packed: list[bytes], ts: Callable[[datetime], Any]
) -> list[tuple[Any, ...]]:
    """``decisions`` rows in :data:`DECISION_COLUMNS` order, JSON already text.

    NaN and infinite latencies become 0; elsewhere they are written as ``null`` (JSON has neither).
    Equal latency dicts (one per batch, usually) and equal decision times are encoded once.
    """
    latencies: dict[Any, str] = {}
    times: dict[datetime, Any] = {}
    out = []
    for r, set_id, values in zip(records, set_ids, packed, strict=True):
        explained = r.explanation
        explanation = None
        if explained is not None:
            picked = np.array([explained.columns]), np.array([explained.contributions], dtype=np.float64)
            explanation = explanation_blobs(*picked)[0]
        items = tuple(r.latency_ms.items())
        latency = latencies.get(items)
        if latency is None:
            latency = latencies[items] = latency_text(r.latency_ms)
        decided_at = times.get(r.decided_at)
        if decided_at is None:
            decided_at = times[r.decided_at] = ts(r.decided_at)
        out.append(
            (
                r.transaction_id,
                decided_at,
                ts(r.timestamp),
                r.customer_id,
                float(r.amount),
                r.decision,
                float(r.probability),
                dumps(r.reasons),
                dumps(r.rules) if r.rules else "[]",
                r.model_version,
                set_id,
                values,
                latency,
                r.shadow_version,
                None if r.shadow_probability is None else float(r.shadow_probability),
                r.shadow_decision,
                r.rules_version,
                None if r.aggregates is None else dumps(dict(r.aggregates)),
                None if explained is None else explained.explainer.id,
                explanation,
            )
        )
    return out


def decision_from_row(
    row: Mapping[Any, Any], names: Sequence[str], explainers: Mapping[str, Explainer] | None = None
) -> DecisionRecord:
    """The record stored in a ``decisions`` row whose feature set has ``names``, its explanation read
    with its explainer among ``explainers`` (by id)."""
    record = DecisionRecord(
        transaction_id=row["transaction_id"],
        customer_id=row["customer_id"],
        timestamp=row["timestamp"],
        amount=row["amount"],
        decision=row["decision"],
        probability=row["probability"],
        reasons=row["reasons"],
        rules=row["rules"],
        model_version=row["model_version"],
        features=unpack_features(names, row["feature_values"]),
        latency_ms=row["latency_ms"],
        decided_at=row["decided_at"],
        shadow_version=row.get("shadow_version"),
        shadow_probability=row.get("shadow_probability"),
        shadow_decision=row.get("shadow_decision"),
        rules_version=row.get("rules_version"),
        aggregates=row.get("aggregates"),
    )
    explainer = (explainers or {}).get(row.get("explainer") or "")
    packed = row.get("explanation")
    if explainer is not None and packed is not None:
        columns, contributions = unpack_explanation(bytes(packed))
        record.explanation = Explanation(explainer, columns, contributions, record.features)
    return record


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
