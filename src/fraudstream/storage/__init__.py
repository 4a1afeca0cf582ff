"""Storage: one SQLAlchemy store for SQLite (the embedded default) and PostgreSQL, with migrations.

Open it with :func:`open_store`, call :meth:`Store.migrate` once at start-up, then pass it down.
"""

from __future__ import annotations

from fraudstream.storage.database import SUPPORTED_SCHEMES, normalize_url
from fraudstream.storage.errors import BodyConflictError, NotFoundError, StorageError
from fraudstream.storage.outbox import QueuedMessage
from fraudstream.storage.store import FLAGGED, Store


def open_store(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Store:
    """A :class:`Store` for ``sqlite:///path`` or ``postgresql://...`` (driven by psycopg 3).

    ``pool_size`` connections are kept open, and up to ``max_overflow`` more are opened under load.
    Anything else raises :class:`StorageError` naming the supported schemes. Nothing connects yet.
    """
    return Store(normalize_url(url), pool_size=pool_size, max_overflow=max_overflow)


__all__ = [
    "FLAGGED",
    "SUPPORTED_SCHEMES",
    "BodyConflictError",
    "NotFoundError",
    "QueuedMessage",
    "StorageError",
    "Store",
    "open_store",
]
