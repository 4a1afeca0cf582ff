"""SQLite WAL checkpoints on a thread of their own, off the commit that happens to cross the threshold.

With SQLite's automatic checkpoint the commit that fills the WAL copies it back into the database
file and syncs it before returning, stalling that commit and every request queued behind it. Here
each writer only counts its commits; every :data:`EVERY` commits a background thread runs ``PASSIVE``
checkpoints, which wait for no reader or writer, so commits go on while the pages are copied. Why, and
the figures behind the interval: docs/decisions/0007-wal-checkpoints-every-200-commits.md.

A passive checkpoint copies the WAL as it was when the pass began, so "all frames copied" does not
mean caught up: commits made during the pass are left over. The WAL file only starts over when a
writer begins after everything was copied; until then it grows, and at ``wal_autocheckpoint`` frames
the commit that crosses it checkpoints on the writer's thread. So the thread runs passes until one
finds nothing new, and the WAL starts over in a gap between commits. Back-to-back commits leave no
gap and the WAL grows towards the backstop (``wal_autocheckpoint``), which it stays under at the
API's rates. The interval sets how often the same hot index pages are copied and synced: fewer
checkpoints cost less CPU per write and let the WAL grow larger.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

log = logging.getLogger(__name__)

#: Commits between checkpoints: about 18 MB of WAL for single-transaction commits (eleven 8-kB pages each).
EVERY = 200
#: At most this many passes per checkpoint: commits made during one pass leave frames for the next.
PASSES = 8
#: The checkpoint thread's name, to tell it apart in thread dumps and profiles.
THREAD_NAME = "fraudstream-sqlite-checkpoint"


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

    def committed(self, count: int = 1) -> None:
        """Count ``count`` commits; wakes the thread when a checkpoint is due."""
        self._commits += count
        if self._commits < self.every:
            return
        self._commits = 0
        with self._lock:
            if self._thread is None:
                self._due, self._stop = threading.Event(), threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._due, self._stop), name=THREAD_NAME,
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
                self.checkpoint()
            except Exception:  # the automatic checkpoint still runs; never take the process down
                log.warning("SQLite WAL checkpoint failed; will try again", exc_info=True)

    def checkpoint(self) -> int:
        """Copy the WAL into the database file, pass after pass until one finds nothing committed
        since the last; returns the number of passes."""
        raw = self.engine.raw_connection()  # no SQLAlchemy transaction: a checkpoint needs none open
        try:
            last, passes = -1, 0
            while passes < PASSES:
                passes += 1
                cursor = raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                _busy, frames, copied = cursor.fetchone()
                if frames == copied == last:
                    break
                last = frames
        finally:
            raw.close()
        self.checkpoints += 1
        return passes
