"""The :class:`Decider`: a batch's one path from transactions to stored decisions, for every entry point.

The API's micro-batches, the workers' batches, the Spark stream's micro-batches and a replay's chunks all
go through :meth:`Decider.decide`, so a transaction is decided the same way whichever door it came in
by. For a batch, in this order:

1. **De-duplicate** by id and body. A repeated id within the batch is its first row's transaction
   when it brings the same body, a conflict when it brings another. An id storage knows is answered
   with its stored decision when the body is the same, and is a conflict when it is not (one id, one
   transaction). Storage is asked once per batch, and only about the ids the feature state may
   hold: one that neither holds nor ever held cannot have been decided.
2. **Features** of the new transactions, read from the feature state, which nothing changes yet; and
   the runtime aggregates the rules declare, read from theirs (:mod:`fraudstream.pipeline.aggregates`).
3. **Models**: the served model's probability (and a challenger's, in shadow or for its A/B share).
4. **Rules** on top of the models' decisions.
5. **Decisions**: one row of :class:`~fraudstream.events.decision.DecisionColumns` per new
   transaction, with reasons.
6. **Store** the new decisions with their transactions, in one database transaction. The first
   decision stored for an id wins: a row another process stored meanwhile is answered with that one,
   and a body another process stored meanwhile under the id is a conflict.
7. **Record** in the feature state the events of the rows stored just now, and of the duplicates of
   stored decisions (recording is idempotent per transaction id, so what is held already is skipped);
   likewise in the state of the rules' runtime aggregates.
8. **Hand over**: the caller answers (the API), publishes and acknowledges (the workers); observers
   (metrics, drift) see the new decisions, and the alerts the new decisions that can raise one.

Steps 2 to 7 hold the decider's lock, and the feature state's turn
(:meth:`~fraudstream.state.base.FeatureState.turn`): the batches one process decides (its API's and
its embedded worker's share one decider), and those of every process sharing a Redis state, see each
other's events in the order they were decided.

What a crash between two steps leaves behind, and how the next delivery mends it:

- **Before 6**: nothing stored, nothing recorded. The messages come again (a worker acknowledges only
  after 8) or the client retries (the API answers only after 7), and the batch is decided afresh.
- **Between 6 and 7**: the decisions are stored, their events are not in the feature state. Delivered
  again, each is a duplicate of its stored decision: it is answered (or published) with that decision
  and step 7 records its event then, once. An in-process state is rebuilt from storage when the process
  starts, so it holds them anyway.
- **Between 7 and 8**: stored and recorded, not handed over. Delivered again, each is a duplicate:
  answered or published from storage, decided and counted nowhere twice. The alerts of those
  decisions are not raised (alerts are handed over once, after the hand-over to the caller).

No step writes anything the next delivery cannot tell apart, which is what makes at-least-once
delivery decide, store and count every transaction exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.events.transaction import Transaction
from fraudstream.models.bundle import ModelBundle
from fraudstream.pipeline.scorer import Scorer
from fraudstream.state.base import StateError
from fraudstream.storage.decisions import Known
from fraudstream.storage.rows import body_hash

log = logging.getLogger(__name__)

NEW, DUPLICATE, CONFLICT = "new", "duplicate", "conflict"
"""What became of a row: decided now, a duplicate of a stored decision, or refused (another body)."""


class Ledger(Protocol):
    """Where the decider finds what was decided before and stores what it decides (step 6)."""

    def known(self, ids: list[str]) -> dict[str, Known]:
        """What storage holds of these ids: decided or not, and the stored body's hash."""

    def save(
        self, decided: DecisionColumns, bodies: list[Transaction] | None, clashes: set[str]
    ) -> list[str]:
        """Store the decisions (with their transactions' bodies) in one transaction; the ids stored
        just now. An id stored meanwhile with another body is left out and added to ``clashes``."""

    def decisions(self, ids: list[str]) -> dict[str, DecisionRecord]:
        """The stored decisions of these ids."""


@dataclass
class Decided:
    """What :meth:`Decider.decide` did with each row of a batch, row-aligned with it."""

    ids: list[str]
    status: list[str]
    """:data:`NEW`, :data:`DUPLICATE` or :data:`CONFLICT` per row."""
    new: DecisionColumns | None
    """The decisions made and stored now, one per transaction (from its first row in the batch)."""
    new_rows: np.ndarray
    """Each of ``new``'s rows' position in the batch."""
    earlier: dict[str, DecisionRecord] = field(default_factory=dict)
    """The stored decision of each duplicate id decided before this batch, or meanwhile elsewhere."""
    _made: dict[str, DecisionRecord] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.status)

    @property
    def stored(self) -> int:
        """How many decisions this batch stored."""
        return 0 if self.new is None else len(self.new)

    def rows(self, status: str) -> list[int]:
        """The rows whose outcome is ``status``."""
        return [i for i, s in enumerate(self.status) if s == status]

    def record(self, row: int) -> DecisionRecord | None:
        """The decision that stands for row ``row``: made now, or stored before; ``None`` for a
        conflict (or a decision that vanished from storage since)."""
        if self.status[row] == CONFLICT:
            return None
        if self._made is None:
            self._made = {} if self.new is None else {r.transaction_id: r for r in self.new.records()}
        tx_id = self.ids[row]
        made = self._made.get(tx_id)
        return made if made is not None else self.earlier.get(tx_id)


class Decider:
    """Decides batches in the order of the module's notes; one per process, shared by its entry points.

    ``ledger`` stores (usually :class:`StoreLedger` over the process's store). ``on_decided`` gets the
    newly stored decisions that can raise an alert (every outcome but APPROVE, and whatever a rule
    fired on); ``observers`` get every batch's newly stored decisions. Both run after the hand-over's
    bookkeeping, outside the lock, and what they raise is logged, never raised: a decided batch stays
    decided.
    """

    def __init__(
        self,
        scorer: Scorer,
        ledger: Ledger,
        *,
        on_decided: Callable[[DecisionColumns], None] | None = None,
    ) -> None:
        self.scorer = scorer
        self.ledger = ledger
        self.on_decided = on_decided
        self._observers: list[Callable[[DecisionColumns], None]] = []
        self._lock = threading.RLock()

    def add_observer(self, observe: Callable[[DecisionColumns], None]) -> None:
        """Call ``observe`` with each batch's newly stored decisions (drift, metrics); it must be cheap."""
        self._observers.append(observe)

    @property
    def bundle(self) -> ModelBundle:
        """The model bundle served now."""
        return self.scorer.bundle

    @property
    def lock(self) -> threading.RLock:
        """Held from the features of a batch to its recording: whoever changes the feature state or the
        served model between batches takes it (labels arriving, a model swapped in)."""
        return self._lock

    def record_labels(
        self, transaction_ids: np.ndarray, label_times: np.ndarray, is_fraud: np.ndarray
    ) -> int:
        """Arrived labels into the feature state, between batches (never inside one); how many fraud
        labels were new there."""
        with self._lock:
            new = self.scorer.state.record_labels(transaction_ids, label_times, is_fraud)
            if self.scorer.aggregates is not None:
                self.scorer.aggregates.record_labels(transaction_ids, label_times, is_fraud)
            return new

    def score(self, batch: TransactionBatch) -> DecisionColumns:
        """Decisions for every row against the current state, storing and recording nothing (a dry run)."""
        with self._lock:
            scored = self.scorer.score(batch)
        return scored.columns(self.scorer.engine.names)

    def decide(
        self,
        batch: TransactionBatch,
        bodies: Sequence[Transaction] | None = None,
        *,
        known: Mapping[str, Known] | None = None,
    ) -> Decided:
        """Decide, store and record ``batch`` (steps 1 to 7); the caller hands over (step 8).

        ``bodies`` are the rows' transactions when the caller has them (the API, the workers): stored
        with the decisions, and compared by body hash for repeated ids. A replay passes none: its rows
        are their own record, and a repeated id is its first row's transaction. ``known`` is what storage
        already said of some ids (a worker asks about messages delivered over and over before
        deciding whether to dead-letter them): they are not asked about again.

        An outage of storage or the state propagates with nothing recorded for the rows not stored;
        what was stored stays stored and is answered as a duplicate when the batch comes again.
        """
        rows = _Rows(batch.transaction_id.tolist(), bodies)
        fresh, replayed = rows.against(self._known(rows, known or {}))
        new: DecisionColumns | None = None
        new_rows = np.empty(0, dtype=np.int64)
        with self._lock, self.scorer.state.turn():
            if fresh:
                new_rows, new = self._decide_and_store(batch, rows, fresh, replayed)
            self._record(batch, np.concatenate([new_rows, np.asarray(replayed, dtype=np.int64)]))
        rows.follow_leads()
        made = set() if new is None else set(new.transaction_id.tolist())
        earlier_ids = sorted({rows.ids[i] for i in rows.where(DUPLICATE)} - made)
        earlier = self.ledger.decisions(earlier_ids) if earlier_ids else {}
        if new is not None and len(new):
            self._hand_over(new)
        return Decided(rows.ids, rows.status, new, new_rows, earlier)

    def _decide_and_store(
        self, batch: TransactionBatch, rows: _Rows, fresh: list[int], replayed: list[int]
    ) -> tuple[np.ndarray, DecisionColumns]:
        """Steps 2 to 6 for the ``fresh`` rows: their decisions, and those of them stored now (a row
        another process decided meanwhile joins ``replayed``; one it stored with another body is a
        conflict)."""
        at = np.asarray(fresh, dtype=np.int64)
        columns = self.scorer.score(batch.take(at)).columns(self.scorer.engine.names)
        clashes: set[str] = set()
        bodies = None if rows.bodies is None else [rows.bodies[i] for i in fresh]
        stored = set(self.ledger.save(columns, bodies, clashes))
        keep = []
        for k, row in enumerate(fresh):
            tx_id = rows.ids[row]
            if tx_id in stored:
                keep.append(k)
            elif tx_id in clashes:
                rows.status[row] = CONFLICT
            else:  # decided meanwhile by another process: its decision stands
                rows.status[row] = DUPLICATE
                replayed.append(row)
        return at[keep], columns if len(keep) == len(fresh) else columns.take(keep)

    def _known(self, rows: _Rows, told: Mapping[str, Known]) -> dict[str, Known]:
        """Step 1's one question to storage, about the ids the feature state may hold (about every id
        when the state cannot say) that the caller was not ``told`` about already."""
        distinct = rows.distinct
        if not distinct:
            return {}
        try:
            held = self.scorer.state.recorded(np.asarray(distinct, dtype=object))
        except StateError as error:
            log.warning("%s; asking storage about every transaction of the batch", error)
            held = None
        flags = held.tolist() if held is not None else [True] * len(distinct)
        asked = [i for i, h in zip(distinct, flags, strict=True) if h and i not in told]
        return {**told, **self.ledger.known(asked)} if asked else dict(told)

    def _record(self, batch: TransactionBatch, rows: np.ndarray) -> None:
        """Step 7: the events of these rows into the feature state (each transaction once)."""
        if rows.size:
            taken = batch.take(np.sort(rows))
            self.scorer.engine.record(taken, self.scorer.state)
            if self.scorer.aggregates is not None:  # the rules' runtime aggregates, in the same order
                self.scorer.aggregates.record(taken)

    def _hand_over(self, new: DecisionColumns) -> None:
        for observe in self._observers:
            try:
                observe(new)
            except Exception:  # an observer never fails a decided batch
                log.exception("decider: observer %r failed", observe)
        hook = self.on_decided
        if hook is None:
            return
        notable = new.alerting_rows()
        if notable:
            try:
                hook(new.take(notable))
            except Exception:
                log.exception("decider: handing %d decisions to the alerts failed", len(notable))


class _Rows:
    """A batch's ids and bodies as step 1 sorts them: which row of each id is decided (its lead), and
    what each row is. Every row of an id is judged against the body that stands for the id: the body
    storage holds, else the id's first row's in the batch."""

    def __init__(self, ids: list[str], bodies: Sequence[Transaction] | None) -> None:
        self.ids, self.bodies = ids, bodies
        self.status = [NEW] * len(ids)
        self.rows_of: dict[str, list[int]] = {}
        for row, tx_id in enumerate(ids):
            self.rows_of.setdefault(tx_id, []).append(row)
        self.lead: dict[str, int] = {}
        self._hashes: dict[int, str] = {}

    @property
    def distinct(self) -> list[str]:
        return list(self.rows_of)

    def against(self, known: Mapping[str, Known]) -> tuple[list[int], list[int]]:
        """Each id's rows against what storage holds: the rows to decide (one per id, its lead), and
        the leads of ids decided before (duplicates, whose events step 7 records). A row whose body is
        not the one that stands for its id is a conflict; the others are the lead and its duplicates."""
        fresh: list[int] = []
        replayed: list[int] = []
        for tx_id, rows in self.rows_of.items():
            seen = known.get(tx_id)
            stands = seen.body_hash if seen is not None else None
            if self.bodies is not None and (stands is not None or len(rows) > 1):
                stands = stands if stands is not None else self.hash(rows[0])
                matching = [r for r in rows if self.hash(r) == stands]
                for r in rows:
                    if r not in matching:
                        self.status[r] = CONFLICT
            else:
                matching = rows
            if not matching:
                continue
            lead = self.lead[tx_id] = matching[0]
            for r in matching[1:]:
                self.status[r] = DUPLICATE
            if seen is not None and seen.decided:
                self.status[lead] = DUPLICATE
                replayed.append(lead)
            else:  # unknown, or stored with this body and not decided yet (queued by POST /v1/transactions)
                fresh.append(lead)
        return sorted(fresh), replayed

    def follow_leads(self) -> None:
        """The rows that matched their id's lead share its outcome: a lead refused when it was stored
        (another body won meanwhile) takes them with it."""
        for tx_id, lead in self.lead.items():
            if self.status[lead] == CONFLICT:
                for r in self.rows_of[tx_id]:
                    if self.status[r] == DUPLICATE:
                        self.status[r] = CONFLICT

    def where(self, status: str) -> list[int]:
        return [i for i, s in enumerate(self.status) if s == status]

    def hash(self, row: int) -> str:
        """The body hash of row ``row`` (computed once, only for the rows that need comparing)."""
        found = self._hashes.get(row)
        if found is None and self.bodies is not None:
            found = self._hashes[row] = body_hash(self.bodies[row])
        return found or ""


class StoreLedger:
    """The decider's :class:`Ledger` over a :class:`~fraudstream.storage.store.Store`."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def known(self, ids: list[str]) -> dict[str, Known]:
        return self.store.decisions.known(ids)

    def save(
        self, decided: DecisionColumns, bodies: list[Transaction] | None, clashes: set[str]
    ) -> list[str]:
        return self.store.decisions.save(decided, bodies, clashes=clashes)

    def decisions(self, ids: list[str]) -> dict[str, DecisionRecord]:
        return self.store.decisions.get_many(ids)
