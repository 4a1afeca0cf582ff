"""Background alert delivery: scoring hands decisions over and never waits for a channel.

:meth:`AlertDispatcher.submit` only puts a batch on a queue. One thread detects alerts and stores
them (``pending``) before any delivery, then hands them to one thread per channel, so a channel that
is down retries on its own thread with exponential backoff while the others deliver. Every attempt is
recorded; an alert ends ``delivered`` when every channel took it and ``failed`` when one gave up. At
start-up the pending alerts of an earlier run are sent again, on the channels that did not take them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Self

from fraudstream.alerts.base import MAX_PER_MESSAGE, Channel
from fraudstream.alerts.detect import AlertDetector
from fraudstream.events.alert import DELIVERED, FAILED, PENDING, STORED, Alert, DeliveryAttempt
from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.storage.store import Store

log = logging.getLogger(__name__)
_POLL = 0.2
#: Detection gathers what arrives for this long after the first batch, so at hundreds of scored
#: batches a second it runs a few times a second (one history query each), not once per batch.
_LINGER = 0.1


@dataclass(frozen=True)
class Retry:
    """Attempts per alert and channel, and the waits between them: ``backoff * 2**n``, capped."""

    attempts: int = 5
    backoff: float = 2.0
    max_backoff: float = 60.0

    def wait(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))


class AlertDispatcher:
    """Detects, stores and delivers alerts on background threads; see the module docstring.

    With no channels, alerts are still detected and stored (status ``stored``) so the API and the
    dashboard can list them. Call :meth:`start` once, :meth:`close` at shutdown.
    """

    def __init__(
        self,
        store: Store,
        detector: AlertDetector,
        channels: Iterable[Channel] = (),
        *,
        retry: Retry | None = None,
        sleep: Callable[[threading.Event, float], bool] | None = None,
    ) -> None:
        self.store, self.detector = store, detector
        self.channels = {channel.name: channel for channel in channels}
        self.retry = retry or Retry()
        self._sleep = sleep or (lambda event, seconds: event.wait(seconds))
        self._intake: queue.SimpleQueue[DecisionColumns | list[DecisionRecord] | list[Alert]] = (
            queue.SimpleQueue()
        )
        self._outboxes: dict[str, queue.SimpleQueue[list[Alert]]] = {
            n: queue.SimpleQueue() for n in self.channels
        }
        self._remaining: dict[int, set[str]] = {}
        self._failed: set[int] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._work = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, *, resume: bool = True) -> Self:
        """Start the threads; with ``resume``, queue the pending alerts of earlier runs first."""
        if resume and self.channels:
            self._resume()
        targets = [("fraudstream-alerts", self._detect_loop)] + [
            (f"fraudstream-alerts-{name}", lambda n=name: self._deliver_loop(n)) for name in self.channels
        ]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def submit(self, decided: DecisionColumns | list[DecisionRecord]) -> None:
        """Hand over newly stored decisions; returns at once (the decider's ``on_decided``): they become
        records on the detecting thread, not on the one that decided them."""
        if len(decided) and not self._stopping.is_set():
            self._add_work(1)
            self._intake.put(decided if isinstance(decided, DecisionColumns) else list(decided))

    def raise_alerts(self, alerts: list[Alert]) -> None:
        """Hand over alerts raised elsewhere (drift monitoring) to be stored and delivered like the
        detected ones; returns at once. The caller de-duplicates them."""
        if alerts and not self._stopping.is_set():
            self._add_work(1)
            self._intake.put(list(alerts))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted is stored and delivered (or given up); whether it was."""
        with self._idle:
            return self._idle.wait_for(lambda: self._work == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Finish queued work for up to ``timeout`` seconds, then stop; unfinished alerts stay pending."""
        self.flush(timeout)
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        for channel in self.channels.values():
            channel.close()

    # -- internals -------------------------------------------------------------------------------

    def _add_work(self, n: int) -> None:
        with self._idle:
            self._work += n
            if self._work <= 0:
                self._idle.notify_all()

    def _resume(self) -> None:
        settled: list[int] = []
        todo: dict[str, list[Alert]] = {name: [] for name in self.channels}
        for alert, done in self.store.alerts.pending():
            assert alert.id is not None
            missing = set(self.channels) - done
            if not missing:
                settled.append(alert.id)
                continue
            self._remaining[alert.id] = missing
            for name in missing:
                todo[name].append(alert)
        for name, alerts in todo.items():
            self._enqueue(name, alerts)
        if settled:
            self.store.alerts.set_status(settled, DELIVERED)
        if self._remaining:
            log.info("alerts: resuming delivery of %d pending alerts", len(self._remaining))

    def _enqueue(self, name: str, alerts: list[Alert]) -> None:
        if alerts:
            self._add_work(len(alerts))
            self._outboxes[name].put(alerts)

    def _detect_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._intake.get(timeout=_POLL)
            except queue.Empty:
                continue
            batches = [first]
            self._stopping.wait(_LINGER)
            while True:
                try:
                    batches.append(self._intake.get_nowait())
                except queue.Empty:
                    break
            try:
                self._detect([r for batch in batches for r in _items(batch)])
            except Exception:  # never let one bad batch stop alerting
                log.exception("alerts: detection or storage failed for %d batches", len(batches))
            finally:
                self._add_work(-len(batches))

    def _detect(self, items: list[DecisionRecord | Alert]) -> None:
        raised = [a for a in items if isinstance(a, Alert)]
        records = [r for r in items if not isinstance(r, Alert)]
        alerts = (self.detector.detect(records) if records else []) + raised
        if not alerts:
            return
        for alert in alerts:
            alert.status = PENDING if self.channels else STORED
        self.store.alerts.save(alerts)
        log.info("alerts: %d raised (%s)", len(alerts), ", ".join(sorted({a.kind for a in alerts})))
        with self._lock:
            for alert in alerts:
                assert alert.id is not None
                self._remaining[alert.id] = set(self.channels)
        for name in self.channels:
            self._enqueue(name, alerts)

    def _deliver_loop(self, name: str) -> None:
        outbox = self._outboxes[name]
        while not self._stopping.is_set():
            try:
                first = outbox.get(timeout=_POLL)
            except queue.Empty:
                continue
            alerts = list(first)
            while True:
                try:
                    alerts += outbox.get_nowait()
                except queue.Empty:
                    break
            for lo in range(0, len(alerts), MAX_PER_MESSAGE):
                chunk = alerts[lo : lo + MAX_PER_MESSAGE]
                try:
                    ok = self._deliver(name, chunk)
                    if ok is not None:
                        self._settle(name, chunk, ok)
                except Exception:
                    log.exception("alerts: delivering %d alerts on %s failed", len(chunk), name)
                finally:
                    self._add_work(-len(chunk))

    def _deliver(self, name: str, alerts: list[Alert]) -> bool | None:
        """Try up to ``retry.attempts`` times; ``None`` when stopped midway (the alerts stay pending)."""
        channel = self.channels[name]
        for attempt in range(1, self.retry.attempts + 1):
            error: str | None = None
            try:
                channel.send(alerts)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:1000]
            self.store.alerts.record_deliveries(
                [DeliveryAttempt(a.id or 0, name, attempt, error is None, error) for a in alerts]
            )
            if error is None:
                return True
            if attempt == self.retry.attempts:
                log.warning("alerts: %s gave up on %d alerts after %d attempts: %s",
                            name, len(alerts), attempt, error)  # fmt: skip
                return False
            wait = self.retry.wait(attempt)
            log.info("alerts: %s attempt %d failed (%s); retrying in %.1f s", name, attempt, error, wait)
            if self._sleep(self._stopping, wait):
                return None
        return False

    def _settle(self, name: str, alerts: list[Alert], ok: bool) -> None:
        finished: dict[str, list[int]] = {DELIVERED: [], FAILED: []}
        with self._lock:
            for alert in alerts:
                assert alert.id is not None
                remaining = self._remaining.get(alert.id)
                if remaining is None:
                    continue
                remaining.discard(name)
                if not ok:
                    self._failed.add(alert.id)
                if not remaining:
                    del self._remaining[alert.id]
                    failed = alert.id in self._failed
                    self._failed.discard(alert.id)
                    finished[FAILED if failed else DELIVERED].append(alert.id)
        for status, ids in finished.items():
            if ids:
                self.store.alerts.set_status(ids, status)


def _items(batch: DecisionColumns | list[DecisionRecord] | list[Alert]) -> list[DecisionRecord] | list[Alert]:
    return batch.records() if isinstance(batch, DecisionColumns) else batch
