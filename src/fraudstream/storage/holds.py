"""``HoldRepository``: payments decided HOLD, waiting for an analyst, and how each wait ended.

A hold is written with its HOLD decision, in the same database transaction (see :mod:`._saving`), so
every stored HOLD has its hold and no hold lacks a decision. It is ``pending`` until one of two
transitions resolves it, each a conditional ``UPDATE`` of pending rows only, so whichever process
comes first resolves a hold and every later attempt finds nothing to do:

- **a verdict**: the verdict closing the case the held transaction is in releases it (legitimate:
  APPROVE) or rejects it (fraud: BLOCK); an inconclusive verdict gives it the default outcome
  (``FRAUD_HOLD_DEFAULT``), as nobody decided (see :meth:`.cases.CaseRepository.verdict`);
- **the timeout**: a hold still pending ``FRAUD_HOLD_TIMEOUT_SECONDS`` after it was made gets the
  default outcome (:meth:`HoldRepository.expire`, which the hold sweep of serve and worker processes
  calls).

The transaction that resolves holds also adds their waiting times to ``hold_waits``, a histogram per
resolution, outcome and bucket that ``/metrics`` reads, the same in every process whichever process
resolved them, and emits the webhook event ``hold.resolved`` of each (see :mod:`.webhooks`), so
whoever must hear of a resolution hears of it once it is committed, from whichever process made it.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select, text, update

from fraudstream.events.webhook import HOLD_RESOLVED, WebhookEvent
from fraudstream.storage import tables
from fraudstream.storage.database import Database
from fraudstream.storage.rows import chunks
from fraudstream.storage.webhooks import emit

_h, _w, _ct = tables.holds, tables.hold_waits, tables.case_transactions

PENDING, RELEASED, REJECTED = "pending", "released", "rejected"
STATUSES = (PENDING, RELEASED, REJECTED)
VERDICT, TIMEOUT = "verdict", "timeout"
RESOLUTIONS = (VERDICT, TIMEOUT)
APPROVE, BLOCK = "APPROVE", "BLOCK"
OUTCOMES = (APPROVE, BLOCK)
"""What a hold ends in: the payment released (APPROVE) or rejected (BLOCK)."""
STATUS_OF = {APPROVE: RELEASED, BLOCK: REJECTED}
VERDICT_OUTCOMES = {"fraud": BLOCK, "legitimate": APPROVE}
"""The outcome of a case's verdict for its holds; an inconclusive verdict gives the default outcome."""
HOLD_COLUMNS = ("transaction_id", "customer_id", "amount", "held_at", "status")
"""The columns a hold is written with, beside its decision (pending, nothing resolved yet)."""
WAIT_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
"""Upper bounds, in seconds, of the buckets of the waiting-time histogram, a minute to a week. A
stored count keeps the bound it was counted under (``-1`` past the last), so the histogram stays right
when bounds are added later."""
_PAST_LAST = -1
SWEEP_CHUNK = 1000
"""Most holds :meth:`HoldRepository.expire` resolves in one transaction."""


@dataclass
class Hold:
    """A held payment: whose, how much, since when, and where its wait stands."""

    transaction_id: str
    customer_id: str
    amount: float
    held_at: datetime
    status: str
    outcome: str | None = None
    resolution: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    case_id: int | None = None
    """The case the held transaction is in (once cases have grouped it), else ``None``."""

    @property
    def waited_seconds(self) -> float | None:
        """How long the payment waited (``None`` while it still waits)."""
        if self.resolved_at is None:
            return None
        return max((self.resolved_at - self.held_at).total_seconds(), 0.0)

    def event(self) -> WebhookEvent:
        """The webhook event ``hold.resolved`` of this (resolved) hold; a hold resolves once, so its
        transaction id names the fact."""
        data = {name: getattr(self, name) for name in (*HOLD_COLUMNS, *_RESOLVED_COLUMNS, "case_id")}
        return WebhookEvent(
            HOLD_RESOLVED, self.transaction_id, data | {"waited_seconds": self.waited_seconds},
            subject=self.transaction_id,
        )  # fmt: skip


def bucket_of(seconds: float) -> int:
    """The histogram bucket a wait of ``seconds`` is counted under: the first bound it does not pass."""
    for bound in WAIT_BUCKETS:
        if seconds <= bound:
            return bound
    return _PAST_LAST


class HoldRepository:
    """Reading holds, and the two transitions that resolve them (see the module)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- reading -----------------------------------------------------------------------------------

    def get(self, transaction_id: str) -> Hold | None:
        """The hold of a transaction, or ``None`` when it was not held."""
        return self.get_many([transaction_id]).get(transaction_id)

    def get_many(self, transaction_ids: Sequence[str]) -> dict[str, Hold]:
        """The holds of these transactions that were held, by transaction id."""
        out: dict[str, Hold] = {}
        with self._db.read() as conn:
            for chunk in chunks(list(dict.fromkeys(transaction_ids))):
                query = _with_case().where(_h.c.transaction_id.in_(chunk))
                out.update((row["transaction_id"], _hold(row)) for row in conn.execute(query).mappings())
        return out

    def list(
        self,
        *,
        status: builtins.list[str] | None = None,
        customer_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[Hold]:
        """Holds, pending first (the longest waiting first), then the resolved ones (the latest
        resolved first); filtered by ``status`` and customer."""
        query = _with_case().order_by(
            case((_h.c.status == PENDING, 0), else_=1),
            case((_h.c.status == PENDING, _h.c.held_at)),
            _h.c.resolved_at.desc(),
            _h.c.transaction_id,
        )
        if status:
            query = query.where(_h.c.status.in_(status))
        if customer_id is not None:
            query = query.where(_h.c.customer_id == customer_id)
        with self._db.read() as conn:
            return [_hold(row) for row in conn.execute(query.limit(limit).offset(offset)).mappings()]

    def pending(self) -> int:
        """How many holds are waiting now."""
        with self._db.read() as conn:
            return int(conn.execute(select(func.count()).where(_h.c.status == PENDING)).scalar_one())

    def waits(self) -> builtins.list[tuple[str, str, int, int, float]]:
        """``(resolution, outcome, bucket bound, holds, seconds)`` of the resolved holds' waits: each
        bucket's count (not cumulative) and summed seconds; the bound is ``-1`` past the last one."""
        query = select(_w.c.resolution, _w.c.outcome, _w.c.bucket, _w.c.holds, _w.c.seconds).order_by(
            _w.c.resolution, _w.c.outcome, _w.c.bucket
        )
        with self._db.read() as conn:
            return [(str(r), str(o), int(b), int(n), float(s)) for r, o, b, n, s in conn.execute(query)]

    # -- resolving ---------------------------------------------------------------------------------

    def resolve(
        self,
        conn: Connection,
        transaction_ids: Iterable[str],
        outcome: str,
        resolution: str,
        by: str,
        now: datetime | None = None,
    ) -> builtins.list[Hold]:
        """Inside the caller's write ``conn``: resolve the pending holds among ``transaction_ids`` with
        ``outcome`` (APPROVE or BLOCK) by ``resolution`` (verdict or timeout), and count their waits;
        the holds resolved by this call (a hold resolved before, by anyone, is left as it is)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome: expected one of {', '.join(OUTCOMES)}, got {outcome!r}")
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution: expected one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        now = now or datetime.now(UTC)
        values = {
            "status": STATUS_OF[outcome],
            "outcome": outcome,
            "resolution": resolution,
            "resolved_at": now,
            "resolved_by": by[:128],
        }
        done: builtins.list[Hold] = []
        for chunk in chunks(list(dict.fromkeys(transaction_ids))):
            statement = (
                update(_h)
                .where(_h.c.transaction_id.in_(chunk), _h.c.status == PENDING)
                .values(**values)
                .returning(*_h.c)
            )
            resolved = [_hold(row) for row in conn.execute(statement).mappings()]
            if resolved:
                cases = select(_ct.c.transaction_id, _ct.c.case_id).where(
                    _ct.c.transaction_id.in_([h.transaction_id for h in resolved])
                )
                of = {t: int(c) for t, c in conn.execute(cases)}
                for hold in resolved:
                    hold.case_id = of.get(hold.transaction_id)
            done += resolved
        done.sort(key=lambda hold: (hold.held_at, hold.transaction_id))
        _count_waits(conn, done)
        emit(conn, [hold.event() for hold in done], now=now)  # hold.resolved, committed with the hold
        return done

    def expire(
        self, timeout: timedelta, outcome: str, now: datetime | None = None, limit: int = SWEEP_CHUNK
    ) -> builtins.list[Hold]:
        """Give ``outcome`` to the holds pending for ``timeout`` or longer at ``now`` (wall-clock time:
        a payment waits in real time, whatever the transactions' own times), at most ``limit`` of
        them, the oldest first; the holds this call resolved. Safe to call from many
        processes at once: each hold is resolved by one of them."""
        now = now or datetime.now(UTC)
        due = (
            select(_h.c.transaction_id)
            .where(_h.c.status == PENDING, _h.c.held_at <= now - timeout)
            .order_by(_h.c.held_at)
            .limit(limit)
        )
        with self._db.read() as conn:  # most sweeps find nothing: no write lock for them
            ids = list(conn.execute(due).scalars())
        if not ids:
            return []
        with self._db.write() as conn:
            return self.resolve(conn, ids, outcome, TIMEOUT, TIMEOUT, now)


def _with_case() -> Any:
    """Holds with the case their transaction is in, when cases have grouped it."""
    return select(*_h.c, _ct.c.case_id).select_from(
        _h.outerjoin(_ct, _ct.c.transaction_id == _h.c.transaction_id)
    )


_RESOLVED_COLUMNS = ("outcome", "resolution", "resolved_at", "resolved_by")


def _hold(row: Any) -> Hold:
    values = {name: row[name] for name in HOLD_COLUMNS}
    for name in _RESOLVED_COLUMNS:
        values[name] = row[name]
    case_id = row.get("case_id")
    return Hold(**values, case_id=None if case_id is None else int(case_id))


_ADD_WAITS = text(
    "INSERT INTO hold_waits (resolution, outcome, bucket, holds, seconds) "
    "VALUES (:resolution, :outcome, :bucket, :holds, :seconds) "
    "ON CONFLICT (resolution, outcome, bucket) DO UPDATE SET "
    "holds = hold_waits.holds + excluded.holds, seconds = hold_waits.seconds + excluded.seconds"
)


def _count_waits(conn: Connection, holds: builtins.list[Hold]) -> None:
    """Add the waits of newly resolved ``holds`` to ``hold_waits``, in key order (writers lock the
    rows in one order)."""
    groups: dict[tuple[str, str, int], list[float]] = {}
    for hold in holds:
        waited = hold.waited_seconds or 0.0
        key = (hold.resolution or "", hold.outcome or "", bucket_of(waited))
        group = groups.setdefault(key, [0, 0.0])
        group[0] += 1
        group[1] += waited
    rows = [
        {"resolution": r, "outcome": o, "bucket": b, "holds": int(n), "seconds": float(s)}
        for (r, o, b), (n, s) in sorted(groups.items())
    ]
    if rows:
        conn.execute(_ADD_WAITS, rows)


__all__ = [
    "HOLD_COLUMNS",
    "OUTCOMES",
    "PENDING",
    "REJECTED",
    "RELEASED",
    "RESOLUTIONS",
    "STATUSES",
    "TIMEOUT",
    "VERDICT",
    "VERDICT_OUTCOMES",
    "WAIT_BUCKETS",
    "Hold",
    "HoldRepository",
    "bucket_of",
]
