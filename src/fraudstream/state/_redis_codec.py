"""How events and labels are written to and read back from Redis, a whole batch at a time.

An event is one string: its four floats as 64 hex digits of little-endian float64 (exact, NaN included,
and decoded for a whole history by one ``bytes.fromhex``), then its six identifiers, all separated by
``\\x1f``, behind its arrival number and time; a missing identifier is ``\\x18``. A label is its arrival
number and transaction time, then that time and its own as 32 hex digits. A batch crosses to Redis as a
few joined strings rather than thousands of arguments, since packing each argument costs more than the
script that reads them.
"""

from __future__ import annotations

import sys

import numpy as np

from fraudstream.events.batch import TransactionBatch
from fraudstream.state.base import EVENT_FIELDS, FLOAT_FIELDS, StateError

FIELD = "\x1f"
RECORD = "\x1e"
NONE = "\x18"
FLOATS = tuple(f for f in EVENT_FIELDS if f in FLOAT_FIELDS)
IDS = tuple(f for f in EVENT_FIELDS if f not in FLOAT_FIELDS)
STRIDE = 2 + len(IDS)
"""Fields per stored member: arrival number, float block, identifiers."""


def strings(values: np.ndarray) -> list[str]:
    """Identifiers as strings, ``None`` as the :data:`NONE` marker."""
    return [NONE if v is None else v for v in values.tolist()]


def joined(values: list[str], sep: str = FIELD) -> str:
    """``values`` joined by ``sep``, refusing identifiers that contain a separator."""
    out = sep.join(values)
    if out.count(sep) != len(values) - 1:
        raise StateError("identifiers must not contain the control characters \\x1e or \\x1f")
    return out


def hex_floats(*columns: np.ndarray) -> str:
    """Row-major little-endian float64 of the columns, as hex: 16 digits per value."""
    return np.column_stack(columns).astype("<f8").tobytes().hex()


def encode_events(batch: TransactionBatch) -> str:
    """Every row's payload, joined by :data:`RECORD`."""
    n = len(batch)
    width = 16 * len(FLOATS)
    block = hex_floats(*(getattr(batch, f) for f in FLOATS))
    hexes = [block[i : i + width] for i in range(0, width * n, width)]
    ids = [strings(getattr(batch, f)) for f in IDS]
    out = RECORD.join(map(FIELD.join, zip(hexes, *ids, strict=True)))
    if out.count(RECORD) != n - 1 or out.count(FIELD) != n * len(IDS):
        raise StateError("identifiers must not contain the control characters \\x1e or \\x1f")
    return out


def counts(raw: bytes) -> np.ndarray:
    return np.array([int(c) for c in raw.split(b",")] if raw else [], dtype=np.int64)


def decode_events(raw: bytes, n: int) -> dict[str, np.ndarray]:
    """Columns of ``n`` stored members joined by :data:`FIELD`; identifiers are interned, since a
    process keeps what it has read and the same few identifiers recur in thousands of events."""
    if n == 0:
        return {f: np.empty(0, dtype=np.float64 if f in FLOAT_FIELDS else object) for f in EVENT_FIELDS}
    flat = raw.decode().split(FIELD)
    floats = np.frombuffer(bytes.fromhex("".join(flat[1::STRIDE])), dtype="<f8").reshape(n, len(FLOATS))
    out = {f: floats[:, j].astype(np.float64) for j, f in enumerate(FLOATS)}
    for j, f in enumerate(IDS):
        col = np.array(list(map(sys.intern, flat[2 + j :: STRIDE])), dtype=object)
        col[col == NONE] = None
        out[f] = col
    return {f: out[f] for f in EVENT_FIELDS}


def decode_labels(raw: bytes, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival numbers, transaction times and label times of ``n`` stored label members."""
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
    flat = raw.decode().split(FIELD)
    seqs = np.array([int(head[:16]) for head in flat[0::2]], dtype=np.int64)
    pairs = np.frombuffer(bytes.fromhex("".join(flat[1::2])), dtype="<f8").reshape(n, 2)
    return seqs, pairs[:, 0].astype(np.float64), pairs[:, 1].astype(np.float64)
