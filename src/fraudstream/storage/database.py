"""The engine behind :class:`~fraudstream.storage.Store`: URL handling, connections, transactions.

SQLite and PostgreSQL are driven through the same Core statements; what differs between them (how a
URL becomes an engine, how a writing transaction begins, which ``INSERT .. ON CONFLICT`` construct is
used, the repositories' few vendor-specific statements, and the bulk writes' driver statements) is in
:mod:`._sqlite` and :mod:`._postgres`, reached through :attr:`Database.vendor`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime
from typing import Any, Self

import numpy as np
import orjson
from sqlalchemy import URL, Connection, Executable, Table, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError, OperationalError

from fraudstream.storage._checkpoint import WalCheckpointer
from fraudstream.storage._connections import DriverTransaction, ThreadConnections
from fraudstream.storage._sqlite import in_memory
from fraudstream.storage._vendors import SQLITE, vendor
from fraudstream.storage.errors import StorageError
from fraudstream.storage.migrate import upgrade

SUPPORTED_SCHEMES = ("sqlite:///path/to/file.db", "postgresql://user:password@host:5432/dbname")


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


class Database:
    """An engine plus the transaction helpers every repository of the :class:`~.store.Store` uses.

    Creating one opens no connection; the first query does. Writing transactions on SQLite start with
    ``BEGIN IMMEDIATE`` so that concurrent writers queue on the busy timeout instead of failing halfway.
    An in-memory SQLite URL shares one connection and suits single-threaded tests only.
    """

    def __init__(self, url: str | URL, *, pool_size: int = 5, max_overflow: int = 10) -> None:
        self.url = normalize_url(url)
        #: What differs between SQLite and PostgreSQL (see :mod:`._dialect`).
        self.vendor = vendor(self.url.get_backend_name())
        #: ``"sqlite"`` or ``"postgresql"``.
        self.dialect = self.vendor.name
        self._checkpointer: WalCheckpointer | None = None
        self._writers: ThreadConnections | None = None
        self.engine = self.vendor.engine(self.url, pool_size, max_overflow, (dumps, loads))
        if self.vendor is SQLITE and not self.in_memory:
            self._checkpointer = WalCheckpointer(self.engine)
            self._writers = ThreadConnections(self.engine)

    @property
    def in_memory(self) -> bool:
        """Whether the database lives in this process only (in-memory SQLite), out of others' reach."""
        return in_memory(self.url)

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

    @property
    def writers(self) -> ThreadConnections | None:
        """Each thread's own driver connection to a SQLite file (see :mod:`._connections`), or ``None``
        (PostgreSQL, in-memory SQLite)."""
        return self._writers

    def close(self) -> None:
        """Close every pooled connection; the database reconnects if used again."""
        if self._writers is not None:
            self._writers.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()

    def migrate(self) -> None:
        """Create or upgrade the schema, atomically and safely when several processes start at once."""
        with self.write() as conn:
            upgrade(conn)

    def ping(self) -> str:
        """The server's version, proving the database is reachable: ``"SQLite 3.45.1"``."""
        with self.read() as conn:
            return f"{self.vendor.label} {conn.exec_driver_sql(self.vendor.version_query).scalar_one()}"

    def _unreachable(self, exc: Exception) -> StorageError:
        message = str(getattr(exc, "orig", None) or exc).strip()
        reason = " ".join(message.splitlines()[0].split()) if message else type(exc).__name__
        hint = self.vendor.hint(reason, self.url)
        return StorageError(f"database {self.safe_url} is unreachable or unusable ({reason}); {hint}")

    @contextmanager
    def translated(self) -> Iterator[None]:
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
        """The :class:`StorageError` that :meth:`translated` raises for ``exc``, if any."""
        if isinstance(exc, OperationalError | OSError | self.engine.dialect.loaded_dbapi.OperationalError):
            return self._unreachable(exc)
        # Plain DatabaseError is "not a database" and the like; its subclasses are our own bugs.
        if isinstance(exc, DBAPIError) and (exc.connection_invalidated or type(exc) is DatabaseError):
            return self._unreachable(exc)
        return None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.translated(), self.engine.connect() as conn:
            yield conn

    def query(self, statement: Executable) -> list[Any]:
        """The rows of a read-only SQLAlchemy Core ``statement``, for read models kept beside the API
        (live feed, chart series); failures become :class:`StorageError` like every other read."""
        with self.read() as conn:
            return list(conn.execute(statement))

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction that commits on success; exclusive for writers from the start on SQLite."""
        with self.translated(), self.engine.connect() as conn:
            self.vendor.begin_write(conn)
            with conn.begin():
                yield conn
        self.committed()

    def committed(self, commits: int = 1) -> None:
        if self._checkpointer is not None:
            self._checkpointer.committed(commits)

    def bulk_write(self) -> AbstractContextManager[Any]:
        """:meth:`write` for a transaction made only of :mod:`.bulk` statements, which go through the
        driver. On a SQLite file it yields this thread's own driver connection (see :mod:`._connections`)
        and begins and ends the transaction there, skipping SQLAlchemy's connection, pool and
        transaction machinery, which would otherwise cost every one-row batch of the score API more than
        its own statements. Elsewhere it yields the SQLAlchemy connection of :meth:`write`."""
        if self._writers is None:
            return self.write()
        return DriverTransaction(self._writers, self._translation, self.committed)

    def insert_ignore(
        self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]], returning: str
    ) -> list[Any]:
        """Insert ``rows`` in one executemany, skipping conflicts; the ``returning`` values of new rows.

        RETURNING (SQLite ≥ 3.35, PostgreSQL) reports exactly the rows inserted even under concurrent
        writers, which a count of rows before and after would not.
        """
        if not rows:
            return []
        statement = self.vendor.insert(table).on_conflict_do_nothing().returning(table.c[returning])
        return list(conn.execute(statement, list(rows)).scalars())
