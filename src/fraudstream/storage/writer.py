"""Decisions stored by a second process, so that a long replay scores and writes at the same time.

SQLite gives up the interpreter lock for every row it inserts and has to win it back before the next
one; beside a thread that is busy scoring, that can take a whole switch interval per row, so a writer
*thread* crawls. A process has an interpreter of its own: the scorer hands each batch over through a
queue, as columns that pickle quickly, and scores the next batch while this one is written.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import signal
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from multiprocessing.queues import Queue
from typing import Any

from fraudstream.events.decision import DecisionColumns
from fraudstream.events.transaction import Label, Transaction
from fraudstream.storage.errors import StorageError
from fraudstream.storage.store import Store

SLICE = 20_000
"""Rows per slice handed to the writer process."""
IN_FLIGHT = 8
"""Slices queued at most before :meth:`DecisionWriter.save` waits."""
_POLL_SECONDS = 1.0
_JOIN_SECONDS = 60.0


class WriterError(StorageError):
    """The writer process could not store a batch, or died; the message says which and why."""


class DecisionWriter:
    """Stores :class:`DecisionColumns` (and labels) in a child process, in order, behind the caller.

    Batches go in slices of :data:`SLICE` rows, so the child starts on the first slice while the
    rest are still on their way and the last batch leaves little to wait for. At most
    :data:`IN_FLIGHT` slices are queued; a failure surfaces at the next call or at :meth:`close`. A
    store that only lives in this process (in-memory SQLite) is written inline instead.
    """

    def __init__(
        self, store: Store, around_write: Callable[[], AbstractContextManager[Any]] = nullcontext
    ) -> None:
        self.stored = 0
        self._store: Store | None = None
        self._outstanding = 0
        if store.db.in_memory:
            self._store = store
            return
        context = multiprocessing.get_context("spawn")  # no fork: the scorer runs native thread pools
        self._jobs: Queue[Any] = context.Queue(IN_FLIGHT)
        self._replies: Queue[tuple[str, Any]] = context.Queue()
        url = store.url.render_as_string(hide_password=False)
        self._process = context.Process(
            target=_serve, args=(self._jobs, self._replies, url, around_write), name="fraudstream-writer"
        )
        self._process.daemon = True
        self._process.start()

    def save(
        self,
        columns: DecisionColumns,
        labels: list[Label] | None = None,
        transactions: list[Transaction] | None = None,
    ) -> None:
        """Store ``labels``, then the decisions in ``columns`` (first decision per transaction wins),
        with their ``transactions`` (row-aligned with ``columns``) when given."""
        if self._store is not None:
            self.stored += _write(self._store, columns, labels or [], transactions)
            return
        self._collect(block=False)
        for lo in range(0, max(len(columns), 1), SLICE):
            bodies = None if transactions is None else transactions[lo : lo + SLICE]
            self._put((columns.slice(lo, lo + SLICE), labels if lo == 0 else [], bodies))

    def close(self) -> int:
        """Wait for every slice, stop the process; how many decisions were stored for the first time."""
        if self._store is not None:
            return self.stored
        try:
            self._collect(block=True)
        finally:
            self._stop()
        return self.stored

    def __enter__(self) -> DecisionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        elif self._store is None:  # interrupted or failed: what is still queued is dropped
            self._stop(graceful=False)

    def _put(self, job: Any) -> None:
        while True:
            try:
                self._jobs.put(job, timeout=_POLL_SECONDS)
                break
            except queue.Full:
                self._check_alive()
        self._outstanding += 1

    def _collect(self, *, block: bool) -> None:
        while self._outstanding:
            try:
                status, value = self._replies.get(block, _POLL_SECONDS)
            except queue.Empty:
                if not block:
                    return
                self._check_alive()
                continue
            self._outstanding -= 1
            if status == "error":
                raise WriterError(f"storing decisions failed in the writer process: {value}")
            self.stored += value

    def _check_alive(self) -> None:
        if not self._process.is_alive():
            raise WriterError(
                f"the writer process died (exit code {self._process.exitcode}); see its output above"
            )

    def _stop(self, *, graceful: bool = True) -> None:
        """End the child: after the queued slices, or at once (a slice being written rolls back)."""
        if graceful and self._process.is_alive():
            with contextlib.suppress(queue.Full):
                self._jobs.put(None, timeout=_JOIN_SECONDS)
            self._process.join(_JOIN_SECONDS)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        if not graceful:
            self._jobs.cancel_join_thread()  # slices nobody will read must not hold up our exit
        self._jobs.close()
        self._replies.close()


def _write(
    store: Store, columns: DecisionColumns, labels: list[Label], transactions: list[Transaction] | None
) -> int:
    if labels:
        store.labels.add(labels)
    return len(store.decisions.save(columns, transactions))


def _serve(
    jobs: Queue[Any],
    replies: Queue[tuple[str, Any]],
    url: str,
    around_write: Callable[[], AbstractContextManager[Any]],
) -> None:
    """The child: store each job as it comes (inside ``around_write``, a module-level function the
    parent names, e.g. :func:`fraudstream._gc.paused_gc`), answer ``("ok", stored)`` or ``("error",
    why)``. It starts with its parent's environment, so under ``fraudstream replay`` glibc keeps freed
    memory here too (see :mod:`fraudstream._malloc`): the slices come and go, a batch's size each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    store = Store(url)
    try:
        while (job := jobs.get()) is not None:
            reply: tuple[str, Any]
            try:
                with around_write():
                    reply = ("ok", _write(store, *job))
            except Exception as exc:  # reported to the parent, which decides to stop
                reply = ("error", f"{type(exc).__name__}: {exc}")
            replies.put(reply)
    finally:
        store.close()
