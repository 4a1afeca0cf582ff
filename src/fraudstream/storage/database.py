"""The engine behind :class:`~fraudstream.storage.Store`: URL handling, SQLite tuning, transactions.

SQLite and PostgreSQL are driven through the same Core statements. The differences live here: how a
URL is turned into an engine, how a writing transaction begins, and which ``INSERT .. ON CONFLICT``
construct is used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import orjson
from sqlalchemy import URL, Connection, Engine, Executable, Table, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool

from fraudstream.storage._checkpoint import WalCheckpointer
from fraudstream.storage._connections import DriverTransaction, ThreadConnections
from fraudstream.storage.errors import StorageError
from fraudstream.storage.migrate import upgrade

if TYPE_CHECKING:
    from fraudstream.storage._journal import DecisionJournal

SUPPORTED_SCHEMES = ("sqlite:///path/to/file.db", "postgresql://user:password@host:5432/dbname")
# A checkpoint every 10,000 pages (40 MB of WAL) instead of 1,000: a batch of decisions is several MB,
# and checkpointing after every commit rewrote the same index pages again and again.
_SQLITE_PRAGMAS = (
    "PRAGMA page_size=8192",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA wal_autocheckpoint=10000",
    "PRAGMA cache_size=-131072",
)
_BEGIN_OPTION = "fraudstream_sqlite_begin"
_CONNECT_TIMEOUT_S = 5


def normalize_url(url: str | URL) -> URL:
    """Parse ``url`` and pick the driver: the stdlib ``sqlite3`` or psycopg 3 for PostgreSQL."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(
            f"cannot parse the database URL: use one of {', '.join(SUPPORTED_SCHEMES)}"
        ) from exc
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    raise StorageError(
        f"unsupported database URL scheme {parsed.drivername!r}: use one of {', '.join(SUPPORTED_SCHEMES)}"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    """JSON for the database: compact, numpy-aware, with NaN and infinity written as ``null``.

    orjson rather than the standard library: decisions carry a hundred features each, and encoding
    them was most of the cost of storing a batch.
    """
    try:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except orjson.JSONEncodeError:  # e.g. integers beyond 64 bits in a user's ``extra``
        return json.dumps(value, default=_json_default, separators=(",", ":"))


def loads(value: str | bytes) -> Any:
    """Parse a JSON column; orjson, with the standard library for what it refuses (huge integers)."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)


def _in_memory(url: URL) -> bool:
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or url.query.get("mode") == "memory"
    )


def _sqlite_engine(url: URL, pool_size: int, max_overflow: int) -> Engine:
    database = url.database or ""
    in_memory = _in_memory(url)
    if not in_memory:
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the folder {folder} for the SQLite database: {exc}") from exc
    options: dict[str, Any] = (
        {"poolclass": StaticPool} if in_memory else {"pool_size": pool_size, "max_overflow": max_overflow}
    )
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 5.0},
        json_serializer=dumps,
        json_deserializer=loads,
        **options,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that BEGIN (IMMEDIATE) is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(_BEGIN_OPTION, 'DEFERRED')}")

    return engine


def _postgres_engine(url: URL, pool_size: int, max_overflow: int) -> Engine:
    """A QueuePool of psycopg connections, each checked before use so a restarted server costs nothing."""
    try:
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            pool_recycle=3600,
            json_serializer=dumps,
            json_deserializer=loads,
            connect_args={"connect_timeout": _CONNECT_TIMEOUT_S, "application_name": "fraudstream"},
        )
    except ImportError as exc:
        raise StorageError(
            "PostgreSQL support needs psycopg 3: pip install 'psycopg[binary]' (or use a sqlite:/// URL)"
        ) from exc


class Database:
    """An engine plus the transaction helpers every store method uses.

    Creating one opens no connection; the first query does. Writing transactions on SQLite start with
    ``BEGIN IMMEDIATE`` so that concurrent writers queue on the busy timeout instead of failing halfway.
    An in-memory SQLite URL shares one connection and suits single-threaded tests only.
    """

    def __init__(self, url: str | URL, *, pool_size: int = 5, max_overflow: int = 10) -> None:
        self.url = normalize_url(url)
        self.dialect = "sqlite" if self.url.get_backend_name() == "sqlite" else "postgresql"
        self._checkpointer: WalCheckpointer | None = None
        self._writers: ThreadConnections | None = None
        self._journal: DecisionJournal | None = None  # the score API's held decisions (see ._held)
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url, pool_size, max_overflow)
            if not self.in_memory:
                self._checkpointer = WalCheckpointer(self.engine)
                self._writers = ThreadConnections(self.engine)
        else:
            self.engine = _postgres_engine(self.url, pool_size, max_overflow)
        # Feature-set id → names; content-addressed, so never stale.
        self._feature_names: dict[str, list[str]] = {}
        # Whether the last batch of transactions stored with decisions was all new (see save_decisions).
        self._transactions_new = False

    @property
    def in_memory(self) -> bool:
        """Whether the database lives in this process only (in-memory SQLite), out of others' reach."""
        return _in_memory(self.url)

    @property
    def safe_url(self) -> str:
        """The URL with its password hidden, for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.safe_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection; the store reconnects if used again."""
        if self._journal is not None:
            self._journal.close()
        if self._writers is not None:
            self._writers.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()

    def migrate(self) -> None:
        """Create or upgrade the schema, atomically and safely when several processes start at once."""
        with self._write() as conn:
            upgrade(conn)

    def ping(self) -> str:
        """The server's version, proving the database is reachable: ``"SQLite 3.45.1"``."""
        query = "SELECT sqlite_version()" if self.dialect == "sqlite" else "SHOW server_version"
        name = "SQLite" if self.dialect == "sqlite" else "PostgreSQL"
        with self._read() as conn:
            return f"{name} {conn.exec_driver_sql(query).scalar_one()}"

    def _unreachable(self, exc: Exception) -> StorageError:
        message = str(getattr(exc, "orig", None) or exc).strip()
        reason = " ".join(message.splitlines()[0].split()) if message else type(exc).__name__
        return StorageError(
            f"database {self.safe_url} is unreachable or unusable ({reason}); {self._hint(reason)}"
        )

    def _hint(self, reason: str) -> str:
        if self.dialect == "sqlite":
            return "check the URL: the file must be a SQLite database, in a folder you can write to"
        if "password authentication failed" in reason or ("role" in reason and "does not exist" in reason):
            return "check the user name and password in the URL"
        if "database" in reason and "does not exist" in reason:
            return f"create it (createdb {self.url.database}) or fix the database name in the URL"
        return "is PostgreSQL running? `make services` (or check the host and port in the URL)"

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Connection failures become one :class:`StorageError` saying which database and what to check.

        Bulk writes talk to the driver directly, so its own ``OperationalError`` is translated too.
        """
        try:
            yield
        except Exception as exc:
            translated = self._translation(exc)
            if translated is None:
                raise
            raise translated from exc

    def _translation(self, exc: Exception) -> StorageError | None:
        """The :class:`StorageError` that :meth:`_translated` raises for ``exc``, if any."""
        if isinstance(exc, OperationalError | OSError | self.engine.dialect.loaded_dbapi.OperationalError):
            return self._unreachable(exc)
        # Plain DatabaseError is "not a database" and the like; its subclasses are our own bugs.
        if isinstance(exc, DBAPIError) and (exc.connection_invalidated or type(exc) is DatabaseError):
            return self._unreachable(exc)
        return None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._translated(), self.engine.connect() as conn:
            yield conn

    def query(self, statement: Executable) -> list[Any]:
        """The rows of a read-only SQLAlchemy Core ``statement``, for read models kept beside the API
        (live feed, chart series); failures become :class:`StorageError` like every other read."""
        with self._read() as conn:
            return list(conn.execute(statement))

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One transaction that commits on success; exclusive for writers from the start on SQLite."""
        with self._translated(), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                yield conn
        self._committed()

    def _release_for_reads(self) -> None:
        """Before a read that lists or counts decisions: stores what is held (see :mod:`._held`)."""

    @contextmanager
    def _accepting(self, hashes: Mapping[str, str]) -> Iterator[dict[str, str]]:
        """Around storing transactions with these body hashes (by id): the body hashes of those whose
        decision this process holds, not stored yet (see :mod:`._held`); here, where nothing is held,
        none."""
        yield {}

    def _committed(self, commits: int = 1) -> None:
        if self._checkpointer is not None:
            self._checkpointer.committed(commits)

    def _bulk_write(self) -> AbstractContextManager[Any]:
        """:meth:`_write` for a transaction made only of :mod:`.bulk` statements, which go through the
        driver. On a SQLite file it yields this thread's own driver connection (see :mod:`._connections`)
        and begins and ends the transaction there, skipping SQLAlchemy's connection, pool and
        transaction machinery, which would otherwise cost every one-row batch of the score API more than
        its own statements. Elsewhere it yields the SQLAlchemy connection of :meth:`_write`."""
        if self._writers is None:
            return self._write()
        return DriverTransaction(self._writers, self._translation, self._committed)

    def _insert_ignore(
        self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]], returning: str
    ) -> list[Any]:
        """Insert ``rows`` in one executemany, skipping conflicts; the ``returning`` values of new rows.

        RETURNING (SQLite ≥ 3.35, PostgreSQL) reports exactly the rows inserted even under concurrent
        writers, which a count of rows before and after would not.
        """
        if not rows:
            return []
        insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        statement = insert(table).on_conflict_do_nothing().returning(table.c[returning])
        return list(conn.execute(statement, list(rows)).scalars())
