"""What differs between SQLite and PostgreSQL, as one object per database: :mod:`._sqlite`, :mod:`._postgres`.

The repositories drive both through the same SQLAlchemy Core statements and ask their
:attr:`~.database.Database.vendor` for the few pieces that differ, so each database's peculiarities
are read in one place. (The bulk writes of :mod:`.bulk` and :mod:`.columns` go through the drivers
themselves and keep their own per-driver paths.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import URL, ColumnElement, Connection, Engine, Select

#: ``(dumps, loads)`` for the engine's JSON columns.
JsonCodec = tuple[Callable[[Any], str], Callable[[str | bytes], Any]]


class Dialect:
    """The operations SQLite and PostgreSQL do differently; subclassed once for each."""

    #: SQLAlchemy's name for it, also :attr:`~.database.Database.dialect`.
    name: str
    #: How messages name it.
    label: str
    #: SQL answering the server's version.
    version_query: str
    #: The ``INSERT`` construct with ``ON CONFLICT`` for this database.
    insert: Callable[..., Any]
    #: Text after ``FROM decisions`` naming the partial index of FLAGs (see :mod:`.alerting`).
    flag_index_hint: str = ""

    def engine(self, url: URL, pool_size: int, max_overflow: int, json: JsonCodec) -> Engine:
        """A new engine for ``url``; connects nothing yet."""
        raise NotImplementedError

    def hint(self, reason: str, url: URL) -> str:
        """What to check when the database is unreachable for ``reason``."""
        raise NotImplementedError

    def begin_write(self, conn: Connection) -> None:
        """Before a writing transaction begins on ``conn``."""

    def lock_labels(self, conn: Connection) -> None:
        """Inside a writing transaction: serialise label writes, which read the current verdict first."""

    def claimable(self, query: Select[Any]) -> Select[Any]:
        """``query`` over the queue, made safe for consumers claiming at once."""
        return query

    def json_texts(self, values: Any) -> Any:
        """A table-valued function over a JSON array of strings, each as its ``value``."""
        raise NotImplementedError

    def json_fields(self, values: Any, *names: str) -> tuple[Any, list[ColumnElement[Any]]]:
        """A table-valued function over a JSON array of objects, and each object's ``names`` as text."""
        raise NotImplementedError

    def time_and_score_bins(self, decided_at: Any, scaled: Any, bucket: int) -> tuple[Any, Any]:
        """SQL for a decision's time bucket (epoch seconds // ``bucket``) and score bin (``scaled``,
        floored)."""
        raise NotImplementedError
