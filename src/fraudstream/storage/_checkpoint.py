"""SQLite WAL checkpoints on a thread of their own, off the commit that happens to cross the threshold.

With SQLite's automatic checkpoint the commit that fills the WAL copies it back into the database
file and syncs it before returning: on this project's 2-core test machine that stalled one commit in
about a thousand for 20–60 ms. For the synchronous API the stall hits every request queued behind that
commit, and it was what set the latency percentiles. Here each writer only counts its commits; every
:data:`EVERY` commits a background thread runs a ``PASSIVE`` checkpoint, which waits for no reader or
writer, so commits go on while the pages are copied. The automatic checkpoint stays on as a safety
net, and is never reached while this thread keeps up.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

log = logging.getLogger(__name__)

#: Commits between checkpoints: a few MB of WAL for single-transaction commits, well below the
#: automatic checkpoint's threshold.
EVERY = 200


class WalCheckpointer:
    """Checkpoints ``engine``'s database after every ``every`` commits, on a daemon thread started
    at the first one. :meth:`close` ends the thread (closing the last connection checkpoints the
    rest); a later commit starts a new one."""

    def __init__(self, engine: Engine, every: int = EVERY) -> None:
        self.engine, self.every = engine, every
        self._commits = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._due = threading.Event()
        self._stop = threading.Event()
        self.checkpoints = 0

    def committed(self) -> None:
        """Count one commit; wakes the thread when a checkpoint is due."""
        self._commits += 1
        if self._commits < self.every:
            return
        self._commits = 0
        with self._lock:
            if self._thread is None:
                self._due, self._stop = threading.Event(), threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._due, self._stop), name="fraudstream-sqlite-checkpoint",
                    daemon=True,
                )  # fmt: skip
                self._thread.start()
            self._due.set()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            self._due.set()
        if thread is not None:
            thread.join(10)

    def _run(self, due: threading.Event, stop: threading.Event) -> None:
        while True:
            due.wait()
            due.clear()
            if stop.is_set():
                return
            try:
                raw = self.engine.raw_connection()  # no SQLAlchemy transaction: a checkpoint needs none open
                try:
                    raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                finally:
                    raw.close()
                self.checkpoints += 1
            except Exception:  # the automatic checkpoint still runs; never take the process down
                log.warning("SQLite WAL checkpoint failed; will try again", exc_info=True)
