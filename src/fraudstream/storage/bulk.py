"""Bulk writes straight to the driver, inside the caller's transaction (SQLAlchemy's, or on SQLite the
driver connection's own).

SQLAlchemy processes every bound parameter of every row in Python (type decorators, JSON encoding,
result rows for RETURNING), which was half of a replay's time. Here the rows arrive as ready tuples,
JSON already text and timestamps already in the driver's form, and go to the driver in one call:
``executemany`` on SQLite (one ``execute`` per row for a few rows), binary ``COPY`` on PostgreSQL.
The statements are the only place that knows how each database spells an idempotent bulk insert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection, Table
from sqlalchemy.types import JSON, BigInteger, Boolean, Float, Integer, LargeBinary, String

from fraudstream.storage.rows import chunks
from fraudstream.storage.tables import UTCDateTime

#: Up to this many rows on SQLite, one ``INSERT .. ON CONFLICT DO NOTHING`` per row, whose change count
#: says whether it went in, beats looking up the known keys first and then inserting with executemany.
SQLITE_ROW_BY_ROW = 16

#: Below this many rows on PostgreSQL, one multi-row ``INSERT .. VALUES .. ON CONFLICT DO NOTHING`` (a
#: single round trip) beats looking up the known keys and then streaming the rest with ``COPY``.
COPY_MIN_ROWS = 200


_SQLITE_FORMAT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def sqlite_timestamp(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it on SQLite: naive UTC text, so that text order is time order."""
    if value.tzinfo is not UTC:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    # %-formatting costs two thirds of isoformat, which goes through the slow PyUnicode_FromFormat
    fields = (value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)
    return _SQLITE_FORMAT % fields


def postgres_timestamp(value: datetime) -> datetime:
    """A datetime for a ``timestamptz`` column: naive input is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def timestamp_converter(dialect: str, *, memo: bool = False) -> Callable[[datetime], Any]:
    """The converter for ``dialect``; with ``memo``, one that formats each instant once (for a batch
    whose decisions and transactions carry the same event times)."""
    if dialect != "sqlite":
        return postgres_timestamp
    if not memo:
        return sqlite_timestamp
    done: dict[datetime, str] = {}

    def converted(value: datetime) -> str:
        text = done.get(value)
        if text is None:
            text = done[value] = sqlite_timestamp(value)
        return text

    return converted


def _copy_type(table: Table, column: str) -> str:
    kind = table.c[column].type
    if isinstance(kind, UTCDateTime):
        return "timestamptz"
    if isinstance(kind, Float):
        return "float8"
    if isinstance(kind, LargeBinary):
        return "bytea"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, JSON | String):
        return "text"  # json's binary COPY format is its text
    raise TypeError(f"no COPY type for {table.name}.{column} ({kind!r})")


#: The caller's SQLAlchemy connection, inside its transaction, or on SQLite the driver connection of
#: :meth:`~fraudstream.storage.database.Database.bulk_write`.
Conn = Connection | Any


def driver(conn: Conn) -> Any:
    """The DBAPI connection under ``conn``, for statements of the driver's own."""
    return conn.connection.driver_connection if isinstance(conn, Connection) else conn


def _is_sqlite(conn: Conn) -> bool:
    return not isinstance(conn, Connection) or conn.dialect.name == "sqlite"


class _SQLite:
    """The SQLite statements for one table and column list, spelled once."""

    def __init__(self, table: str, columns: Sequence[str]) -> None:
        names, marks = ", ".join(columns), ", ".join("?" * len(columns))
        self.append = f"INSERT INTO {table} ({names}) VALUES ({marks})"
        self.insert_new = f"{self.append} ON CONFLICT DO NOTHING"
        self.select_known = f"SELECT {columns[0]} FROM {table} WHERE {columns[0]} IN "


def _sqlite(table: Table, columns: Sequence[str]) -> _SQLite:
    return _sqlite_statements(table.name, tuple(columns))


@lru_cache(maxsize=64)
def _sqlite_statements(table: str, columns: tuple[str, ...]) -> _SQLite:
    return _SQLite(table, columns)


#: Builds the rows at these positions of the batch, in that order (lazily, so PostgreSQL can ingest
#: the first rows while the rest are still being built).
RowBuilder = Callable[[Sequence[int]], Iterable[tuple[Any, ...]]]


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
    if _is_sqlite(conn):
        return _sqlite_insert_new(driver(conn), table, columns, keys, build)
    return _postgres_insert_new(conn, table, columns, keys, build, expect_new=expect_new)


def append(conn: Conn, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert rows that cannot conflict (surrogate keys from the database), in order."""
    if not rows:
        return
    if _is_sqlite(conn):
        driver(conn).executemany(_sqlite(table, columns).append, rows)
        return
    with driver(conn).cursor() as cursor:
        _copy(cursor, table.name, table, columns, rows)


def set_column(conn: Conn, table: Table, column: str, value: Any, keys: Sequence[Any]) -> int:
    """Set ``column`` to ``value`` on the rows with these primary keys (the first primary-key column),
    in one statement however many; how many rows changed (rows already at ``value`` are not touched).
    """
    if not keys:
        return 0
    key = table.primary_key.columns.values()[0].name
    if _is_sqlite(conn):
        ids = orjson.dumps(list(keys)).decode()
        cursor = driver(conn).execute(
            f"UPDATE {table.name} SET {column} = ? WHERE {column} IS NOT ? "
            f"AND {key} IN (SELECT value FROM json_each(?))",
            (value, value, ids),
        )
        return int(cursor.rowcount)
    with driver(conn).cursor() as cursor:
        cursor.execute(
            f"UPDATE {table.name} SET {column} = %s WHERE {column} IS DISTINCT FROM %s AND {key} = ANY(%b)",
            (value, value, list(keys)),
        )
        return int(cursor.rowcount)


def stored_values(
    conn: Conn, table: Table, columns: Sequence[str], keys: Sequence[Any]
) -> dict[Any, tuple[Any, ...]]:
    """``columns`` of the stored rows with these primary keys (the table's first primary-key column), by
    key, read inside the caller's transaction (on PostgreSQL, JSON comes back parsed; on SQLite, as text)."""
    if not keys:
        return {}
    key = table.primary_key.columns.values()[0].name
    names = ", ".join((key, *columns))
    if _is_sqlite(conn):
        found: dict[Any, tuple[Any, ...]] = {}
        for chunk in chunks(list(keys)):
            query = f"SELECT {names} FROM {table.name} WHERE {key} IN ({', '.join('?' * len(chunk))})"
            found.update((row[0], tuple(row[1:])) for row in driver(conn).execute(query, chunk))
        return found
    with driver(conn).cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {table.name} WHERE {key} = ANY(%s)", (list(keys),))
        return {row[0]: tuple(row[1:]) for row in cursor.fetchall()}


def sqlite_known_keys(driver: Any, table: Table, keys: Sequence[Any]) -> set[Any]:
    """Which of ``keys`` (of the table's first column, its primary key) a SQLite database stores."""
    key = table.primary_key.columns.values()[0].name
    return _sqlite_known(driver, _sqlite(table, (key,)), keys) if keys else set()


def _sqlite_known(driver: Any, statements: _SQLite, keys: Sequence[Any]) -> set[Any]:
    stored: set[Any] = set()
    for chunk in chunks(keys):
        query = f"{statements.select_known}({', '.join('?' * len(chunk))})"
        stored.update(k for (k,) in driver.execute(query, chunk))
    return stored


def _sqlite_insert_new(
    driver: Any, table: Table, columns: Sequence[str], keys: Sequence[Any], build: RowBuilder
) -> set[Any]:
    # Inside BEGIN IMMEDIATE nobody else can write, so an insert's change count, or the keys found
    # before inserting, say exactly which rows conflict. (sqlite3's executemany returns no RETURNING
    # rows, and RETURNING on one row cost more than the change count.)
    statements = _sqlite(table, columns)
    if len(keys) <= SQLITE_ROW_BY_ROW:
        cursor = driver.cursor()
        inserted: set[Any] = set()
        for key, row in zip(keys, build(range(len(keys))), strict=True):
            cursor.execute(statements.insert_new, row)
            if cursor.rowcount > 0:
                inserted.add(key)
        return inserted
    stored = _sqlite_known(driver, statements, keys)
    at = [i for i, key in enumerate(keys) if key not in stored]
    driver.executemany(statements.insert_new, build(at))
    return {keys[i] for i in at}


def _postgres_insert_new(
    conn: Conn,
    table: Table,
    columns: Sequence[str],
    keys: Sequence[Any],
    build: RowBuilder,
    *,
    expect_new: bool,
) -> set[Any]:
    from psycopg.errors import UniqueViolation

    # Rows go in key order: two writers with overlapping keys then wait for each other at their first
    # shared key instead of each holding a key the other needs next (a deadlock).
    order = sorted(range(len(keys)), key=keys.__getitem__)
    with driver(conn).cursor() as cursor:
        if len(keys) < COPY_MIN_ROWS:
            return _postgres_values(cursor, table, columns, list(build(order)))
        # The fast path: skip the keys already stored (unless expected new), then COPY the rest straight
        # into the table. A stored key left in, or one a concurrent writer commits meanwhile, makes COPY
        # fail on the unique key, and the batch goes the slower way: a staging table, ON CONFLICT DO NOTHING.
        stored: set[Any] = set()
        if not expect_new:
            known = f"SELECT {columns[0]} FROM {table.name} WHERE {columns[0]} = ANY(%b)"
            cursor.execute(known, [list(keys)])
            stored = {k for (k,) in cursor.fetchall()}
        at = [i for i in order if keys[i] not in stored]
        if not at:
            return set()
        rows = iter(build(at))
        written: list[tuple[Any, ...]] = []
        cursor.execute("SAVEPOINT fraudstream_copy")
        try:
            _copy(cursor, table.name, table, columns, rows, keep=written)
        except UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT fraudstream_copy")
            return _postgres_staged(cursor, table, columns, [*written, *rows])
        cursor.execute("RELEASE SAVEPOINT fraudstream_copy")
        return {keys[i] for i in at}


def _copy(
    cursor: Any,
    target: str,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    keep: list[tuple[Any, ...]] | None = None,
) -> None:
    """Binary COPY of ``rows``, appended to ``keep`` as they go. psycopg sends every 32 kB or so, so
    the server ingests the first rows while a lazy ``rows`` is still building the next ones.

    ``bytea`` values go through psycopg's compiled bytes dumper: the one its DB-API module registers
    for the type (to accept ``Binary`` wrappers too) is Python, a call per feature vector."""
    from psycopg.types.string import BytesBinaryDumper

    cursor.adapters.register_dumper(bytes, BytesBinaryDumper)
    with cursor.copy(f"COPY {target} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([_copy_type(table, c) for c in columns])
        for row in rows:
            if keep is not None:
                keep.append(row)
            copy.write_row(row)


def _postgres_values(
    cursor: Any, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> set[Any]:
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    cursor.execute(
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {', '.join([one] * len(rows))} "
        f"ON CONFLICT DO NOTHING RETURNING {columns[0]}",
        [value for row in rows for value in row],
    )
    return {k for (k,) in cursor.fetchall()}


def _postgres_staged(
    cursor: Any, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> set[Any]:
    """COPY into a session-local staging table (COPY itself cannot skip conflicts), then insert from it."""
    stage, names = f"fraudstream_stage_{table.name}", ", ".join(columns)
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table.name}) ON COMMIT DELETE ROWS")
    _copy(cursor, stage, table, columns, rows)
    cursor.execute(
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {stage} ORDER BY {columns[0]} "
        f"ON CONFLICT DO NOTHING RETURNING {columns[0]}"
    )
    inserted = {k for (k,) in cursor.fetchall()}
    cursor.execute(f"TRUNCATE {stage}")
    return inserted
