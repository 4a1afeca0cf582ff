"""The background sender of event webhooks, in every ``serve`` and ``worker`` process.

Nothing here runs on the decision path: events are in the database already (see
:mod:`fraudstream.storage.webhooks` for how they get there and what a crash leaves), and
:class:`WebhookDispatcher`'s threads only read them. Every ``FRAUD_WEBHOOK_POLL_SECONDS`` one thread
turns newly stored decisions into ``decision.created`` events and groups new FLAGs, HOLDs and BLOCKs into
cases (``case.opened``), when an endpoint subscribes to them; each of ``FRAUD_WEBHOOK_SENDERS``
threads claims due deliveries, posts them, and records each attempt. Several processes share the
work safely: a delivery has one claimer at a time.

A failed attempt (no answer within ``FRAUD_WEBHOOK_TIMEOUT_SECONDS``, an answer other than 2xx, a
redirect, which is never followed) is tried again after ``FRAUD_WEBHOOK_BACKOFF_SECONDS``, doubled
each time up to ``FRAUD_WEBHOOK_MAX_BACKOFF_SECONDS``; after ``FRAUD_WEBHOOK_MAX_ATTEMPTS`` attempts,
or once the next would come later than ``FRAUD_WEBHOOK_MAX_AGE_SECONDS`` after the delivery was
queued, it is marked failed. When an endpoint does not answer at all, the other deliveries to it in
the same round wait for the failed one's next attempt untried, so a dead endpoint costs one timeout a
round rather than one per delivery.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Self

import httpx

from fraudstream import __version__
from fraudstream.config import Settings
from fraudstream.events.webhook import CASE_OPENED
from fraudstream.storage.store import Store
from fraudstream.storage.webhooks import DELIVERED, FAILED, MARGIN, PENDING, Claimed, Outcome
from fraudstream.webhooks.signing import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)

log = logging.getLogger(__name__)

#: Deliveries one sender claims at a time.
BATCH = 20
#: How much of an endpoint's answer is kept in the log when it is not a success.
ANSWER_KEPT = 300
#: How often the deliveries that ended more than FRAUD_WEBHOOK_RETENTION_DAYS ago are deleted (seconds).
TRIM_EVERY = 3600.0
#: How far behind the newest decision followed each pass looks again for decisions committed late; every
#: LOOK_BACK_EVERY seconds a pass looks back the store's whole margin instead. A pass reads every decision
#: of the span it looks back over, which at hundreds of decisions a second is most of its cost.
RECENT = timedelta(seconds=10)
LOOK_BACK_EVERY = 60.0


@dataclass(frozen=True)
class Retry:
    """When a failed delivery is tried again, and when it is given up."""

    backoff: float = 10.0
    max_backoff: float = 3600.0
    max_attempts: int = 16
    max_age: float = 86_400.0

    def wait(self, attempt: int) -> float:
        """Seconds after failed attempt number ``attempt`` (from 1) before the next: doubling, capped."""
        return float(min(self.backoff * 2 ** min(attempt - 1, 60), self.max_backoff))

    def after_failure(self, attempt: int, queued: datetime, now: datetime) -> datetime | None:
        """When to try again after failed attempt ``attempt`` of a delivery queued at ``queued``;
        ``None``: give up (attempts used up, or the next would come past the maximum age)."""
        then = now + timedelta(seconds=self.wait(attempt))
        if attempt >= self.max_attempts or then > queued + timedelta(seconds=self.max_age):
            return None
        return then


@dataclass(frozen=True)
class Posted:
    """What one attempt met: the answer's status code (``None``: no answer), the error, how long."""

    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def answered(self) -> bool:
        return self.status_code is not None


def post(
    client: httpx.Client, claimed: Claimed, attempt: int, now: Callable[[], float] = time.time
) -> Posted:
    """Post ``claimed``'s event once, signed now; a 2xx is a success, anything else an error saying
    what came back (a redirect is never followed)."""
    timestamp = int(now())
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(claimed.secret, timestamp, claimed.body),
        EVENT_ID_HEADER: claimed.event_id,
        EVENT_TYPE_HEADER: claimed.event_type,
        DELIVERY_HEADER: str(claimed.id),
        ATTEMPT_HEADER: str(attempt),
    }
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        with client.stream("POST", claimed.url, content=claimed.body, headers=headers) as response:
            status = response.status_code
            if response.is_redirect:
                where = response.headers.get("location", "")[:200]
                error = f"HTTP {status}: a redirect (to {where!r}), which is not followed"
            elif not response.is_success:
                error = f"HTTP {status}: {_start_of(response)}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:ANSWER_KEPT] or type(exc).__name__
    return Posted(status, error, (time.perf_counter() - started) * 1000)


def _start_of(response: httpx.Response) -> str:
    """The first few hundred characters of an answer, on one line, without reading the rest."""
    chunk = b""
    for part in response.iter_bytes():
        chunk += part
        if len(chunk) >= ANSWER_KEPT:
            break
    return " ".join(chunk[:ANSWER_KEPT].decode(errors="replace").split())


class WebhookDispatcher:
    """Follows new decisions and cases into events and delivers every due event; see the module.

    :meth:`follow` and :meth:`deliver` are one pass of each, which the threads started by :meth:`start`
    repeat; :meth:`close` stops them (a delivery in flight is settled first, or posted again later).
    """

    def __init__(
        self,
        store: Store,
        *,
        outcomes: Sequence[str] | None = ("FLAG", "CHALLENGE", "HOLD", "BLOCK"),
        group_by: str = "customer_id",
        retry: Retry | None = None,
        timeout: float = 10.0,
        poll: float = 1.0,
        senders: int = 2,
        retention_days: float = 30.0,
    ) -> None:
        self.store = store
        self.outcomes = outcomes
        self.group_by = group_by
        self.retry = retry or Retry()
        self.timeout = timeout
        self.poll = poll
        self.senders = senders
        self.retention = timedelta(days=retention_days)
        self.name = f"{socket.gethostname()[:40]}:{os.getpid()}"
        self._client = httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": f"fraudstream-webhooks/{__version__}"},
        )
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._trimmed = 0.0
        self._looked_back = 0.0
        self._failing: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, store: Store) -> WebhookDispatcher:
        return cls(
            store,
            outcomes=settings.webhook_outcomes,
            group_by=settings.case_group_by,
            retry=Retry(
                backoff=settings.webhook_backoff_seconds,
                max_backoff=settings.webhook_max_backoff_seconds,
                max_attempts=settings.webhook_max_attempts,
                max_age=settings.webhook_max_age_seconds,
            ),
            timeout=settings.webhook_timeout_seconds,
            poll=settings.webhook_poll_seconds,
            senders=settings.webhook_senders,
            retention_days=settings.webhook_retention_days,
        )

    def start(self) -> Self:
        for index in range(self.senders):
            thread = threading.Thread(
                target=self._run, args=(index,), name=f"fraudstream-webhooks-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll (after a replay, say)."""
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._client.close()

    # -- one pass of each ------------------------------------------------------------------------

    def follow(self) -> int:
        """Emit ``decision.created`` for the decisions stored since the last pass, and group new FLAGs
        and BLOCKs into cases (emitting ``case.opened``), for the endpoints subscribed; how many
        decisions became events. A decision committed more than :data:`RECENT` after it was made is
        found by the pass that looks back further, every :data:`LOOK_BACK_EVERY` seconds."""
        endpoints = self.store.webhooks.subscribers()
        if not endpoints:
            return 0
        margin = RECENT
        if time.monotonic() - self._looked_back >= LOOK_BACK_EVERY or not self._looked_back:
            self._looked_back, margin = time.monotonic(), MARGIN
        followed = self.store.webhooks.follow_decisions(self.outcomes, margin)
        if any(e.subscribes(CASE_OPENED) for e in endpoints):
            self.store.cases.sync(self.group_by)
        return followed

    def deliver(self, consumer: str | None = None, limit: int = BATCH) -> int:
        """Claim up to ``limit`` due deliveries, post them and record what became of each; how many were
        claimed."""
        consumer = consumer or f"{self.name}-0"
        lease = limit * (self.timeout + 5) + 60
        claimed = self.store.webhooks.claim(consumer, limit, lease)
        if not claimed:
            return 0
        outcomes: list[Outcome] = []
        down: dict[int, datetime] = {}  # endpoints that did not answer this round → their next attempt
        for delivery in claimed:
            outcomes.append(self._attempt(delivery, down))
        self.store.webhooks.settle(consumer, outcomes)
        return len(claimed)

    def _attempt(self, delivery: Claimed, down: dict[int, datetime]) -> Outcome:
        now = datetime.now(UTC)
        if now > delivery.created_at + timedelta(seconds=self.retry.max_age):
            error = f"not delivered within {self.retry.max_age:g} s of being queued (the maximum age)"
            return Outcome(delivery.id, FAILED, error=error)
        if delivery.endpoint_id in down:  # it did not answer this round: wait with the one that failed
            return Outcome(delivery.id, PENDING, next_attempt_at=down[delivery.endpoint_id])
        attempt = delivery.attempts + 1
        posted = post(self._client, delivery, attempt)
        tried = Outcome(
            delivery.id, DELIVERED, attempt=attempt, attempted_at=now, status_code=posted.status_code,
            error=posted.error, duration_ms=posted.duration_ms,
        )  # fmt: skip
        if posted.ok:
            return tried
        then = self.retry.after_failure(attempt, delivery.created_at, datetime.now(UTC))
        if not posted.answered:
            down[delivery.endpoint_id] = then or datetime.now(UTC) + timedelta(seconds=self.retry.wait(1))
        if then is None:
            log.warning("webhooks: gave up delivering %s to %s after %d attempts: %s",
                        delivery.event_id, delivery.url, attempt, posted.error)  # fmt: skip
            return replace(tried, status=FAILED)
        return replace(tried, status=PENDING, next_attempt_at=then)

    def trim(self) -> int:
        """Delete what ended more than the retention ago; how many deliveries went."""
        return self.store.webhooks.trim(datetime.now(UTC) - self.retention)

    # -- the threads -----------------------------------------------------------------------------

    def _run(self, index: int) -> None:
        consumer = f"{self.name}-{index}"
        while not self._stopping.is_set():
            full = False
            try:
                if index == 0:
                    self.follow()
                    if time.monotonic() - self._trimmed > TRIM_EVERY or not self._trimmed:
                        self._trimmed = time.monotonic()
                        self.trim()
                full = self.deliver(consumer) == BATCH
                self._failing = None
            except Exception as exc:  # the database is down, say: say so once, and go on polling
                message = f"{type(exc).__name__}: {exc}"
                if message != self._failing:
                    log.warning("webhooks: %s; retrying every %.1f s", message, self.poll)
                    self._failing = message
            if not full:
                self._wake.wait(self.poll)
                self._wake.clear()


__all__ = ["BATCH", "Posted", "Retry", "WebhookDispatcher", "post"]
