"""One SQLite driver connection per writing thread, kept open between bulk writes.

The score API stores one to four decisions per transaction it commits, and checking a connection out
of SQLAlchemy's pool and back (with the rollback that resets it) cost as much CPU as SQLite's own
work for such a batch. A thread that writes keeps its own connection instead: SQLite's file lock
(``BEGIN IMMEDIATE`` plus the busy timeout) serialises writers across connections exactly as it does
for pooled ones, and no connection is ever used by two threads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NoReturn

from sqlalchemy import Engine


class ThreadConnections:
    """The calling thread's driver connection to ``engine``'s SQLite file, opened on first use.

    Connections are made by the engine's pool (so its ``connect`` event applies the same pragmas) and
    detached from it, so they hold no pool slot. Those of threads that have ended are closed when
    another one is opened. :meth:`close` closes them all, except that one in use by a write is closed
    when the write releases it, so closing the store never breaks another thread's transaction; a
    later :meth:`acquire` opens anew.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: dict[threading.Thread, Any] = {}
        self._busy: set[Any] = set()
        self._retired: set[Any] = set()
        self._generation = 0

    def acquire(self) -> Any:
        """The ``sqlite3.Connection`` of this thread, held until :meth:`release`."""
        local = self._local
        with self._lock:
            if getattr(local, "generation", -1) == self._generation:
                self._busy.add(local.connection)
                return local.connection
        return self._connect()

    def release(self, connection: Any) -> None:
        """End :meth:`acquire`; closes the connection if :meth:`close` was called meanwhile."""
        with self._lock:
            self._busy.discard(connection)
            retired = connection in self._retired
            self._retired.discard(connection)
        if retired:
            connection.close()

    def _connect(self) -> Any:
        pooled = self._engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()
        with self._lock:
            for thread in [t for t in self._open if not t.is_alive()]:
                self._open.pop(thread).close()
            stale = self._open.pop(threading.current_thread(), None)
            if stale is not None:
                stale.close()
            self._open[threading.current_thread()] = connection
            self._busy.add(connection)
            self._local.connection, self._local.generation = connection, self._generation
        return connection

    def discard(self) -> None:
        """Close this thread's connection (after an error that may have left it unusable)."""
        with self._lock:
            connection = self._open.pop(threading.current_thread(), None)
            self._local.generation = -1
        if connection is not None:
            connection.close()

    def close(self) -> None:
        """Close every thread's connection: now if idle, at its release if a write holds it."""
        with self._lock:
            self._generation += 1
            connections, self._open = list(self._open.values()), {}
            idle = [c for c in connections if c not in self._busy]
            self._retired.update(c for c in connections if c in self._busy)
        for connection in idle:
            connection.close()


class DriverTransaction:
    """``BEGIN IMMEDIATE`` .. ``COMMIT`` on this thread's connection, rolled back on any error.

    ``translate`` maps a driver error to the store's own (or None to let it through); ``committed``
    runs after each commit. A class rather than a generator-based context manager: it is entered once
    per score API batch."""

    __slots__ = ("_committed", "_driver", "_translate", "_writers")

    def __init__(
        self,
        writers: ThreadConnections,
        translate: Callable[[Exception], Exception | None],
        committed: Callable[[], None],
    ) -> None:
        self._writers, self._translate, self._committed = writers, translate, committed

    def __enter__(self) -> Any:
        try:
            driver = self._driver = self._writers.acquire()
        except Exception as exc:
            self._raise(exc)
        try:
            driver.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            self._writers.release(driver)
            self._raise(exc)
        return driver

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        try:
            self._end(kind, exc)
        finally:
            self._writers.release(self._driver)

    def _end(self, kind: type[BaseException] | None, exc: BaseException | None) -> None:
        if kind is None:
            try:
                self._driver.execute("COMMIT")
            except Exception as error:
                self._rollback()
                self._raise(error)
            self._committed()
            return
        self._rollback()
        if isinstance(exc, Exception):
            translated = self._translate(exc)
            if translated is not None:
                raise translated from exc

    def _rollback(self) -> None:
        try:
            if self._driver.in_transaction:
                self._driver.execute("ROLLBACK")
        except Exception:  # the connection is unusable: the next write opens another
            self._writers.discard()

    def _raise(self, exc: Exception) -> NoReturn:
        translated = self._translate(exc)
        if translated is None:
            raise exc
        raise translated from exc
