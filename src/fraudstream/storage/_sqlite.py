"""SQLite's side of :mod:`._dialect`: the embedded file (or in-memory) database, tuned for one writer.

Its bulk writes go through the sqlite3 module: ``executemany`` of statements spelled once per table and
column list, timestamps as text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Table,
    cast,
    create_engine,
    event,
    func,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.pool import StaticPool

from fraudstream.storage import tables
from fraudstream.storage._dialect import Dialect, JsonCodec, RowBuilder
from fraudstream.storage.errors import StorageError

# A checkpoint every 10,000 pages (40 MB of WAL) instead of 1,000: a batch of decisions is several MB,
# and checkpointing after every commit rewrote the same index pages again and again.
_PRAGMAS = (
    "PRAGMA page_size=8192",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA wal_autocheckpoint=10000",
    "PRAGMA cache_size=-131072",
)
_BEGIN_OPTION = "fraudstream_sqlite_begin"

#: Keys per ``IN (...)`` list, so that the bound parameters stay well under SQLite's limit (32766).
_IN_CHUNK = 5000
_FORMAT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def in_memory(url: URL) -> bool:
    """Whether ``url`` names an in-memory SQLite database."""
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or url.query.get("mode") == "memory"
    )


def sqlite_timestamp(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it on SQLite: naive UTC text, so that text order is time order."""
    if value.tzinfo is not UTC:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    # %-formatting costs two thirds of isoformat, which goes through the slow PyUnicode_FromFormat
    fields = (value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)
    return _FORMAT % fields


class _Statements:
    """The bulk statements for one table and column list, spelled once."""

    def __init__(self, table: str, columns: Sequence[str]) -> None:
        names, marks = ", ".join(columns), ", ".join("?" * len(columns))
        self.append = f"INSERT INTO {table} ({names}) VALUES ({marks})"
        self.insert_new = f"{self.append} ON CONFLICT DO NOTHING"
        self.select_known = f"SELECT {columns[0]} FROM {table} WHERE {columns[0]} IN "


def _statements(table: Table, columns: Sequence[str]) -> _Statements:
    return _cached_statements(table.name, tuple(columns))


@lru_cache(maxsize=64)
def _cached_statements(table: str, columns: tuple[str, ...]) -> _Statements:
    return _Statements(table, columns)


def _chunks(keys: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(keys), _IN_CHUNK):
        yield keys[start : start + _IN_CHUNK]


class SQLite(Dialect):
    """Writers begin with ``BEGIN IMMEDIATE`` and queue on the busy timeout instead of failing halfway;
    the sqlite3 module's own transaction handling is switched off so that BEGIN is ours."""

    name = "sqlite"
    label = "SQLite"
    version_query = "SELECT sqlite_version()"
    insert = staticmethod(sqlite.insert)
    flag_index_hint = f" INDEXED BY {tables.FLAG_INDEX}"
    param = "?"
    timestamp = staticmethod(sqlite_timestamp)

    def engine(self, url: URL, pool_size: int, max_overflow: int, json: JsonCodec) -> Engine:
        database = url.database or ""
        memory = in_memory(url)
        if not memory:
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(
                    f"cannot create the folder {folder} for the SQLite database: {exc}"
                ) from exc
        options: dict[str, Any] = (
            {"poolclass": StaticPool} if memory else {"pool_size": pool_size, "max_overflow": max_overflow}
        )
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 5.0},
            json_serializer=json[0],
            json_deserializer=json[1],
            **options,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take transaction control away from the sqlite3 module so that BEGIN (IMMEDIATE) is ours.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            for pragma in _PRAGMAS:
                cursor.execute(pragma)
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(_BEGIN_OPTION, 'DEFERRED')}")

        return engine

    def hint(self, reason: str, url: URL) -> str:
        return "check the URL: the file must be a SQLite database, in a folder you can write to"

    def begin_write(self, conn: Connection) -> None:
        conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})

    def json_texts(self, values: Any) -> Any:
        return func.json_each(values).table_valued("value")

    def json_fields(self, values: Any, *names: str) -> tuple[Any, list[ColumnElement[Any]]]:
        element = func.json_each(values).table_valued("value")
        return element, [func.json_extract(element.c.value, f"$.{name}") for name in names]

    def time_and_score_bins(self, decided_at: Any, scaled: Any, bucket: int) -> tuple[Any, Any]:
        # SQLite may lack math functions: strftime's epoch seconds, and integer division.
        return cast(func.strftime("%s", decided_at), Integer) // bucket, cast(scaled, Integer)

    def greatest(self, a: str, b: str) -> str:
        # max() of two values is NULL if either is.
        return f"max(coalesce({a}, {b}), coalesce({b}, {a}))"

    def timestamp_converter(self, memo: bool) -> Callable[[datetime], Any]:
        if not memo:
            return sqlite_timestamp
        done: dict[datetime, str] = {}

        def converted(value: datetime) -> str:
            text = done.get(value)
            if text is None:
                text = done[value] = sqlite_timestamp(value)
            return text

        return converted

    def timestamps(self, seconds: np.ndarray) -> list[Any]:
        micros = np.rint(np.asarray(seconds, dtype=np.float64) * 1e6).astype("datetime64[us]")
        return [text.replace("T", " ") for text in np.datetime_as_string(micros, unit="us").tolist()]

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
        # Inside BEGIN IMMEDIATE nobody else can write, so the connection's change count says whether
        # every row went in, and the rowids past the newest before say which did when some did not.
        # (sqlite3's executemany returns no RETURNING rows.)
        statements = _statements(table, columns)
        at: Sequence[int] = range(len(keys))
        if not expect_new:  # rows are built only for the keys not stored yet
            stored = self._known(driver, statements, keys)
            at = [i for i, key in enumerate(keys) if key not in stored]
        if not at:
            return set()
        newest = driver.execute(f"SELECT max(rowid) FROM {table.name}").fetchone()[0] or 0
        before = driver.total_changes
        driver.executemany(statements.insert_new, build(at))
        if driver.total_changes - before == len(at):
            return {keys[i] for i in at}
        # some were stored after all: the rows this statement inserted are the ones past ``newest``
        key = table.primary_key.columns.values()[0].name
        inserted = driver.execute(f"SELECT {key} FROM {table.name} WHERE rowid > ?", (newest,))
        return {k for (k,) in inserted}

    def append(
        self, driver: Any, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        driver.executemany(_statements(table, columns).append, rows)

    def set_column(self, driver: Any, table: Table, column: str, value: Any, keys: Sequence[Any]) -> int:
        key = table.primary_key.columns.values()[0].name
        cursor = driver.execute(
            f"UPDATE {table.name} SET {column} = ? WHERE {column} IS NOT ? "
            f"AND {key} IN (SELECT value FROM json_each(?))",
            (value, value, orjson.dumps(list(keys)).decode()),
        )
        return int(cursor.rowcount)

    def stored_values(
        self, driver: Any, table: Table, columns: Sequence[str], keys: Sequence[Any]
    ) -> dict[Any, tuple[Any, ...]]:
        key = table.primary_key.columns.values()[0].name
        names = ", ".join((key, *columns))
        found: dict[Any, tuple[Any, ...]] = {}
        for chunk in _chunks(list(keys)):
            query = f"SELECT {names} FROM {table.name} WHERE {key} IN ({', '.join('?' * len(chunk))})"
            found.update((row[0], tuple(row[1:])) for row in driver.execute(query, chunk))
        return found

    def _known(self, driver: Any, statements: _Statements, keys: Sequence[Any]) -> set[Any]:
        stored: set[Any] = set()
        for chunk in _chunks(keys):
            query = f"{statements.select_known}({', '.join('?' * len(chunk))})"
            stored.update(k for (k,) in driver.execute(query, chunk))
        return stored
