"""The worker: consume a batch, score it, store the decisions, then acknowledge.

Acknowledging only after the decisions are stored makes delivery at-least-once; storing decisions
idempotently by ``transaction_id`` and recording feature state once per id makes the effect
exactly-once. A message that is not a valid transaction, that cannot be scored, or that brings another
body under an id already used (an id names one transaction), goes to the dead-letter table with its
reason and never stops the worker.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from fraudstream.brokers.base import Broker, BrokerError, Message
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.events.transaction import Transaction
from fraudstream.pipeline.scorer import ScoredBatch, Scorer
from fraudstream.state.base import StateError
from fraudstream.storage.errors import StorageError
from fraudstream.storage.store import Store
from fraudstream.worker.decided import decided_before, different_bodies
from fraudstream.worker.health import WorkerStats, write_health
from fraudstream.worker.messages import (
    PAYLOADS,
    alerting_rows,
    decision_message,
    decision_messages,
    describe_invalid,
    payload_text,
    transaction_text,
)

log = logging.getLogger(__name__)
TRANSACTIONS = "transactions"
RESULTS, DEAD_LETTERS = "decisions", "dead-letters"
OUTAGES = (StorageError, StateError, BrokerError)
"""Failures of what the worker depends on: the batch is handed back and retried, never dead-lettered."""
SUSPECT = 3
"""Deliveries after which a message is decided on its own: it was in a batch that killed or stalled a
worker twice. A batch delivered a second time (a worker restarted, a partition moved) is still decided
whole, which is what a deploy or a rebalance causes."""


def _invalid(error: Exception) -> str:
    """Why a message is not a transaction: the fields and reasons, or at least the error's type."""
    try:
        if isinstance(error, ValidationError):
            return describe_invalid(error)
        return f"invalid: {type(error).__name__}: {error}"
    except Exception:
        return f"invalid: {type(error).__name__}"


class Worker:
    """Scores transactions from a broker in batches of up to ``batch_size``, waiting at most ``max_wait``.

    ``around_batch`` is entered around the handling of each batch, and around the reading of the next
    while the worker is busy: the entry points pass :func:`fraudstream._gc.paused_gc`, so that a
    batch's short-lived objects are freed without the garbage collector walking them.
    """

    def __init__(
        self,
        broker: Broker,
        scorer: Scorer,
        store: Store,
        *,
        topic: str = TRANSACTIONS,
        batch_size: int = 500,
        max_wait: float = 0.2,
        on_scored: Callable[[ScoredBatch], None] | None = None,
        on_decided: Callable[[list[DecisionRecord]], None] | None = None,
        health_file: Path | None = None,
        results_topic: str | None = None,
        dead_letters_topic: str | None = None,
        max_deliveries: int = 5,
        around_batch: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.broker, self.scorer, self.store = broker, scorer, store
        self.around_batch = around_batch
        self.topic, self.batch_size, self.max_wait = topic, batch_size, max_wait
        self.on_scored, self.on_decided = on_scored, on_decided
        self.health_file = health_file
        self.results_topic, self.dead_letters_topic = results_topic, dead_letters_topic
        self.max_deliveries = max_deliveries
        self._mine: set[str] = set()  # stored by this worker in the current batch
        self._results: list[tuple[str, dict[str, Any]]] = []  # their messages for the results topic
        self._taken: list[str] = []
        self._clashed: set[str] = set()  # refused by the store: stored with another body
        self._dead_ids: list[str] = []
        self._written = 0.0
        self.stats = WorkerStats()
        self.stopping = threading.Event()
        self._busy = False  # the last read found messages
        self._in_flight: list[Message] = []  # taken and not yet acknowledged

    def run_once(self) -> int:
        """Process one batch; returns how many messages it handled (0 when the topic was empty)."""
        # Reading a batch makes as many objects as handling it, so a busy worker reads inside
        # ``around_batch`` too. An idle one waits outside it: a paused collector is paused for the whole
        # process, and the API serving requests beside an idle worker would otherwise never collect a cycle.
        self._in_flight = []
        with self.around_batch() if self._busy else nullcontext():
            messages = self.broker.consume(self.topic, self.batch_size, self.max_wait)
        self._in_flight, self._busy = messages, bool(messages)
        self.stats.heartbeat = time.time()
        if self.health_file is not None and self.stats.heartbeat - self._written >= 1.0:
            self._written = self.stats.heartbeat
            write_health(self.health_file, self.health())
        if not messages:
            return 0
        self.handle(messages)
        return len(messages)

    def handle(self, messages: list[Message]) -> None:
        """Decide one batch of delivered messages as the worker decides what it consumes: parse, skip
        what is already decided, score and store, publish the decisions and dead letters, acknowledge.

        Public for consumers that read the topic themselves (the Spark streaming job hands each
        micro-batch here). Handing the same messages again decides nothing twice and records no feature
        state twice; an outage (:data:`OUTAGES`) propagates with nothing acknowledged, to be retried.
        """
        with self.around_batch():
            self._handle(messages)
        self.stats.batches += 1

    def _handle(self, messages: list[Message]) -> None:
        """Parse, skip what is already decided, score and store, publish, then acknowledge.

        A transaction whose message has been delivered more than ``max_deliveries`` times without an
        ack has killed or stalled a worker each time: it goes to the dead letters instead of round
        again. So that only the one that does the killing goes, the :data:`SUSPECT` ones are decided
        one at a time after the rest (see :meth:`_score_suspects`). Decisions already stored are
        published again: the worker that stored them may have died before it published them; so are
        those another process (the API's synchronous path) stored while this batch was being scored,
        which count as duplicates too.
        """
        transactions, deliveries, dead = self._parse(messages)
        decided = self._decided_before(transactions, deliveries)
        first: dict[str, Transaction] = {}
        fewest: dict[str, int] = {}  # a copy delivered fewer times was published again since
        for t, count in zip(transactions, deliveries, strict=True):
            if t.transaction_id not in decided:
                first.setdefault(t.transaction_id, t)
                fewest[t.transaction_id] = min(count, fewest.get(t.transaction_id, count))
        fresh: dict[str, Transaction] = {}
        suspects: dict[str, int] = {}
        self._dead_ids = []
        for tx_id, t in first.items():
            count = fewest[tx_id]
            if count > self.max_deliveries:
                reason = f"delivered {count} times and never acknowledged: a worker died or stalled on it"
                dead.append((self.topic, transaction_text(t), reason))
                self._dead_ids.append(tx_id)
                continue
            fresh[tx_id] = t
            if count >= SUSPECT:
                suspects[tx_id] = count
        self.stats.duplicates += len(transactions) - len(fresh) - len(self._dead_ids)
        self._mine, self._results, self._taken, self._clashed = set(), [], [], set()
        dead += self._score([t for i, t in fresh.items() if i not in suspects])
        in_time_order = sorted((fresh[i] for i in suspects), key=lambda t: (t.timestamp, t.transaction_id))
        dead += self._score_suspects(in_time_order, max(suspects.values(), default=0))
        dead += self._other_bodies(transactions, fresh)
        if self._taken:
            taken = {i for i in self._taken if i not in self._mine}
            self.stats.duplicates += len(taken)
            decided |= taken
        again = (
            list(self.store.decisions.get_many(sorted(decided)).values())
            if decided and self.results_topic
            else []
        )
        self._publish_results(self._results + [(r.customer_id, decision_message(r)) for r in again], dead)
        if dead:  # last before the ack: an outage before it hands the batch back with none stored
            self.store.dead_letters.add(dead, self._dead_ids)
            self.stats.dead += len(dead)
        self.broker.ack(self.topic, messages)
        self._in_flight = []

    def _other_bodies(
        self, transactions: list[Transaction], fresh: dict[str, Transaction]
    ) -> list[tuple[str, str, str]]:
        """Dead letters for the messages that bring another body under an id already used (stored before,
        or from another message of this batch): an id names one transaction, and the first body
        keeps its decision. Only the messages not decided here are looked up."""
        refused = [t for t in fresh.values() if t.transaction_id in self._clashed]
        others = [
            t
            for t in transactions
            if fresh.get(t.transaction_id) is not t and t.transaction_id not in self._dead_ids
        ]
        repeated = different_bodies(self.store, others)
        self.stats.duplicates -= len(repeated)  # counted as duplicates above
        return [
            (
                self.topic,
                transaction_text(t),
                f"conflict: transaction_id {t.transaction_id!r} is already used by a transaction with a "
                "different body; an id names one transaction, so this one was not decided",
            )
            for t in refused + repeated
        ]

    def _decided_before(self, transactions: list[Transaction], deliveries: list[int]) -> set[str]:
        """Which transactions already have a stored decision; those about to be dead-lettered for too
        many deliveries are always looked up (see :func:`decided_before`)."""
        ids = [t.transaction_id for t in transactions]
        state = getattr(self.scorer, "state", None)  # a scorer without one always has ids looked up
        return decided_before(self.store, state, ids, also=[n > self.max_deliveries for n in deliveries])

    def _parse(
        self, messages: list[Message]
    ) -> tuple[list[Transaction], list[int], list[tuple[str, str, str]]]:
        """The valid transactions with their delivery counts, and the dead letters of the rest. The
        batch is validated in one call; only an invalid message is validated again on its own, for
        its dead letter to say what is wrong with it. Whatever a message holds, this never raises."""
        try:
            parsed = PAYLOADS.validate_python([m.payload for m in messages])
        except Exception:  # validation itself failed: each message on its own, below
            parsed = [None] * len(messages)
        if all(isinstance(t, Transaction) for t in parsed):
            return parsed, [m.deliveries for m in messages], []
        good, deliveries, dead = [], [], []
        for m, t in zip(messages, parsed, strict=True):
            try:
                good.append(t if isinstance(t, Transaction) else Transaction.model_validate(m.payload))
                deliveries.append(m.deliveries)
            except Exception as error:
                dead.append((self.topic, payload_text(m.payload), _invalid(error)))
        return good, deliveries, dead

    def _score_suspects(self, transactions: list[Transaction], deliveries: int) -> list[tuple[str, str, str]]:
        """Decide and store these one at a time, in the order given (the same on every delivery, which
        the brokers' order across partitions is not); on an even delivery the first goes last.

        If one of them kills the worker, those before it are decided on one delivery, and it is first of
        those left on the next, which decides those after it before trying it again. So by the time it
        has been delivered more than ``max_deliveries`` times it goes to the dead letters alone (with
        ``max_deliveries`` of 4 or more), and the others are decided in their own order.
        """
        order = transactions[1:] + transactions[:1] if deliveries % 2 == 0 else transactions
        dead: list[tuple[str, str, str]] = []
        for t in order:
            dead += self._score([t])
        return dead

    def _score(self, transactions: list[Transaction]) -> list[tuple[str, str, str]]:
        if not transactions:
            return []
        try:
            self._score_and_store(transactions)
            return []
        except OUTAGES:
            raise  # the database, Redis or the broker, not the message: retried by run() once it is back
        except Exception as error:  # a poison message must not stop the worker: isolate it
            if len(transactions) == 1:
                log.exception("cannot score transaction %s", transactions[0].transaction_id)
                self._dead_ids.append(transactions[0].transaction_id)
                reason = f"unscoreable: {type(error).__name__}: {error}"
                return [(self.topic, transaction_text(transactions[0]), reason)]
        middle = len(transactions) // 2
        return self._score(transactions[:middle]) + self._score(transactions[middle:])

    def _score_and_store(self, transactions: list[Transaction]) -> None:
        scored = self.scorer.score(TransactionBatch.from_transactions(transactions))
        columns = scored.columns(self.scorer.engine.names)
        clashes: set[str] = set()
        stored = set(self.store.decisions.save(columns, transactions, clashes=clashes))
        ids = columns.transaction_id.tolist()
        if len(stored) < len(ids):  # decided meanwhile by another process (its decision stands), or clashing
            self._taken += [i for i in ids if i not in stored and i not in clashes]
            self._clashed |= clashes
            columns = columns.take([k for k, i in enumerate(ids) if i in stored])
        self._mine.update(stored)
        if self.results_topic:
            self._results += zip(columns.customer_id.tolist(), decision_messages(columns), strict=True)
        self.stats.decided += len(stored)
        if self.on_scored:
            self.on_scored(scored)
        self._hand_over(columns)

    def _hand_over(self, columns: DecisionColumns) -> None:
        """Give ``on_decided`` (alerts) the newly stored decisions that can raise an alert: every FLAG
        and BLOCK, and every decision a rule fired on. An APPROVE no rule touched cannot, and making a
        record of each (98 % of them) cost more than the alerts. Its errors never stop the worker."""
        hook = self.on_decided
        notable = alerting_rows(columns)
        if hook is None or not notable:
            return
        try:
            hook(columns.take(notable).records())
        except Exception:
            log.exception("on_decided hook failed for %d decisions", len(notable))

    def _publish_results(
        self, results: list[tuple[str, dict[str, Any]]], dead: list[tuple[str, str, str]]
    ) -> None:
        """Stored decisions (keyed by customer) and dead letters to their topics, for other processes
        to subscribe to."""
        if self.results_topic and results:
            self.broker.publish(self.results_topic, results)
        if self.dead_letters_topic and dead:
            letters = [(None, {"topic": t, "payload": p, "reason": r}) for t, p, r in dead]
            self.broker.publish(self.dead_letters_topic, letters)

    def run(self, *, burst: bool = False) -> WorkerStats:
        """Loop until :meth:`stop` or SIGTERM/SIGINT (with handlers installed); ``burst`` stops when idle."""
        backoff = 0.0
        while not self.stopping.is_set():
            try:
                handled = self.run_once()
                backoff = 0.0
            except OUTAGES as error:  # a passing outage must not end the worker
                backoff = min(max(2 * backoff, 0.1), 10.0)
                self.stats.errors += 1
                log.warning("worker: %s; retrying in %.1f s", error, backoff)
                self._release()
                self.stopping.wait(backoff)
                continue
            if handled == 0 and burst:
                break
        return self.stats

    def _release(self) -> None:
        """Hand the batch that failed back to the broker, to come round again once the outage passes."""
        messages, self._in_flight = self._in_flight, []
        if not messages:
            return
        try:
            self.broker.release(self.topic, messages)
        except OUTAGES as error:  # they still come back by the broker's own redelivery
            log.warning("worker: cannot hand %d messages back: %s", len(messages), error)

    def stop(self, *_: Any) -> None:
        """Finish the current batch, then return from :meth:`run`."""
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: finishing the current batch", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def health(self, stale_after: float = 30.0) -> dict[str, Any]:
        """Alive when the loop has beaten within ``stale_after`` seconds."""
        return self.stats.health(stopping=self.stopping.is_set(), stale_after=stale_after)
