"""How a batch crosses to the Redis log and back: a few columns as bytes, never a value at a time.

Floats travel as little-endian float64, column after column (exact, NaN included); identifiers as text
joined by ``\\x1f``, column after column, a missing one as ``\\x18``. Packing thousands of arguments
costs more than the script that reads them, so a batch is a handful of strings.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import numpy as np

from fraudstream.state.base import DEFAULT_SCHEMA, EventSchema, StateError

FIELD = "\x1f"
NONE = "\x18"
PART = "\x1e"
"""Separates an entry's entity map from the schema it was written with."""


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


def encode_events(columns: Mapping[str, np.ndarray], schema: EventSchema) -> tuple[bytes, str]:
    """The float columns as bytes (timestamps first, which the script reads) and the identifier
    columns as text; ``transaction_id`` travels on its own, for the script to read."""
    floats = np.stack([np.asarray(columns[f], dtype="<f8") for f in schema.floats]).tobytes()
    text = joined([s for f in schema.ids for s in strings(columns[f])]) if schema.ids else ""
    return floats, text


def entity_map(entities: Mapping[str, str], schema: EventSchema) -> str:
    """``entity=column`` pairs, as a log entry names which columns key which entity, then the names
    of the float and identifier columns it carries."""
    pairs = FIELD.join(f"{name}={column}" for name, column in entities.items())
    return PART.join((pairs, FIELD.join(schema.floats), FIELD.join(schema.ids)))


def decode_entity_map(raw: bytes) -> tuple[dict[str, str], EventSchema]:
    """An entry's entity map and the schema it was written with (the default for older entries)."""
    parts = raw.decode().split(PART)
    entities = dict(pair.split("=", 1) for pair in parts[0].split(FIELD) if pair)
    if len(parts) < 3:
        return entities, DEFAULT_SCHEMA
    ids = tuple(parts[2].split(FIELD)) if parts[2] else ()
    return entities, EventSchema(floats=tuple(parts[1].split(FIELD)), ids=ids)


def decode_events(
    ids: bytes, floats: bytes, text: bytes, written: EventSchema, wanted: EventSchema
) -> dict[str, np.ndarray]:
    """The columns of ``wanted`` from a log entry written with the schema ``written``: a column the
    writer did not carry is missing (NaN, ``None``). Identifiers are interned: a process keeps every
    event of its replica, and the same few customers and merchants recur in thousands of them."""
    tx = ids.decode().split(FIELD)
    n = len(tx)
    out: dict[str, np.ndarray] = {"transaction_id": np.array(tx, dtype=object)}
    block = np.frombuffer(floats, dtype="<f8").reshape(len(written.floats), n)
    for j, f in enumerate(written.floats):
        if f in wanted.floats:
            out[f] = block[j].astype(np.float64)
    parts = text.decode().split(FIELD) if written.ids else []
    for j, f in enumerate(written.ids):
        if f in wanted.ids:
            col = np.array(list(map(sys.intern, parts[j * n : (j + 1) * n])), dtype=object)
            col[col == NONE] = None
            out[f] = col
    for f in wanted.floats:
        if f not in out:
            out[f] = np.full(n, np.nan)
    for f in wanted.ids:
        if f not in out:
            out[f] = np.full(n, None, dtype=object)
    return {f: out[f] for f in wanted.fields}


def decode_labels(ids: bytes, times: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The transaction ids and label times of a log entry's new fraud labels."""
    return (
        np.array(ids.decode().split(FIELD), dtype=object),
        np.array([float(t) for t in times.decode().split(FIELD)], dtype=np.float64),
    )
