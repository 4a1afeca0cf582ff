"""How a batch crosses to the Redis log and back: a few columns as bytes, never a value at a time.

Floats travel as little-endian float64, column after column (exact, NaN included); identifiers as text
joined by ``\\x1f``, column after column, a missing one as ``\\x18``. Packing thousands of arguments
costs more than the script that reads them, so a batch is a handful of strings.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import numpy as np

from fraudstream.state.base import CODED_FIELDS, EVENT_FIELDS, FLOAT_FIELDS, StateError

FIELD = "\x1f"
NONE = "\x18"
FLOATS = tuple(f for f in EVENT_FIELDS if f in FLOAT_FIELDS)


def strings(values: np.ndarray) -> list[str]:
    """Identifiers as strings, ``None`` as the :data:`NONE` marker."""
    return [NONE if v is None else v for v in values.tolist()]


def joined(values: list[str], sep: str = FIELD) -> str:
    """``values`` joined by ``sep``, refusing identifiers that contain a separator."""
    out = sep.join(values)
    if out.count(sep) != len(values) - 1:
        raise StateError("identifiers must not contain the control character \\x1f")
    return out


def exact(values: np.ndarray) -> str:
    """Floats as the shortest strings that read back exactly (Lua's ``tonumber`` included)."""
    return FIELD.join(map(repr, np.asarray(values, dtype=np.float64).tolist()))


def encode_events(columns: Mapping[str, np.ndarray]) -> tuple[bytes, str]:
    """The float columns as bytes and the identifier columns but ``transaction_id`` (which travels on its
    own, for the script to read) as text."""
    floats = np.stack([np.asarray(columns[f], dtype="<f8") for f in FLOATS]).tobytes()
    text = joined([s for f in CODED_FIELDS for s in strings(columns[f])])
    return floats, text


def entity_map(entities: Mapping[str, str]) -> str:
    """``entity=column`` pairs, as a log entry names which columns key which entity."""
    return FIELD.join(f"{name}={column}" for name, column in entities.items())


def decode_entity_map(raw: bytes) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in raw.decode().split(FIELD))


def decode_events(ids: bytes, floats: bytes, text: bytes) -> dict[str, np.ndarray]:
    """The columns of a log entry's events. Identifiers are interned: a process keeps every event of
    its replica, and the same few customers and merchants recur in thousands of them."""
    tx = ids.decode().split(FIELD)
    n = len(tx)
    out: dict[str, np.ndarray] = {"transaction_id": np.array(tx, dtype=object)}
    block = np.frombuffer(floats, dtype="<f8").reshape(len(FLOATS), n)
    for j, f in enumerate(FLOATS):
        out[f] = block[j].astype(np.float64)
    parts = text.decode().split(FIELD)
    for j, f in enumerate(CODED_FIELDS):
        col = np.array(list(map(sys.intern, parts[j * n : (j + 1) * n])), dtype=object)
        col[col == NONE] = None
        out[f] = col
    return {f: out[f] for f in EVENT_FIELDS}


def decode_labels(ids: bytes, times: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The transaction ids and label times of a log entry's new fraud labels."""
    return (
        np.array(ids.decode().split(FIELD), dtype=object),
        np.array([float(t) for t in times.decode().split(FIELD)], dtype=np.float64),
    )
