"""What differs between SQLite and PostgreSQL, as one object per database: :mod:`._sqlite`, :mod:`._postgres`.

The repositories drive both through the same SQLAlchemy Core statements and ask their
:attr:`~.database.Database.vendor` for the few pieces that differ, so each database's peculiarities
are read in one place. That includes the bulk writes of :mod:`.bulk`, which go through the drivers
themselves (sqlite3's ``executemany``, psycopg's ``COPY``): :mod:`.bulk` resolves the object once per
call and each database's module holds its own statements. Code given only the name finds the object
with :func:`._vendors.vendor`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import URL, ColumnElement, Connection, Engine, Select, Table

#: ``(dumps, loads)`` for the engine's JSON columns.
JsonCodec = tuple[Callable[[Any], str], Callable[[str | bytes], Any]]

#: Builds the rows at these positions of the batch, in that order (lazily, so PostgreSQL can ingest
#: the first rows while the rest are still being built).
RowBuilder = Callable[[Sequence[int]], Iterable[tuple[Any, ...]]]


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
    #: The driver's placeholder for a bound parameter in SQL of its own.
    param: str
    #: A datetime as the driver binds it to a :class:`~.tables.UTCDateTime` column; naive input is UTC.
    timestamp: Callable[[datetime], Any]

    def engine(self, url: URL, pool_size: int, max_overflow: int, json: JsonCodec) -> Engine:
        """A new engine for ``url``; connects nothing yet."""
        raise NotImplementedError

    def hint(self, reason: str, url: URL) -> str:
        """What to check when the database is unreachable for ``reason``."""
        raise NotImplementedError

    def begin_write(self, conn: Connection) -> None:
        """Before a writing transaction begins on ``conn``."""

    def lock_migrations(self, conn: Connection) -> None:
        """Inside the transaction of a migration: serialise processes starting at once."""

    def lock_labels(self, conn: Connection) -> None:
        """Inside a writing transaction: serialise label writes, which read the current verdict first."""

    def lock_cases(self, conn: Connection) -> None:
        """Inside a writing transaction: serialise grouping decisions into cases and changing them."""

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

    def greatest(self, a: str, b: str) -> str:
        """SQL for the larger of the SQL values ``a`` and ``b``, ignoring a NULL one."""
        raise NotImplementedError

    # Bulk writes, for :mod:`.bulk`: ``driver`` is the DBAPI connection, inside the caller's
    # transaction, and the rows are tuples in the driver's form (see :attr:`timestamp`).

    def timestamp_converter(self, memo: bool) -> Callable[[datetime], Any]:
        """:attr:`timestamp`, or with ``memo`` one that may convert each instant once (for a batch whose
        decisions and transactions carry the same event times)."""
        return self.timestamp

    def timestamps(self, seconds: np.ndarray) -> list[Any]:
        """:attr:`timestamp` of every epoch second in ``seconds``, in one go."""
        raise NotImplementedError

    def insert_new(
        self,
        driver: Any,
        table: Table,
        columns: Sequence[str],
        keys: Sequence[Any],
        build: RowBuilder,
        *,
        expect_new: bool,
    ) -> set[Any]:
        """The rows of the non-empty ``keys`` (of the first column) that are not stored yet, inserted;
        their keys. See :func:`.bulk.insert_new_lazy`."""
        raise NotImplementedError

    def append(
        self, driver: Any, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """Insert ``rows`` that cannot conflict, in order."""
        raise NotImplementedError

    def set_column(self, driver: Any, table: Table, column: str, value: Any, keys: Sequence[Any]) -> int:
        """Set ``column`` to ``value`` where the first primary-key column is in ``keys`` and the column
        differs; how many rows changed."""
        raise NotImplementedError

    def stored_values(
        self, driver: Any, table: Table, columns: Sequence[str], keys: Sequence[Any]
    ) -> dict[Any, tuple[Any, ...]]:
        """``columns`` of the stored rows whose first primary-key column is in ``keys``, by key."""
        raise NotImplementedError
