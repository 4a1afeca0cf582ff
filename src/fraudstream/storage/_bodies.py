"""One id, one body: how a write finds the transactions it was given under an id stored with another body.

Every ``transactions`` row carries the hash of its canonical body (:func:`~.rows.body_hash`). A write
that meets a row it did not insert compares the hashes inside its own database transaction, so two
writers racing with the same id and different bodies cannot both win: the database lets one insert the
row, and the other sees it and refuses its body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from fraudstream.storage import bulk, tables
from fraudstream.storage.rows import stored_body_hash

_t = tables.transactions


def stored_hashes(conn: bulk.Conn, ids: Sequence[str]) -> dict[str, str | None]:
    """The body hash of each of ``ids`` stored in ``transactions``, read inside the caller's transaction;
    a row from before the hash was stored gets its payload's (``None`` if unreadable)."""
    found = bulk.stored_values(conn, _t, ("body_hash",), ids)
    legacy = [i for i, (stored,) in found.items() if stored is None]
    payloads = bulk.stored_values(conn, _t, ("payload",), legacy) if legacy else {}
    return {i: stored_body_hash(stored, payloads.get(i, (None,))[0]) for i, (stored,) in found.items()}


def differing(hashes: Mapping[str, str], known: Mapping[str, str | None]) -> list[str]:
    """The ids of ``hashes`` that ``known`` holds with another hash (an unknown hash never differs)."""
    return [i for i, h in hashes.items() if known.get(i) not in (None, h)]


def hashes_of(rows: Iterable[tuple[object, ...]]) -> dict[str, str]:
    """``transaction_id → body_hash`` of :func:`~.rows.transaction_rows` rows."""
    return {str(row[0]): str(row[-1]) for row in rows}
