"""``CaseRepository``: the analysts' queue. FLAG, HOLD and BLOCK decisions grouped into cases, and what
analysts do with them: claim, assign, note, decide; every action in the audit log. A CHALLENGE opens no
case: the customer answers it, and its result is a label of its own (see :mod:`.challenges`).

Cases are a projection of the stored decisions, never written on the scoring path: :meth:`sync`
groups the FLAG, HOLD and BLOCK decisions stored since its cursor, in one transaction with the cursor, and
the queue's reads call it first. A decision joins the case of its grouping value (the customer, by
default) that is not closed, or opens one. Each decision is grouped once (its id is the key of
``case_transactions``), and the cursor re-reads a margin behind itself, so a decision committed a
little after a later one is still grouped: nothing is lost and nothing counted twice, whichever
process groups and however often.

A verdict writes one label per transaction of the case (source ``case``, the verdict time as label
time) before it closes the case, so a verdict given twice (a retry after a crash) stores its labels
once; ``inconclusive`` writes none. Closing the case resolves the pending holds of its transactions in
the same database transaction (see :mod:`.holds`): fraud rejects them, legitimate releases them, and
inconclusive gives them the default outcome.

Opening a case, claiming or assigning one and its verdict emit the webhook events ``case.opened``,
``case.updated`` and ``case.verdict`` in the transaction that does it (see :mod:`.webhooks`).
"""

from __future__ import annotations

import builtins
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, insert, literal_column, select, update

from fraudstream.events.transaction import Label
from fraudstream.events.webhook import CASE_OPENED, CASE_UPDATED, CASE_VERDICT, WebhookEvent
from fraudstream.storage import tables
from fraudstream.storage._audit import write_audit
from fraudstream.storage._labels import LabelChanges, LabelRepository
from fraudstream.storage.database import Database
from fraudstream.storage.holds import VERDICT, VERDICT_OUTCOMES, Hold, HoldRepository
from fraudstream.storage.webhooks import emit

_c, _ct, _n, _a = tables.cases, tables.case_transactions, tables.case_notes, tables.audit_log
_d, _t, _cur = tables.decisions, tables.transactions, tables.case_cursor

OPEN, IN_REVIEW, CLOSED = "open", "in_review", "closed"
STATUSES = (OPEN, IN_REVIEW, CLOSED)
VERDICTS = ("fraud", "legitimate", "inconclusive")
#: What a case can be grouped by: a column of every stored transaction.
GROUP_KEYS = ("customer_id", "device_id", "ip_address", "merchant_id")
#: What orders the queue: the expected loss (probability × amount, summed), the amount, or the top score.
PRIORITIES = {"expected_loss": _c.c.expected_loss, "amount": _c.c.amount, "probability": _c.c.max_probability}
LABEL_SOURCE = "case"
#: The decisions cases group: every one an analyst may act on. A CHALLENGE is the customer's to answer.
CASE_DECISIONS = ("FLAG", "HOLD", "BLOCK")
#: How far behind its cursor grouping looks again: a decision is stored a batch after it is made, and
#: one process may commit a little after another one's later decisions.
MARGIN = timedelta(minutes=5)
CHUNK = 5_000


class CaseError(ValueError):
    """A case action that cannot be done: ``status`` 404 (no such case) or 409 (not in that state)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Case:
    id: int
    group_key: str
    group_value: str
    status: str
    assignee: str | None
    priority: float
    expected_loss: float
    transactions: int
    amount: float
    max_probability: float
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    verdict: str | None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    """The holds its verdict resolved (filled in by :meth:`CaseRepository.verdict` only)."""

    def summary(self) -> dict[str, Any]:
        """What the audit log keeps of a case before and after an action."""
        return {"status": self.status, "assignee": self.assignee, "verdict": self.verdict}

    def event(self, type_: str, key: str, **extra: Any) -> WebhookEvent:
        """The webhook event ``type_`` about this case (see :mod:`fraudstream.events.webhook`)."""
        data = {
            name: getattr(self, name)
            for name in (
                "id", "group_key", "group_value", "status", "assignee", "verdict", "transactions", "amount",
                "expected_loss", "max_probability", "opened_at", "updated_at", "closed_at",
            )
        }  # fmt: skip
        return WebhookEvent(type_, key, data | extra, subject=str(self.id))


class CaseRepository:
    def __init__(self, db: Database, labels: LabelRepository, holds: HoldRepository | None = None) -> None:
        self._db = db
        self._labels = labels
        self._holds = holds if holds is not None else HoldRepository(db)

    # -- grouping -------------------------------------------------------------------------------

    def sync(self, group_by: str = "customer_id") -> int:
        """Group the FLAG, HOLD and BLOCK decisions stored since the cursor into cases; how many joined
        one."""
        if group_by not in GROUP_KEYS:
            raise ValueError(f"group_by: expected one of {', '.join(GROUP_KEYS)}, got {group_by!r}")
        with self._db.read() as conn:  # most looks find nothing new: no write lock for them
            if not conn.execute(_ungrouped(group_by, _cursor(conn)).limit(1)).first():
                return 0
        grouped = 0
        while True:
            with self._db.write() as conn:
                self._db.vendor.lock_cases(conn)
                n = self._group(conn, group_by)
            grouped += n
            if n < CHUNK:
                return grouped

    def _group(self, conn: Connection, group_by: str) -> int:
        cursor = _cursor(conn)
        rows = conn.execute(_ungrouped(group_by, cursor).limit(CHUNK)).all()
        if not rows:
            return 0
        by_group: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for row in rows:
            by_group[("customer_id" if row.fallback else group_by, str(row.value))].append(row)
        now = datetime.now(UTC)
        opened = [
            case_id
            for (group_key, group_value), members in by_group.items()
            if (case_id := self._join(conn, group_key, group_value, members, now)) is not None
        ]
        cases = (self._get(conn, case_id, "expected_loss") for case_id in opened)
        emit(conn, (case.event(CASE_OPENED, str(case.id)) for case in cases), now=now)
        latest = max(row.decided_at for row in rows)
        if cursor is None:
            conn.execute(insert(_cur).values(id=1, decided_at=latest))
        elif latest > cursor:
            conn.execute(update(_cur).where(_cur.c.id == 1).values(decided_at=latest))
        return len(rows)

    def _join(self, conn: Connection, key: str, value: str, rows: list[Any], now: datetime) -> int | None:
        """Add ``rows`` (decisions) to the case of ``key`` = ``value`` that is not closed, or open one;
        the id of the case opened, if one was."""
        where = and_(_c.c.group_key == key, _c.c.group_value == value, _c.c.status != CLOSED)
        case = conn.execute(select(_c.c.id).where(where)).scalar_one_or_none()
        loss = sum(float(r.probability) * float(r.amount) for r in rows)
        amount = sum(float(r.amount) for r in rows)
        top = max(float(r.probability) for r in rows)
        opened = case is None
        if case is None:
            values: dict[str, Any] = {"group_key": key, "group_value": value, "status": OPEN}
            values |= {"expected_loss": loss}
            values |= {"transactions": len(rows), "amount": amount, "max_probability": top}
            values |= {"opened_at": min(r.decided_at for r in rows), "updated_at": now}
            case = conn.execute(insert(_c).values(**values).returning(_c.c.id)).scalar_one()
        else:
            conn.execute(
                update(_c)
                .where(_c.c.id == case)
                .values(
                    expected_loss=_c.c.expected_loss + loss,
                    transactions=_c.c.transactions + len(rows),
                    amount=_c.c.amount + amount,
                    # ``top`` is a float, so its repr is a plain SQL number
                    max_probability=literal_column(self._db.vendor.greatest("max_probability", repr(top))),
                    updated_at=now,
                )
            )
        conn.execute(
            insert(_ct),
            [
                {
                    "transaction_id": r.transaction_id,
                    "case_id": case,
                    "decision": r.decision,
                    "probability": r.probability,
                    "amount": r.amount,
                    "decided_at": r.decided_at,
                }
                for r in rows
            ],
        )
        return int(case) if opened else None

    # -- reading ---------------------------------------------------------------------------------

    def list(
        self,
        *,
        status: builtins.list[str] | None = None,
        assignee: str | None = None,
        min_priority: float | None = None,
        older_than: timedelta | None = None,
        priority: str = "expected_loss",
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[Case]:
        """Cases by priority (highest first, then oldest), filtered by status (default: not closed),
        assignee, lowest priority, and age (opened at least ``older_than`` ago)."""
        rank = PRIORITIES[priority]
        query = select(_c).order_by(rank.desc(), _c.c.opened_at, _c.c.id).limit(limit).offset(offset)
        query = query.where(_c.c.status.in_(status or [OPEN, IN_REVIEW]))
        if assignee is not None:
            query = query.where(_c.c.assignee == assignee)
        if min_priority is not None:
            query = query.where(rank >= min_priority)
        if older_than is not None:
            query = query.where(_c.c.opened_at <= datetime.now(UTC) - older_than)
        with self._db.read() as conn:
            return [_case(row, priority) for row in conn.execute(query).mappings()]

    def get(self, case_id: int, priority: str = "expected_loss") -> Case:
        """The case with its decisions (newest first) and notes (oldest first); 404 ``CaseError``."""
        with self._db.read() as conn:
            return self._get(conn, case_id, priority, full=True)

    def _get(self, conn: Connection, case_id: int, priority: str, *, full: bool = False) -> Case:
        row = conn.execute(select(_c).where(_c.c.id == case_id)).mappings().one_or_none()
        if row is None:
            raise CaseError(f"no case {case_id}", status=404)
        case = _case(row, priority)
        if full:
            members = select(_ct).where(_ct.c.case_id == case_id).order_by(_ct.c.decided_at.desc())
            case.decisions = [dict(r) for r in conn.execute(members).mappings()]
            notes = select(_n).where(_n.c.case_id == case_id).order_by(_n.c.id)
            case.notes = [dict(r) for r in conn.execute(notes).mappings()]
        return case

    def transaction_ids(self, case_id: int) -> builtins.list[str]:
        with self._db.read() as conn:
            return list(conn.execute(select(_ct.c.transaction_id).where(_ct.c.case_id == case_id)).scalars())

    def audit(
        self, *, subject: str | None = None, actor: str | None = None, limit: int = 100
    ) -> builtins.list[dict[str, Any]]:
        """The audit log, newest first, of one subject (``case:12``) or actor when given."""
        query = select(_a).order_by(_a.c.id.desc()).limit(limit)
        if subject is not None:
            query = query.where(_a.c.subject == subject)
        if actor is not None:
            query = query.where(_a.c.actor == actor)
        with self._db.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # -- acting ----------------------------------------------------------------------------------

    def assign(self, case_id: int, assignee: str, actor: str, *, claim: bool = False) -> Case:
        """Give the case to ``assignee`` (``claim``: the actor takes it, refused when another holds
        it); an open case goes in review. 409 for a closed case."""
        with self._db.write() as conn:
            self._db.vendor.lock_cases(conn)
            case = self._get(conn, case_id, "expected_loss")
            if case.status == CLOSED:
                raise CaseError(f"case {case_id} is closed ({case.verdict}): reopen it by a new decision")
            if claim and case.assignee not in (None, actor):
                raise CaseError(f"case {case_id} is already claimed by {case.assignee}")
            after = {"status": IN_REVIEW, "assignee": assignee}
            conn.execute(update(_c).where(_c.c.id == case_id).values(**after, updated_at=datetime.now(UTC)))
            action = "claim" if claim else "assign"
            entry = self._audit(conn, actor, action, case, case.summary() | after)
            changed = self._get(conn, case_id, "expected_loss")
            previous = {"status": case.status, "assignee": case.assignee}
            extra = {"change": action, "actor": actor, "previous": previous}
            emit(conn, [changed.event(CASE_UPDATED, f"audit:{entry}", **extra)])
            return changed

    def note(self, case_id: int, text: str, actor: str) -> dict[str, Any]:
        """Add a note by ``actor``; the stored note."""
        now = datetime.now(UTC)
        with self._db.write() as conn:
            case = self._get(conn, case_id, "expected_loss")
            values = {"case_id": case_id, "author": actor, "text": text, "created_at": now}
            note_id = conn.execute(insert(_n).values(**values).returning(_n.c.id)).scalar_one()
            conn.execute(update(_c).where(_c.c.id == case_id).values(updated_at=now))
            self._audit(conn, actor, "note", case, {"note_id": int(note_id), "text": text})
        return values | {"id": int(note_id)}

    def verdict(
        self,
        case_ids: builtins.list[int],
        verdict: str,
        actor: str,
        note: str | None = None,
        *,
        hold_default: str = "BLOCK",
    ) -> tuple[builtins.list[Case], LabelChanges, builtins.list[Label]]:
        """Close each case with ``verdict``: first the labels of its transactions (fraud or
        legitimate, at the verdict time, source ``case``), then the case, its note, its pending holds
        (fraud: BLOCK, legitimate: APPROVE, inconclusive: ``hold_default``) and the audit entry. All or
        nothing: an unknown or closed case refuses the whole call before anything is written. Returns
        the closed cases (each with the holds it resolved), what the labels changed, and the labels
        written."""
        if verdict not in VERDICTS:
            raise CaseError(f"verdict: expected one of {', '.join(VERDICTS)}, got {verdict!r}", status=422)
        ids = list(dict.fromkeys(case_ids))
        with self._db.read() as conn:
            cases = [self._get(conn, i, "expected_loss") for i in ids]
            closed = [c.id for c in cases if c.status == CLOSED]
            if closed:
                raise CaseError(f"already closed: case {', '.join(map(str, closed))}; nothing was changed")
            of_case: dict[int, builtins.list[str]] = defaultdict(list)
            for case_id, transaction_id in conn.execute(
                select(_ct.c.case_id, _ct.c.transaction_id).where(_ct.c.case_id.in_(ids))
            ):
                of_case[int(case_id)].append(transaction_id)
            transaction_ids = [t for i in ids for t in of_case.get(i, [])]
        now = datetime.now(UTC)
        labels: builtins.list[Label] = []
        changes = LabelChanges()
        if verdict != "inconclusive":
            labels = [
                Label(transaction_id=t, is_fraud=verdict == "fraud", label_time=now, source=LABEL_SOURCE)
                for t in transaction_ids
            ]
            changes = self._labels.apply(labels)
        held = VERDICT_OUTCOMES.get(verdict, hold_default)
        with self._db.write() as conn:
            self._db.vendor.lock_cases(conn)
            done: builtins.list[Case] = []
            for case in cases:
                current = self._get(conn, case.id, "expected_loss")
                if current.status == CLOSED:  # closed meanwhile: its labels were just written again
                    done.append(current)
                    continue
                after = {"status": CLOSED, "verdict": verdict, "closed_at": now}
                conn.execute(update(_c).where(_c.c.id == case.id).values(**after, updated_at=now))
                if note:
                    conn.execute(insert(_n).values(case_id=case.id, author=actor, text=note, created_at=now))
                holds = self._holds.resolve(conn, of_case.get(case.id, []), held, VERDICT, actor, now)
                summary = current.summary() | {"status": CLOSED, "verdict": verdict}
                if holds:
                    summary |= {"holds": {h.transaction_id: h.outcome for h in holds}}
                self._audit(conn, actor, "verdict", current, summary | ({"note": note} if note else {}))
                closed_now = self._get(conn, case.id, "expected_loss")
                closed_now.holds = holds
                done.append(closed_now)
            extra = {"actor": actor, "note": note}
            events = [
                c.event(
                    CASE_VERDICT,
                    str(c.id),
                    **extra,
                    transaction_ids=of_case.get(c.id, []),  # those labelled, as read
                    holds={h.transaction_id: h.outcome for h in c.holds},
                )
                for c in done
            ]
            emit(conn, events, now=now)
        return done, changes, labels

    def _audit(self, conn: Connection, actor: str, action: str, case: Case, after: dict[str, Any]) -> int:
        """Write the audit entry of an action on ``case``; its id."""
        return write_audit(conn, actor, action, f"case:{case.id}", case.summary(), after)


def _cursor(conn: Connection) -> datetime | None:
    """How far the stored decisions have been grouped: the newest grouped decision time."""
    return conn.execute(select(_cur.c.decided_at).where(_cur.c.id == 1)).scalar_one_or_none()


def _ungrouped(group_by: str, cursor: datetime | None) -> Any:
    """The FLAG, HOLD and BLOCK decisions in no case yet, from a margin behind the cursor, oldest first,
    with their grouping value (``fallback``: the transaction lacks the field, so its customer's)."""
    own = group_by == "customer_id"
    value = _d.c.customer_id if own else func.coalesce(_t.c[group_by], _d.c.customer_id)
    key = _d.c.customer_id.is_(None) if own else _t.c[group_by].is_(None)
    query = (
        select(
            _d.c.transaction_id, _d.c.decision, _d.c.probability, _d.c.amount, _d.c.decided_at,
            value.label("value"), key.label("fallback"),
        )
        .select_from(_d.outerjoin(_ct, _ct.c.transaction_id == _d.c.transaction_id))
        .where(_d.c.decision.in_(CASE_DECISIONS), _ct.c.transaction_id.is_(None))
        .order_by(_d.c.decided_at, _d.c.transaction_id)
    )  # fmt: skip
    if not own:
        query = query.join(_t, _t.c.transaction_id == _d.c.transaction_id)
    if cursor is not None:
        query = query.where(_d.c.decided_at >= cursor - MARGIN)
    return query


def _case(row: Any, priority: str) -> Case:
    values = dict(row)
    return Case(**values, priority=float(values[PRIORITIES[priority].name]))


__all__ = [
    "CASE_DECISIONS",
    "GROUP_KEYS",
    "PRIORITIES",
    "STATUSES",
    "VERDICTS",
    "Case",
    "CaseError",
    "CaseRepository",
]
