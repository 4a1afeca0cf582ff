"""The worker: consume a batch, have the decider decide it, publish, then acknowledge.

Acknowledging only after the decider has stored and recorded a batch makes delivery at-least-once; the
decider storing decisions idempotently by ``transaction_id`` and recording feature state once per id
makes the effect exactly-once. A message that is not a valid transaction, that cannot be scored, or
that brings another body under an id already used (an id names one transaction), goes to the
dead-letter table with its reason and never stops the worker.

Workers decide batches in the broker's order where it keeps one: before deciding, a worker waits
until the messages delivered to other workers before its batch are acknowledged, and hands its batch
back when one of them can only come again (its worker died), so that one is decided first
(:meth:`~fraudstream.brokers.base.Broker.earlier_done`). With the feature state's turn, each batch is
then decided on the events of every message before it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from fraudstream.brokers.base import Broker, BrokerError, Message, Undecodable
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.decision import DecisionColumns
from fraudstream.events.mapping import MappedEventError
from fraudstream.events.transaction import Transaction
from fraudstream.pipeline.decider import CONFLICT, DUPLICATE, Decider
from fraudstream.pipeline.intake import Intake
from fraudstream.state.base import StateError
from fraudstream.storage.decisions import Known
from fraudstream.storage.errors import StorageError
from fraudstream.storage.store import Store
from fraudstream.worker.health import WorkerStats, write_health
from fraudstream.worker.messages import (
    PAYLOADS,
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
DeadLetter = tuple[str, str, str, str | None]
"""A message for the dead letters: its topic, its payload as text, why, and its transaction id if any."""
SUSPECT = 3
"""Deliveries after which a message is decided on its own: it was in a batch that killed or stalled a
worker twice. A batch delivered a second time (a worker restarted, a partition moved) is still decided
whole, which is what a deploy or a rebalance causes."""


def _invalid(error: Exception) -> str:
    """Why a message is not a transaction: the fields and reasons, or at least the error's type."""
    try:
        if isinstance(error, ValidationError):
            return describe_invalid(error)
        if isinstance(error, MappedEventError):
            return error.describe()
        return f"invalid: {type(error).__name__}: {error}"
    except Exception:
        return f"invalid: {type(error).__name__}"


class Worker:
    """Decides transactions from a broker in batches of up to ``batch_size``, waiting at most ``max_wait``.

    What a batch's transactions become is the :class:`~fraudstream.pipeline.decider.Decider`'s to say
    (its order of steps, and what a crash between them leaves); the worker consumes, parses, keeps a
    message that kills workers from taking its batch down with it, publishes and acknowledges.
    ``store`` keeps the dead letters. ``around_batch`` is entered around the handling of each batch,
    and around the reading of the next while the worker is busy: the entry points pass
    :func:`fraudstream._gc.paused_gc`, so that a batch's short-lived objects are freed without the
    garbage collector walking them.
    """

    def __init__(
        self,
        broker: Broker,
        decider: Decider,
        store: Store,
        *,
        topic: str = TRANSACTIONS,
        batch_size: int = 500,
        max_wait: float = 0.2,
        on_scored: Callable[[DecisionColumns], None] | None = None,
        health_file: Path | None = None,
        results_topic: str | None = None,
        dead_letters_topic: str | None = None,
        max_deliveries: int = 5,
        around_batch: Callable[[], AbstractContextManager[Any]] = nullcontext,
        intake: Intake | None = None,
    ) -> None:
        self.broker, self.decider, self.store = broker, decider, store
        self.intake = intake
        self.around_batch = around_batch
        self.topic, self.batch_size, self.max_wait = topic, batch_size, max_wait
        self.on_scored = on_scored
        self.health_file = health_file
        self.results_topic, self.dead_letters_topic = results_topic, dead_letters_topic
        self.max_deliveries = max_deliveries
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
        """Decide one batch of delivered messages as the worker decides what it consumes: parse, decide
        (the decider de-duplicates, stores and records), publish the decisions and dead letters,
        acknowledge.

        Public for consumers that read the topic themselves (the Spark streaming job hands each
        micro-batch here). Handing the same messages again decides nothing twice and records no feature
        state twice; an outage (:data:`OUTAGES`) propagates with nothing acknowledged, to be retried.
        """
        with self.around_batch():
            self._handle(messages)
        self.stats.batches += 1

    def _handle(self, messages: list[Message]) -> None:
        """Parse, decide, publish, then acknowledge.

        A transaction whose message has been delivered more than ``max_deliveries`` times without an
        ack has killed or stalled a worker each time: unless it was decided meanwhile, it goes to the
        dead letters instead of round again. So that only the one that does the killing goes, the
        :data:`SUSPECT` ones are decided one at a time after the rest (see :meth:`_decide_suspects`).
        Duplicates (decided before, by this worker before it died or by another process) are published
        again with their stored decision: the worker that stored them may have died before publishing.
        """
        transactions, deliveries, dead = self._parse(messages)
        if not self.broker.earlier_done(self.topic, messages):  # they come first: read again
            self.broker.release(self.topic, messages)
            self._in_flight = []
            return
        fewest: dict[str, int] = {}  # a copy delivered fewer times was published again since
        for t, count in zip(transactions, deliveries, strict=True):
            fewest[t.transaction_id] = min(count, fewest.get(t.transaction_id, count))
        # Storage is asked about the messages delivered over and over (rare): one decided meanwhile is
        # a duplicate, neither a dead letter nor a suspect.
        again = [
            t.transaction_id
            for t in transactions
            if fewest[t.transaction_id] >= min(SUSPECT, self.max_deliveries + 1)
        ]
        known = self.decider.ledger.known(again) if again else {}
        decided_before = {i for i, k in known.items() if k.decided}
        results: list[tuple[str, dict[str, Any]]] = []
        normal: list[Transaction] = []
        suspects: list[Transaction] = []
        for t in transactions:
            count = fewest[t.transaction_id]
            if t.transaction_id in decided_before or (count < SUSPECT and count <= self.max_deliveries):
                normal.append(t)
            elif count > self.max_deliveries:
                reason = f"delivered {count} times and never acknowledged: a worker died or stalled on it"
                dead.append((self.topic, transaction_text(t), reason, t.transaction_id))
            else:
                suspects.append(t)
        dead += self._decide(normal, results, known)
        suspects.sort(key=lambda t: (t.timestamp, t.transaction_id))
        dead += self._decide_suspects(
            suspects, max(fewest.get(t.transaction_id, 0) for t in suspects) if suspects else 0, results
        )
        self._publish(results, dead)
        if dead:  # last before the ack: an outage before it hands the batch back with none stored
            self.store.dead_letters.add([d[:3] for d in dead], [d[3] for d in dead if d[3] is not None])
            self.stats.dead += len(dead)
        self.broker.ack(self.topic, messages)
        self._in_flight = []

    def _parse(self, messages: list[Message]) -> tuple[list[Transaction], list[int], list[DeadLetter]]:
        """The valid transactions with their delivery counts, and the dead letters of the rest. The
        batch is validated in one call as canonical transactions (what the API and a redrive publish);
        a message that is not one is read through the team's mapping when the model has one, else
        validated again on its own, for its dead letter to say what is wrong with it. Whatever a
        message holds, this never raises."""
        try:
            parsed = PAYLOADS.validate_python([m.payload for m in messages])
        except Exception:  # validation itself failed: each message on its own, below
            parsed = [None] * len(messages)
        if all(isinstance(t, Transaction) for t in parsed):
            return parsed, [m.deliveries for m in messages], []
        mapping = None if self.intake is None else self.intake.mapping
        good: list[Transaction] = []
        deliveries: list[int] = []
        dead: list[DeadLetter] = []
        for m, t in zip(messages, parsed, strict=True):
            if isinstance(m.payload, Undecodable):  # a binary message this process cannot read
                dead.append((self.topic, str(m.payload), m.payload.reason, None))
                continue
            try:
                if isinstance(t, Transaction):
                    good.append(t)
                elif mapping is not None:
                    good.append(mapping.transaction(m.payload))
                else:
                    good.append(Transaction.model_validate(m.payload))
                deliveries.append(m.deliveries)
            except Exception as error:
                dead.append((self.topic, payload_text(m.payload), _invalid(error), None))
        return good, deliveries, dead

    def _decide_suspects(
        self, transactions: list[Transaction], deliveries: int, results: list[tuple[str, dict[str, Any]]]
    ) -> list[DeadLetter]:
        """Decide these one at a time, in the order given (the same on every delivery, which the
        brokers' order across partitions is not); on an even delivery the first goes last.

        If one of them kills the worker, those before it are decided on one delivery, and it is first of
        those left on the next, which decides those after it before trying it again. So by the time it
        has been delivered more than ``max_deliveries`` times it goes to the dead letters alone (with
        ``max_deliveries`` of 4 or more), and the others are decided in their own order.
        """
        order = transactions[1:] + transactions[:1] if deliveries % 2 == 0 else transactions
        dead: list[DeadLetter] = []
        for t in order:
            dead += self._decide([t], results)
        return dead

    def _decide(
        self,
        transactions: list[Transaction],
        results: list[tuple[str, dict[str, Any]]],
        known: Mapping[str, Known] | None = None,
    ) -> list[DeadLetter]:
        """Decide these (``known``: what storage said of some of them already); a transaction that
        cannot be decided for a reason of its own (not an outage) is found by halving the batch and goes
        to the dead letters alone."""
        if not transactions:
            return []
        try:
            return self._decide_batch(transactions, results, known)
        except OUTAGES:
            raise  # the database, Redis or the broker, not the message: retried by run() once it is back
        except Exception as error:  # a poison message must not stop the worker: isolate it
            if len(transactions) == 1:
                t = transactions[0]
                log.exception("cannot score transaction %s", t.transaction_id)
                reason = f"unscoreable: {type(error).__name__}: {error}"
                return [(self.topic, transaction_text(t), reason, t.transaction_id)]
        middle = len(transactions) // 2
        return [
            *self._decide(transactions[:middle], results, known),
            *self._decide(transactions[middle:], results, known),
        ]

    def _decide_batch(
        self,
        transactions: list[Transaction],
        results: list[tuple[str, dict[str, Any]]],
        known: Mapping[str, Known] | None,
    ) -> list[DeadLetter]:
        batch = TransactionBatch.from_transactions(transactions)
        decided = self.decider.decide(batch, transactions, known=known)
        new = decided.new
        if new is not None and len(new):
            self.stats.decided += len(new)
            if self.results_topic:
                results += zip(new.customer_id.tolist(), decision_messages(new), strict=True)
            if self.on_scored is not None:
                self.on_scored(new)
        duplicates = decided.rows(DUPLICATE)
        self.stats.duplicates += len(duplicates)
        if self.results_topic:
            published = {r[1]["transaction_id"] for r in results}
            for row in duplicates:
                record = decided.record(row)
                if record is not None and record.transaction_id not in published:
                    published.add(record.transaction_id)
                    results.append((record.customer_id, decision_message(record)))
        return [
            (
                self.topic,
                transaction_text(transactions[row]),
                f"conflict: transaction_id {transactions[row].transaction_id!r} is already used by a "
                "transaction with a different body; an id names one transaction, so this one was not decided",
                None,
            )
            for row in decided.rows(CONFLICT)
        ]

    def _publish(self, results: list[tuple[str, dict[str, Any]]], dead: list[DeadLetter]) -> None:
        """Stored decisions (keyed by customer) and dead letters to their topics, for other processes
        to subscribe to."""
        if self.results_topic and results:
            self.broker.publish(self.results_topic, results)
        if self.dead_letters_topic and dead:
            letters = [(None, {"topic": t, "payload": p, "reason": r}) for t, p, r, _ in dead]
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
