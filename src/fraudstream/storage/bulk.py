"""Bulk writes straight to the driver, inside the caller's transaction (SQLAlchemy's, or on SQLite the
driver connection's own).

SQLAlchemy processes every bound parameter of every row in Python (type decorators, JSON encoding,
result rows for RETURNING), which was half of a replay's time. Here the rows arrive as ready tuples,
JSON already text and timestamps already in the driver's form, and go to the driver in one call:
``executemany`` on SQLite, binary ``COPY`` on PostgreSQL, for one row as for a million.
Each function resolves the connection's :class:`~._dialect.Dialect` once and leaves the statements to
it: :mod:`._sqlite` and :mod:`._postgres` are the only places that know how each database spells an
idempotent bulk insert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table

from fraudstream.storage._dialect import Dialect
from fraudstream.storage._dialect import RowBuilder as RowBuilder
from fraudstream.storage._vendors import SQLITE, vendor


def timestamp_converter(dialect: str, *, memo: bool = False) -> Callable[[datetime], Any]:
    """How ``dialect``'s driver takes a datetime for a :class:`~.tables.UTCDateTime` column; with
    ``memo``, possibly one that converts each instant once (for a batch whose decisions and
    transactions carry the same event times)."""
    return vendor(dialect).timestamp_converter(memo)


#: The caller's SQLAlchemy connection, inside its transaction, or on SQLite the driver connection of
#: :meth:`~fraudstream.storage.database.Database.bulk_write`.
Conn = Connection | Any


def driver(conn: Conn) -> Any:
    """The DBAPI connection under ``conn``, for statements of the driver's own."""
    return conn.connection.driver_connection if isinstance(conn, Connection) else conn


def _vendor(conn: Conn) -> Dialect:
    # A bare driver connection is SQLite's (see Database.bulk_write).
    return vendor(conn.dialect.name) if isinstance(conn, Connection) else SQLITE


def insert_new(
    conn: Conn,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    expect_new: bool = False,
) -> set[Any]:
    """Insert the rows whose primary key (the first column) is not stored yet; the keys inserted.

    ``rows`` must not repeat a key. Exact under concurrent writers: SQLite writers are serialised by
    ``BEGIN IMMEDIATE``, and on PostgreSQL a conflict that appears meanwhile is resolved by
    ``ON CONFLICT DO NOTHING``. ``expect_new`` as for :func:`insert_new_lazy`.
    """
    keys, build = [row[0] for row in rows], lambda at: (rows[i] for i in at)
    return insert_new_lazy(conn, table, columns, keys, build, expect_new=expect_new)


def insert_new_lazy(
    conn: Conn,
    table: Table,
    columns: Sequence[str],
    keys: Sequence[Any],
    build: RowBuilder,
    *,
    expect_new: bool = False,
) -> set[Any]:
    """:func:`insert_new` for rows that ``build`` makes on demand, only for the keys not stored yet.

    ``expect_new`` says the caller expects the keys not to be stored (a decision is looked up before
    its transaction is scored): PostgreSQL then copies the rows without looking them up first, and
    only a conflict sends the batch the slower way. The result is the same either way.
    """
    if not keys:
        return set()
    return _vendor(conn).insert_new(driver(conn), table, columns, keys, build, expect_new=expect_new)


def append(conn: Conn, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert rows that cannot conflict (surrogate keys from the database), in order."""
    if rows:
        _vendor(conn).append(driver(conn), table, columns, rows)


def set_column(conn: Conn, table: Table, column: str, value: Any, keys: Sequence[Any]) -> int:
    """Set ``column`` to ``value`` on the rows with these primary keys (the first primary-key column),
    in one statement however many; how many rows changed (rows already at ``value`` are not touched).
    """
    if not keys:
        return 0
    return _vendor(conn).set_column(driver(conn), table, column, value, keys)


def stored_values(
    conn: Conn, table: Table, columns: Sequence[str], keys: Sequence[Any]
) -> dict[Any, tuple[Any, ...]]:
    """``columns`` of the stored rows with these primary keys (the table's first primary-key column), by
    key, read inside the caller's transaction (on PostgreSQL, JSON comes back parsed; on SQLite, as text)."""
    if not keys:
        return {}
    return _vendor(conn).stored_values(driver(conn), table, columns, keys)
