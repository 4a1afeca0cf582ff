"""The hold sweep: held payments that waited too long get the default outcome.

Every ``serve`` and ``worker`` process runs one :class:`HoldSweep` on a background thread. Every
``FRAUD_HOLD_SWEEP_SECONDS`` it groups the decisions stored since the last look into cases (so a new
HOLD joins its customer's case without waiting for an analyst to open the queue), then gives
``FRAUD_HOLD_DEFAULT`` to every hold still pending ``FRAUD_HOLD_TIMEOUT_SECONDS`` after it was made.

The timeout runs on the wall clock, not on the transactions' own times: it is about a payment
waiting in real time for somebody to look at it, and a replay of last year's data must not release
its holds at once. Several processes may sweep at once: each hold is resolved by one conditional
update of pending rows, so exactly one of them resolves it (see :mod:`fraudstream.storage.holds`).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from fraudstream.config import Settings
from fraudstream.storage.holds import SWEEP_CHUNK, Hold
from fraudstream.storage.store import Store

log = logging.getLogger(__name__)


class HoldSweep:
    """Resolves timed-out holds of ``store`` every ``settings.hold_sweep_seconds`` until stopped.

    :meth:`sweep` runs one pass (the thread calls it; so can a test or a command). The holds it
    resolves emit ``hold.resolved`` webhook events (see :mod:`fraudstream.storage.holds`). A pass
    that fails (the database away) is logged and the next one tries again."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.timeout = timedelta(seconds=settings.hold_timeout_seconds)
        self.outcome = settings.hold_default
        self.interval = settings.hold_sweep_seconds
        self.group_by = settings.case_group_by
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> list[Hold]:
        """One pass: group new decisions into cases, then resolve every timed-out hold (in chunks);
        the holds this process resolved."""
        self.store.cases.sync(self.group_by)
        done: list[Hold] = []
        while True:
            chunk = self.store.holds.expire(self.timeout, self.outcome, limit=SWEEP_CHUNK)
            done += chunk
            if len(chunk) < SWEEP_CHUNK:
                break
        if done:
            log.info("holds: %d timed out and got %s", len(done), self.outcome)
        return done

    def start(self) -> HoldSweep:
        """Sweep now and every interval on a daemon thread, until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fraudstream-hold-sweep", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:  # the database away: the next pass tries again
                log.exception("holds: the sweep failed; retrying in %.0f s", self.interval)
            self._stop.wait(self.interval)
