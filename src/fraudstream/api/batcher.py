"""Micro-batching for ``POST /v1/score``: concurrent requests are decided together, off the event loop.

Each request's own work (reading, validating, answering) stays on the event loop; deciding is the
:class:`~fraudstream.pipeline.decider.Decider`'s, on a thread of its own, one batch at a time: the
event loop goes on reading requests, answering ``/health`` and the other routes while a batch is
decided or a database hangs. Whatever arrives while one batch is being decided is decided together
next, so the batch is the group commit: at low load a batch is one transaction and nothing waits;
under load the fixed cost of a batch (feature lookups, model calls, one commit) is shared
(docs/decisions/0025-one-commit-per-micro-batch.md). A request that arrives within ``max_wait`` of the
previous batch's end (the service is under load) waits up to ``max_wait`` for company; by default
nothing waits (docs/decisions/0003-no-batching-wait-on-score.md).

A batch's decisions are stored, in one transaction, before any of its answers is sent, on SQLite and
PostgreSQL alike: an answered decision is a stored one. A batch that fails is decided again one
request at a time, so one request that cannot be decided fails alone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any

from fraudstream.api.metrics import ApiMetrics
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.events.transaction import Transaction
from fraudstream.pipeline.decider import CONFLICT, NEW, Decider
from fraudstream.storage.errors import BodyConflictError

log = logging.getLogger(__name__)

#: The answer to one request: the decision, and whether it had been made before (a replayed id).
Outcome = tuple[DecisionRecord, bool]


class BatcherStopped(RuntimeError):
    """The service is shutting down and takes no more requests."""


_Job = tuple[list["_Request"], asyncio.AbstractEventLoop, "asyncio.Future[list[Outcome | BaseException]]"]


@dataclass
class _Request:
    transaction: Transaction
    dry_run: bool
    future: asyncio.Future[Outcome]


class ScoreBatcher:
    """Queues score requests and has ``decider`` decide them in batches of up to ``max_batch`` on its
    own thread; under load a batch waits up to ``max_wait`` seconds for more requests.

    ``around_batch`` is entered around deciding each batch (the API's start-up passes
    :func:`fraudstream._gc.paused_gc`). :meth:`stop` decides what is queued, then refuses new requests.
    """

    def __init__(
        self,
        decider: Decider,
        metrics: ApiMetrics,
        *,
        max_batch: int = 256,
        max_wait: float = 0.0,
        around_batch: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.decider, self.metrics = decider, metrics
        self.around_batch = around_batch
        self.max_batch, self.max_wait = max_batch, max_wait
        self._pending: list[_Request] = []
        self._busy = False  # a batch is scheduled or being decided
        self._stopped = False
        self._ended = float("-inf")  # time.monotonic() when the last batch ended
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="fraudstream-decider", daemon=True)
        self._running: asyncio.Future[list[Outcome | BaseException]] | None = None

    async def submit(self, transaction: Transaction, *, dry_run: bool = False) -> Outcome:
        """Queue one transaction and wait for its decision."""
        if self._stopped:
            raise BatcherStopped("the service is shutting down")
        loop = asyncio.get_running_loop()
        request = _Request(transaction, dry_run, loop.create_future())
        self._pending.append(request)
        if not self._busy:
            self._busy = True
            if time.monotonic() - self._ended < self.max_wait:
                loop.call_later(self.max_wait, self._start)
            else:
                loop.call_soon(self._start)
        return await request.future

    async def stop(self) -> None:
        """Decide what is queued now, then refuse new requests."""
        self._stopped = True
        while self._running is not None or self._pending:
            if self._running is not None:
                await asyncio.shield(self._running)
            elif self._pending:
                self._start()
        if self._thread.is_alive():
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)

    def _start(self) -> None:
        """Hand the next batch to the deciding thread; when it is done, answer it and start the next.
        A request whose client went away (or whose deadline passed) while it waited is left out."""
        waiting = [r for r in self._pending if not r.future.done()]
        batch, self._pending = waiting[: self.max_batch], waiting[self.max_batch :]
        if not batch:
            self._busy = False
            return
        self.metrics.score_batches.observe(len(batch))
        loop = asyncio.get_running_loop()
        running: asyncio.Future[list[Outcome | BaseException]] = loop.create_future()
        self._running = running
        if not self._thread.is_alive():
            self._thread.start()
        self._jobs.put((batch, loop, running))

        def done(finished: asyncio.Future[list[Outcome | BaseException]]) -> None:
            self._running = None
            self._ended = time.monotonic()
            error = finished.exception()
            outcomes = [error] * len(batch) if error is not None else finished.result()
            for request, outcome in zip(batch, outcomes, strict=True):
                _resolve(request.future, outcome)
            if self._pending:
                self._start()
            else:
                self._busy = False

        running.add_done_callback(done)

    def _serve(self) -> None:
        """The deciding thread: one batch at a time, its outcomes handed back to the batch's loop."""
        while (job := self._jobs.get()) is not None:
            requests, loop, running = job
            try:
                outcomes: list[Outcome | BaseException] | BaseException = self._decide_batch(requests)
            except BaseException as error:  # the waiting requests get it
                outcomes = error
            loop.call_soon_threadsafe(_settle, running, outcomes)

    def _decide_batch(self, requests: list[_Request]) -> list[Outcome | BaseException]:
        """On the deciding thread: the dry runs and the rest of the batch, each group decided together."""
        outcomes: list[Outcome | BaseException | None] = [None] * len(requests)
        with self.around_batch():
            for dry_run in (True, False):
                picked = [i for i, r in enumerate(requests) if r.dry_run is dry_run]
                if picked:
                    answers = self._decide([requests[i].transaction for i in picked], dry_run)
                    for i, answer in zip(picked, answers, strict=True):
                        outcomes[i] = answer
        return [o if o is not None else LookupError("not decided") for o in outcomes]

    def _decide(self, transactions: list[Transaction], dry_run: bool) -> list[Outcome | BaseException]:
        """The outcome of each transaction; when the batch fails as a whole, each is decided alone, so
        one request that cannot be decided fails alone."""
        try:
            return self._outcomes(transactions, dry_run)
        except Exception as error:
            if len(transactions) == 1:
                log.exception("deciding transaction %r failed", transactions[0].transaction_id)
                return [error]
            log.warning(
                "deciding a batch of %d requests failed (%s); deciding each alone", len(transactions), error
            )
            return [self._decide([t], dry_run)[0] for t in transactions]

    def _outcomes(self, transactions: list[Transaction], dry_run: bool) -> list[Outcome | BaseException]:
        batch = TransactionBatch.from_transactions(transactions)
        if dry_run:
            scored = self.decider.score(batch)
            self._observe(scored)
            return [(record, False) for record in scored.records()]
        decided = self.decider.decide(batch, transactions)
        if decided.new is not None:
            self._observe(decided.new)
            self.metrics.count_decisions(decided.new.decision.tolist())
        out: list[Outcome | BaseException] = []
        for row, (tx_id, status) in enumerate(zip(decided.ids, decided.status, strict=True)):
            record = decided.record(row)
            if status == CONFLICT:
                out.append(BodyConflictError([tx_id]))
            elif record is None:
                out.append(LookupError(f"decision for {tx_id!r} vanished"))
            else:
                first = status == NEW
                out.append((record, not first))
        return out

    def _observe(self, scored: DecisionColumns) -> None:
        """How long scoring the batch took (features, models, rules, explanations)."""
        self.metrics.observe_scoring("sync", scored.latency_ms.get("total", 0.0) / 1e3)


def _settle(
    running: asyncio.Future[list[Outcome | BaseException]],
    outcomes: list[Outcome | BaseException] | BaseException,
) -> None:
    if isinstance(outcomes, BaseException):
        running.set_exception(outcomes)
    else:
        running.set_result(outcomes)


def _resolve(future: asyncio.Future[Outcome], outcome: Outcome | BaseException) -> None:
    if future.done():  # the client went away
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
