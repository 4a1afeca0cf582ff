"""Held decisions stored by a child process, so that the score API's event loop never runs their commit.

The score API holds its decisions (:mod:`._held`); storing a group on the event loop would make every
request that arrives meanwhile wait. A child process stores them instead, on another core. Each decision
is in the journal already, so the loop only writes a line to the child naming a byte range of the
journal file; the child reads those lines back as recovery reads a journal, stores them with the very
write :meth:`~._held.HeldDecisions.release` uses, and answers with the ids it stored. The parent
forgets those ids then, on a thread that waits for the answers; until then they count as held, and reads
see them from memory. The figures behind this: docs/decisions/0006-held-decisions-stored-by-a-child-
process.md.

Nothing is lost when the child fails: whatever it has not answered for is still held, and the
parent stores it in-process from then on (storing is idempotent, the first decision wins). When the
parent dies, the child sees the end of its input, finishes the range in hand and exits; the journal
is recovered by the next start as before.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import IO

import orjson

from fraudstream.storage._journal import Segment, read_held

log = logging.getLogger(__name__)

#: The child's niceness: when it and the event loop want the same core, the loop gets it. It is also
#: scheduled as a batch task: a pipe's writer wakes its reader on the writer's own core, and the child,
#: waking, would preempt the loop for the length of its commit.
NICE = 10
#: Seconds :meth:`HeldStorer.close` gives the child to store what it was handed before killing it.
CLOSE_TIMEOUT = 30.0


class HeldStorer:
    """The child process storing journal ranges into the SQLite file at ``url``; ``on_stored`` receives
    the ids of each range once stored (on a thread of its own). Starts the child at once."""

    def __init__(self, url: str, on_stored: Callable[[list[str]], None]) -> None:
        self.on_stored = on_stored
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from fraudstream.storage._storer import main; main(sys.argv[1])",
                url,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C in a terminal is the parent's to handle
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._input = self._process.stdin.fileno()
        os.set_blocking(self._input, False)  # a stuck child must never block the event loop
        self._in_flight: deque[Segment] = deque()
        self._changed = threading.Condition()
        self.failure: str | None = None
        self._closing = False
        self._reader = threading.Thread(
            target=self._read, args=(self._process.stdout,), name="fraudstream-held-storer", daemon=True
        )
        self._reader.start()

    @property
    def usable(self) -> bool:
        """Whether the child is running and has stored everything it was handed without an error."""
        return self.failure is None

    def send(self, segment: Segment) -> bool:
        """Hand ``segment`` over; ``False`` (and :attr:`usable` false) when the child cannot take it."""
        line = f"{segment.path}\t{segment.start}\t{segment.end}\n".encode()
        with self._changed:
            if self.failure is not None:
                return False
            try:
                written = os.write(self._input, line)
            except OSError as exc:  # BlockingIOError: not reading; BrokenPipeError: gone
                written, reason = 0, f"cannot hand it more ({exc.strerror or type(exc).__name__})"
            else:
                reason = "took part of a request"
            if written != len(line):
                self._fail(reason)
                return False
            self._in_flight.append(segment)
            return True

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until everything handed over is stored; whether it is."""
        with self._changed:
            self._changed.wait_for(lambda: not self._in_flight or self.failure is not None, timeout)
            return not self._in_flight

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Let the child store what it was handed, then end it (killed after ``timeout`` seconds, at
        once with 0)."""
        self._closing = True
        try:
            assert self._process.stdin is not None
            self._process.stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            if timeout:
                log.warning("the held-decision storer did not end within %.0f s; killing it", timeout)
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout or None)

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            log.warning("held decisions: the storing process %s; storing them in this process", reason)
            self.failure = reason
        self._changed.notify_all()

    def _read(self, replies: IO[bytes]) -> None:
        for line in replies:
            status, _, detail = line.rstrip(b"\n").partition(b"\t")
            if status == b"ok":
                self.on_stored(orjson.loads(detail))  # before the range counts as done
            with self._changed:
                if self._in_flight:
                    self._in_flight.popleft()
                if status != b"ok":
                    self._fail(f"failed: {detail.decode(errors='replace')}")
                self._changed.notify_all()
        replies.close()
        with self._changed:
            if self._closing:
                self.failure = self.failure or "closed"
                self._changed.notify_all()
            else:
                self._fail("ended unexpectedly")


def main(url: str) -> None:
    """The child: store each journal range named on standard input, answering on standard output
    ``ok`` and the ids stored, or ``error`` and why."""
    from fraudstream.storage.store import Store

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(NICE)
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # its wake-ups never preempt the loop
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # whatever else writes to standard output must not land among the answers
    store = Store(url)
    names: dict[str, list[str]] = {}  # feature sets' names, each written once per journal file
    try:
        for line in sys.stdin.buffer:
            try:
                path, start, end = line.decode().rstrip("\n").split("\t")
                with open(path, "rb") as journal:
                    journal.seek(int(start))
                    data = journal.read(int(end) - int(start))
                held = read_held(path, data, names)
                store.held.store_entries(held)
                answer = b"ok\t" + orjson.dumps([record.transaction_id for record, _ in held])
            except Exception as exc:  # answered, and the parent stores in-process from then on
                answer = b"error\t" + " ".join(f"{type(exc).__name__}: {exc}".split()).encode()
            replies.write(answer + b"\n")
    finally:
        store.close()
