"""Micro-batching for ``POST /v1/score``: concurrent requests are decided together.

Each request's own work (parsing, validation, the response) stays in the request; the scoring and
the storage write are done once for everything that arrived meanwhile, as one batch. At low load a
batch is one transaction and nothing waits; under load the fixed cost of a batch (feature lookups,
model calls, one commit) is shared. Batch-first: one transaction is a batch of one.

The batch runs on the event loop itself, as a callback scheduled by the first request that finds no
batch pending: every request read in the same turn of the loop has queued by then. A request that
arrives within ``max_wait`` of the previous batch's end (the service is under load) waits up to
``max_wait`` for company instead; by default nothing waits
(docs/decisions/0003-no-batching-wait-on-score.md). uvloop's timers count whole milliseconds, so a
wait below 0.5 ms is no wait under ``fraudstream serve``. Scoring stays on the loop rather than on a
thread or process of its own (docs/decisions/0002-score-on-the-event-loop.md).

A batch's decisions are stored before the feature state records them, and only the stored ones are
recorded; a batch that fails is decided again one request at a time, so one request that cannot be
decided or stored fails alone. A batch's decisions are committed, in one transaction, before any of
its answers is sent, on SQLite and PostgreSQL alike: an answered decision is a stored one. The batch is
the group commit: whatever arrives while one batch is decided and committed is decided and committed
together next (docs/decisions/0025-one-commit-per-micro-batch.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraudstream.api.metrics import ApiMetrics
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.decision import DecisionRecord, may_alert
from fraudstream.events.transaction import Transaction
from fraudstream.pipeline.scorer import ScoredBatch, Scorer
from fraudstream.storage.errors import BodyConflictError
from fraudstream.storage.rows import body_hash
from fraudstream.storage.store import Store
from fraudstream.worker.decided import decided_before

log = logging.getLogger(__name__)

#: The answer to one request: the decision, and whether it had been made before (a replayed id).
Outcome = tuple[DecisionRecord, bool]


class BatcherStopped(RuntimeError):
    """The service is shutting down and takes no more requests."""


@dataclass
class _Request:
    transaction: Transaction
    dry_run: bool
    future: asyncio.Future[Outcome]

    def resolve(self, outcome: Outcome | BaseException) -> None:
        if self.future.done():  # the client went away
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


class ScoreBatcher:
    """Decides queued score requests in batches of up to ``max_batch``, on the event loop; under load a
    batch waits up to ``max_wait`` seconds for more requests.

    Each batch's decisions are stored (:meth:`~fraudstream.storage.decisions.DecisionRepository.save`)
    in one commit before its answers; :meth:`stop` decides and stores what is queued.

    ``on_decided`` receives the newly stored decisions of each batch that can raise an alert (see
    :func:`~fraudstream.events.decision.may_alert`), as the worker hands them over; its errors are logged
    and never fail the requests. ``around_batch`` is entered around deciding and storing each batch
    (the API's start-up passes :func:`fraudstream._gc.paused_gc`).
    """

    def __init__(
        self,
        scorer: Scorer,
        store: Store,
        metrics: ApiMetrics,
        *,
        max_batch: int = 256,
        max_wait: float = 0.0,
        on_decided: Callable[[list[DecisionRecord]], None] | None = None,
        around_batch: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.scorer, self.store, self.metrics = scorer, store, metrics
        self.around_batch = around_batch
        self.max_batch, self.max_wait = max_batch, max_wait
        self.on_decided = on_decided
        self._pending: list[_Request] = []
        self._scheduled = False
        self._stopped = False
        self._ended = float("-inf")  # time.monotonic() when the last batch ended

    def stop(self) -> None:
        """Decide and store what is queued now, then refuse new requests."""
        self._stopped = True
        while self._pending:
            self._drain()

    async def submit(self, transaction: Transaction, *, dry_run: bool = False) -> Outcome:
        """Queue one transaction and wait for its decision."""
        if self._stopped:
            raise BatcherStopped("the service is shutting down")
        loop = asyncio.get_running_loop()
        request = _Request(transaction, dry_run, loop.create_future())
        self._pending.append(request)
        if not self._scheduled:
            self._scheduled = True
            if time.monotonic() - self._ended < self.max_wait:
                loop.call_later(self.max_wait, self._drain)
            else:
                loop.call_soon(self._drain)
        return await request.future

    def _drain(self) -> None:
        try:
            self._decide_pending()
        finally:
            self._ended = time.monotonic()

    def _decide_pending(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        if batch:
            self.metrics.score_batches.observe(len(batch))
        if self._pending and not self._stopped:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)
        with self.around_batch():
            for group in ([r for r in batch if r.dry_run], [r for r in batch if not r.dry_run]):
                if group:
                    self._decide(group)

    def _decide(self, requests: list[_Request]) -> None:
        try:
            if requests[0].dry_run:
                records = self._score(requests, record=False)
                for request, rec in zip(requests, records, strict=True):
                    request.resolve((rec, False))
            else:
                self._decide_and_store(requests)
        except Exception as error:
            if len(requests) > 1:  # nothing of the batch was stored or recorded: decide each alone
                log.warning(
                    "deciding a batch of %d requests failed (%s); deciding each alone", len(requests), error
                )
                for request in requests:
                    self._decide([request])
                return
            log.exception("deciding transaction %r failed", requests[0].transaction.transaction_id)
            requests[0].resolve(error)

    def _score(
        self,
        requests: list[_Request],
        *,
        record: bool,
        store: Callable[[list[DecisionRecord]], set[str]] | None = None,
    ) -> list[DecisionRecord]:
        """The requests' decisions; with ``store``, which stores records and returns the ids it stored,
        before the feature state records them (only the stored ones; none if it raises)."""
        started = time.perf_counter()
        batch = TransactionBatch.from_transactions([r.transaction for r in requests])
        names = self.scorer.engine.names  # the version is each scored batch's: a swap never splits one
        if store is None:
            records = self.scorer.score(batch, record=record).records(names)
        else:
            records = []

            def stored_rows(decided: ScoredBatch) -> np.ndarray:
                records.extend(decided.records(names))
                stored = store(records)
                return np.fromiter((r.transaction_id in stored for r in records), bool, len(records))

            self.scorer.score(batch, record=record, store=stored_rows)
        self.metrics.observe_scoring("sync", time.perf_counter() - started)
        return records

    def _decide_and_store(self, requests: list[_Request]) -> None:
        """Decide and store the requests' new transactions; answer a repeated id with its decision when it
        brings the same body, and with :class:`BodyConflictError` (409) when it brings another (one id,
        one body), including an id stored or being accepted through ``POST /v1/transactions`` with
        another body. Body hashes are computed only for repeated ids."""
        ids = [r.transaction.transaction_id for r in requests]
        known = decided_before(self.store, self.scorer.state, ids)
        first: dict[str, _Request] = {}
        for request, tx_id in zip(requests, ids, strict=True):
            if tx_id not in known:
                first.setdefault(tx_id, request)
        fresh = list(first.values())
        txs = [r.transaction for r in fresh]
        stored: set[str] = set()
        clashes: set[str] = set()  # known with another body: not decided here

        def store(records: list[DecisionRecord]) -> set[str]:
            stored.update(self.store.decisions.save(records, txs, clashes=clashes))
            return stored

        records = self._score(fresh, record=True, store=store) if fresh else []
        mine = {rec.transaction_id: rec for rec in records if rec.transaction_id in stored}
        self.metrics.count_decisions([rec.decision for rec in mine.values()])
        # decided before, or meanwhile by the worker: the stored decisions and bodies, a query each
        rest = [i for i in ids if i not in mine] if len(mine) < len(ids) else []
        earlier = self.store.decisions.get_many(rest) if rest else {}
        bodies = self.store.decisions.body_hashes([i for i in rest if i not in clashes]) if rest else {}
        for request, tx_id in zip(requests, ids, strict=True):
            original = first.get(tx_id)
            if tx_id in mine and original is request:
                request.resolve((mine[tx_id], False))
                continue
            if tx_id in clashes:
                request.resolve(BodyConflictError([tx_id]))
                continue
            # a repeat (within the batch, or of an id decided before) replays the decision, if same body
            expected = body_hash(original.transaction) if tx_id in mine and original else bodies.get(tx_id)
            if expected is not None and body_hash(request.transaction) != expected:
                request.resolve(BodyConflictError([tx_id]))
                continue
            existing = mine[tx_id] if tx_id in mine else earlier.get(tx_id)
            if existing is None:
                request.resolve(LookupError(f"decision for {tx_id!r} vanished"))
            else:
                request.resolve((existing, True))
        notable = [rec for rec in mine.values() if may_alert(rec.decision, rec.rules)]
        if notable and self.on_decided is not None:
            try:
                self.on_decided(notable)
            except Exception:
                log.exception("on_decided hook failed")
