"""Held decisions: the score API stores its decisions a group at a time, keeping each in a journal meanwhile.

On SQLite a commit costs by the pages it writes, and a decision stored with its transaction writes
eleven of them: two tables, their six indexes and the per-minute count. At 500 requests/s the score
API's batches hold one request each, so each would pay a commit of its own, several times what a
decision costs in a group's commit (docs/decisions/0005-held-decisions-journal.md). A held decision is one
line appended to this process's journal (:mod:`._journal`), as durable against a crash of the process
as the commit was, and :meth:`HeldDecisions.release` stores the held decisions in one transaction,
exactly as :meth:`.decisions.DecisionRepository.save` would have; the score API has a child process do that
(:mod:`._storer`), so that its event loop never runs the commit. Journals that crashed processes left
are stored by the next process to open the services (:meth:`HeldDecisions.recover`), before feature
state is rebuilt.

Held decisions count as decided in this process: the decisions repository's ``decided_ids``,
``get_many`` and ``get_transaction`` see them, and a writer in this process
(the embedded worker) storing a decision for a transaction that is held leaves it to the held one, so
the answer the API gave is the one stored. One id names one body here too: the queue's ``accept`` in
this process sees a held transaction as known (a different body under its id is refused), and holding
refuses a transaction whose id is stored, or being accepted by another thread, with a different body.
Holding checks and appends under one lock that accepting threads take to announce their ids, so
whichever comes second sees the other. The lists, counts, reports and customer profiles store what
is held before they read; the charts' per-minute counts, the live feed (which looks a second back) and
other processes see a held decision once it is stored. Only a SQLite file holds: on PostgreSQL a
commit is a round trip whatever it writes, and holding a decision is storing it.

:class:`HeldDecisions` is one component of the :class:`~.store.Store`, handed to the repositories whose
reads or writes must see what is held; where nothing is held, each of its methods is a no-op.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from fraudstream.events.decision import DecisionRecord
from fraudstream.events.transaction import Transaction
from fraudstream.storage import bulk, tables
from fraudstream.storage._bodies import stored_hashes
from fraudstream.storage._journal import DecisionJournal, Held, recover
from fraudstream.storage._saving import DecisionSaver
from fraudstream.storage._storer import CLOSE_TIMEOUT, HeldStorer
from fraudstream.storage.database import Database, loads
from fraudstream.storage.rows import TRANSACTION_COLUMNS, body_hash, transaction_rows, unique_by

log = logging.getLogger(__name__)

_d = tables.decisions
_t = tables.transactions


class HeldDecisions:
    """This process's held decisions: holding them, storing them (here or by the child storer), and
    what reads and writes elsewhere must learn of them. Holds only on a SQLite file."""

    def __init__(self, db: Database, saver: DecisionSaver) -> None:
        self._db = db
        self._saver = saver
        self._journal: DecisionJournal | None = None
        self._storer: HeldStorer | None = None
        self._background = True  # until a storing process fails
        self._claims = threading.Lock()  # holding's check and append; accepting threads' announcements
        self._accepted: dict[str, list[str]] = {}  # ids being accepted now → the body hashes sent
        if db.writers is not None:  # a SQLite file
            self._journal = DecisionJournal(Path(str(db.url.database)))

    @property
    def holds(self) -> bool:
        """Whether :meth:`.decisions.DecisionRepository.hold` holds (a SQLite file) or stores right away."""
        return self._journal is not None

    def hold(
        self, records: list[DecisionRecord], transactions: list[Transaction], clashes: set[str] | None = None
    ) -> list[str]:
        """Hold ``records`` with their ``transactions``; the ids held, leaving out any decided already, and
        any whose id is stored, or being accepted by another thread, with another body (added to
        ``clashes``). A transaction's body hash is computed only when its id is found there."""
        assert self._journal is not None
        records = unique_by(records, lambda r: r.transaction_id)
        ids = [r.transaction_id for r in records]
        with self._claims:
            decided, bodies = self._stored(ids)
            decided |= self._journal.among(ids).keys()
            found = {i for i in ids if i not in decided and (i in bodies or i in self._accepted)}
            clash: set[str] = set()
            if found:
                by_id = {tx.transaction_id: tx for tx in transactions}
                for i in found:
                    mine = body_hash(by_id[i])
                    if bodies.get(i) not in (None, mine) or any(h != mine for h in self._accepted.get(i, ())):
                        clash.add(i)
            new = [r for r in records if r.transaction_id not in decided and r.transaction_id not in clash]
            if new:
                self._journal.append(new, transactions)
        if clashes is not None:
            clashes |= clash
        return [r.transaction_id for r in new]

    @contextmanager
    def accepting(self, hashes: Mapping[str, str]) -> Iterator[dict[str, str]]:
        """Announce that transactions with these body hashes (by id) are being stored, for as long as the
        context lasts; it gives the body hashes of those whose decision this process holds."""
        if self._journal is None:
            yield {}
            return
        with self._claims:
            for i, h in hashes.items():
                self._accepted.setdefault(i, []).append(h)
            held = self._journal.among(hashes)
        try:
            yield {i: body_hash(tx) for i, (_, tx) in held.items()}
        finally:
            with self._claims:
                for i, h in hashes.items():
                    pending = self._accepted[i]
                    pending.remove(h)
                    if not pending:
                        del self._accepted[i]

    def release(self, *, background: bool = False) -> list[str]:
        """Store everything this process holds, in one transaction; the ids decided for the first time.

        With ``background``, hand what was held since the last release to a child process that stores
        it (see :mod:`._storer`) and return at once, with no ids: the score API's event loop does not
        wait for the commit. Without, first wait for what the child was handed. Reads that list or count
        decisions call this first, so that they see every decision answered so far."""
        if self._journal is None or not len(self._journal):
            return []
        storer = self._usable_storer(start=background)
        if background and storer is not None:
            segment = self._journal.handover()
            if segment is None or storer.send(segment):
                return []
        elif storer is not None:
            storer.wait(CLOSE_TIMEOUT)
        return self.store_entries(self._journal.held())

    def store_entries(self, held: list[Held]) -> list[str]:
        """Store held decisions in one transaction and stop holding them; the ids decided just now."""
        assert self._journal is not None
        if not held:
            return []
        clashes: set[str] = set()
        fresh = self._saver.save([r for r, _ in held], [tx for _, tx in held], clashes=clashes)
        self._journal.forget(r.transaction_id for r, _ in held)
        if clashes:  # only another process can have stored one meanwhile (this one checks before holding)
            log.warning(
                "held decisions not stored: another process stored transactions %s with a different body",
                sorted(clashes),
            )
        # Counted as the commits it replaced: each decision still adds pages of its own to the WAL (its
        # index entries land on different pages), and checkpointing every 200 commits of ten let the
        # WAL grow to SQLite's own checkpoint, which then runs on the committing thread.
        self._db.committed(len(held) - 1)
        return fresh

    def _usable_storer(self, *, start: bool) -> HeldStorer | None:
        """The storing process, started with ``start`` if there is none; ``None`` once one has failed."""
        assert self._journal is not None
        storer = self._storer
        if storer is not None and not storer.usable:
            self._storer, self._background = None, False
            storer.close(timeout=0)  # what it was handed is still held, and stored here
            return None
        if storer is None and start and self._background:
            url = self._db.url.render_as_string(hide_password=False)
            try:
                storer = self._storer = HeldStorer(url, self._journal.forget)
            except OSError as exc:
                self._background = False
                log.warning("held decisions: cannot start a process to store them (%s); storing here", exc)
        return storer

    def close(self) -> None:
        """Let the storing process store what it was handed, then close the journal (removed if empty,
        otherwise stored by the next start)."""
        storer, self._storer = self._storer, None
        if storer is not None:
            storer.close()
        if self._journal is not None:
            self._journal.close()

    def recover(self) -> int:
        """Store the decisions held by processes that ended without storing them (journals beside the
        SQLite file that no running process owns), and remove their journals; how many there were."""
        if self._journal is None:
            return 0
        return recover(self._journal.prefix, lambda r, t: self._saver.save(r, t))

    def _stored(self, ids: list[str]) -> tuple[set[str], dict[str, str | None]]:
        """Which of ``ids`` have a stored decision, and the body hashes of those stored as transactions, on
        this thread's own connection (no pool checkout)."""
        writers = self._db.writers
        if writers is None:
            return set(), {}
        driver = writers.acquire()
        try:
            with self._db.translated():
                decided = bulk.sqlite_known_keys(driver, _d, ids)
                return decided, stored_hashes(driver, [i for i in ids if i not in decided])
        finally:
            writers.release(driver)

    def held_ids(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that are held: what a writer in this process leaves to the held decision."""
        return set(self.entries(ids))

    def records(self, ids: Sequence[str]) -> dict[str, DecisionRecord]:
        """The held decisions of those of ``ids`` that are held."""
        return {i: record for i, (record, _) in self.entries(ids).items()}

    def entries(self, ids: Sequence[str]) -> dict[str, Held]:
        """The held decisions and transactions of those of ``ids`` that are held."""
        if self._journal is None or not len(self._journal):
            return {}
        return self._journal.among(ids)

    def transaction(self, transaction_id: str) -> dict[str, Any] | None:
        """The ``transactions`` row a held decision's transaction will have, or ``None``."""
        found = None if self._journal is None else self._journal.among([transaction_id]).get(transaction_id)
        if found is None:
            return None
        record, tx = found
        values = transaction_rows([tx], record.decided_at, tables.TX_DECIDED, _same)[0]
        row = dict(zip(TRANSACTION_COLUMNS, values, strict=True))
        return row | {"payload": loads(row["payload"])}


def _same(value: datetime) -> datetime:
    return value
