"""SQLite's side of :mod:`._dialect`: the embedded file (or in-memory) database, tuned for one writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, ColumnElement, Connection, Engine, Integer, cast, create_engine, event, func
from sqlalchemy.dialects import sqlite
from sqlalchemy.pool import StaticPool

from fraudstream.storage import tables
from fraudstream.storage._dialect import Dialect, JsonCodec
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


def in_memory(url: URL) -> bool:
    """Whether ``url`` names an in-memory SQLite database."""
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or url.query.get("mode") == "memory"
    )


class SQLite(Dialect):
    """Writers begin with ``BEGIN IMMEDIATE`` and queue on the busy timeout instead of failing halfway;
    the sqlite3 module's own transaction handling is switched off so that BEGIN is ours."""

    name = "sqlite"
    label = "SQLite"
    version_query = "SELECT sqlite_version()"
    insert = staticmethod(sqlite.insert)
    flag_index_hint = f" INDEXED BY {tables.FLAG_INDEX}"

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
