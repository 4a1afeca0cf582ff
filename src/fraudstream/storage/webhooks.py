"""Event webhooks in the store: endpoints, events, deliveries and the log of every attempt.

**Writing events.** :func:`emit` stores events inside the caller's transaction, so an event commits
with the fact it reports or not at all: case grouping (``case.opened``), claims and assignments
(``case.updated``), verdicts (``case.verdict``) and labels (``label.created``) call it in the
transaction that writes them. Decisions are never delayed for it: :meth:`WebhookRepository.follow_decisions`
reads the stored decisions that have no event yet from a margin behind its cursor (the newest decision
followed), because a batch commits a little after its decisions are stamped and one process's batch
may commit after another's later one; a full look back (:data:`MARGIN`, as case grouping uses) finds
any decision committed up to five minutes late. It writes their events, deliveries and the cursor in
one transaction. A crash before that commit leaves the decisions to the next pass; event ids are
derived from the fact (:func:`~fraudstream.events.webhook.event_id`), so a second pass, in this
process or another, stores nothing twice. Nothing is lost either way.

**Fan-out.** An event is stored only when an enabled endpoint subscribes to its type, with one
delivery per such endpoint. An endpoint receives the events emitted while it subscribes; of the
decisions, those decided since :attr:`Endpoint.subscribed_at` (it was created, enabled again, or its
types changed), so a paused endpoint is not flooded with what it missed.

**Delivering.** Senders claim due deliveries under a lease (:meth:`~WebhookRepository.claim`: SQLite
serialises claims, PostgreSQL skips rows another claim holds, so one claimer has each delivery), post
them, and settle each (:meth:`~WebhookRepository.settle`): every attempt is logged; a delivery ends
``delivered`` or ``failed``, or waits for its next attempt. A sender that dies between posting and
settling leaves its claims to expire, and they are posted again: at-least-once, the same event id
each time.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, insert, or_, select, update

from fraudstream.events.webhook import ALL_TYPES, DECISION_CREATED, WebhookEvent
from fraudstream.storage import tables
from fraudstream.storage._audit import write_audit
from fraudstream.storage._vendors import vendor
from fraudstream.storage.database import Database, loads
from fraudstream.storage.rows import chunks

_ep, _ev, _dl = tables.webhook_endpoints, tables.webhook_events, tables.webhook_deliveries
_at, _cur, _d = tables.webhook_attempts, tables.webhook_cursor, tables.decisions

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATUSES = (PENDING, DELIVERED, FAILED)
#: How far behind its cursor :meth:`WebhookRepository.follow_decisions` looks again, by default, for
#: decisions committed after later ones (the margin case grouping uses).
MARGIN = timedelta(minutes=5)
#: Decisions turned into events per transaction.
CHUNK = 2_000
SECRET_PREFIX = "whsec_"


class WebhookError(ValueError):
    """An action on an endpoint or a delivery that cannot be done: ``status`` 404 (no such one) or 409."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """Where events go: ``url`` receives the ``events`` types (or ``*``: all) while ``enabled``, each
    signed with ``secret``."""

    id: int
    url: str
    events: list[str]
    enabled: bool
    description: str | None
    created_at: datetime
    created_by: str
    subscribed_at: datetime
    deleted_at: datetime | None = None
    secret: str = field(default="", repr=False)

    def subscribes(self, type_: str) -> bool:
        return ALL_TYPES in self.events or type_ in self.events

    def audited(self) -> dict[str, Any]:
        """What the audit log keeps of it: never the secret."""
        return {
            "url": self.url, "events": self.events, "enabled": self.enabled, "description": self.description
        }  # fmt: skip


@dataclass(frozen=True)
class Claimed:
    """A delivery a sender holds: the event's exact ``body`` to post to ``url``, signed with ``secret``."""

    id: int
    attempts: int
    """attempts made before this one"""
    created_at: datetime
    event_id: str
    event_type: str
    body: bytes
    endpoint_id: int
    url: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class Outcome:
    """What became of a claimed delivery: ``status`` ``delivered``, ``failed``, or ``pending`` until
    ``next_attempt_at`` (``None``: unchanged, for a delivery handed back untried). ``attempt`` is the
    number of the attempt made (``None`` when none was), with what it met."""

    delivery_id: int
    status: str
    next_attempt_at: datetime | None = None
    attempt: int | None = None
    attempted_at: datetime | None = None
    status_code: int | None = None
    error: str | None = None
    duration_ms: float = 0.0


def new_secret() -> str:
    """A signing secret: ``whsec_`` and 43 URL-safe characters (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _endpoint(row: Any) -> Endpoint:
    values = dict(row)  # its times come back aware UTC, as every UTCDateTime column's
    values["id"] = int(values["id"])
    values["events"] = list(values["events"])
    return Endpoint(**values)


def _subscribers(conn: Connection) -> list[Endpoint]:
    query = select(_ep).where(_ep.c.enabled.is_(True), _ep.c.deleted_at.is_(None)).order_by(_ep.c.id)
    return [_endpoint(row) for row in conn.execute(query).mappings()]


def emit(conn: Connection, events: Iterable[WebhookEvent], *, now: datetime | None = None) -> int:
    """Store ``events`` in the caller's transaction, each with one delivery to every enabled endpoint
    subscribed to its type; how many deliveries were queued. An event no endpoint wants is not stored;
    one stored already (the same type and key) is not stored again. ``events`` is read only when some
    endpoint is enabled, so a generator costs nothing without one.

    This is the one way events are written: a new type needs only a name in
    :data:`~fraudstream.events.webhook.EVENT_TYPES` and a call here where its fact is stored."""
    endpoints = _subscribers(conn)
    if not endpoints:
        return 0
    return _emit(conn, list(events), endpoints, now or datetime.now(UTC))


def _emit(
    conn: Connection,
    events: Sequence[WebhookEvent],
    endpoints: Sequence[Endpoint],
    now: datetime,
    made: Sequence[datetime] | None = None,
) -> int:
    """:func:`emit` to ``endpoints``; with ``made`` (each event's decision time), only to the endpoints
    subscribed by then."""
    targets: dict[str, list[int]] = {}
    rows = []
    for k, event in enumerate(events):
        wanted = [
            e.id
            for e in endpoints
            if e.subscribes(event.type) and (made is None or made[k] >= e.subscribed_at)
        ]
        if not wanted or event.id in targets:
            continue
        targets[event.id] = wanted
        rows.append(
            {
                "event_id": event.id,
                "type": event.type,
                "subject": event.subject[:160],
                "created": event.created(now),
                "emitted_at": now,
                "body": event.body(now).decode(),
            }
        )
    if not rows:
        return 0
    statement = vendor(conn.dialect.name).insert(_ev).on_conflict_do_nothing()
    stored = conn.execute(statement.returning(_ev.c.id, _ev.c.event_id), rows).all()
    deliveries = [
        {
            "event_id": int(row_id),
            "endpoint_id": endpoint_id,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for row_id, event_id in stored
        for endpoint_id in targets[event_id]
    ]
    if deliveries:
        conn.execute(insert(_dl), deliveries)
    return len(deliveries)


def _decision_event(row: Any) -> WebhookEvent:
    data = {
        "transaction_id": row.transaction_id,
        "customer_id": row.customer_id,
        "amount": float(row.amount),
        "timestamp": row.timestamp,
        "decision": row.decision,
        "probability": float(row.probability),
        "reasons": row.reasons,
        "rules": row.rules,
        "model_version": row.model_version,
        "rules_version": row.rules_version,
        "decided_at": row.decided_at,
    }
    return WebhookEvent(
        DECISION_CREATED, row.transaction_id, data, occurred=row.timestamp, subject=row.transaction_id
    )


def _unemitted(outcomes: Sequence[str] | None, since: datetime) -> Select[Any]:
    """The decisions decided from ``since`` on (of ``outcomes``, or all) with no ``decision.created``
    event yet, oldest first."""
    emitted = select(_ev.c.id).where(_ev.c.subject == _d.c.transaction_id, _ev.c.type == DECISION_CREATED)
    query = (
        select(
            _d.c.transaction_id, _d.c.customer_id, _d.c.amount, _d.c.timestamp, _d.c.decision,
            _d.c.probability, _d.c.reasons, _d.c.rules, _d.c.model_version, _d.c.rules_version,
            _d.c.decided_at,
        )
        .where(_d.c.decided_at >= since, ~emitted.exists())
        .order_by(_d.c.decided_at, _d.c.transaction_id)
    )  # fmt: skip
    if outcomes is not None:
        query = query.where(_d.c.decision.in_(list(outcomes)))
    return query


def _cursor(conn: Connection) -> datetime | None:
    """The newest decision time followed so far, ``None`` before the first."""
    return conn.execute(select(_cur.c.decided_at).where(_cur.c.id == 1)).scalar_one_or_none()


def _follow_from(endpoints: Sequence[Endpoint], cursor: datetime | None, margin: timedelta) -> datetime:
    """Where following starts: ``margin`` behind the ``cursor``, never before the first subscription."""
    first = min(e.subscribed_at for e in endpoints)
    return first if cursor is None else max(first, cursor - margin)


class WebhookRepository:
    """Endpoints (each change audited), events, deliveries with their attempts, and replays."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- endpoints -------------------------------------------------------------------------------

    def add_endpoint(
        self,
        url: str,
        events: Sequence[str],
        actor: str,
        *,
        enabled: bool = True,
        description: str | None = None,
    ) -> Endpoint:
        """Store an endpoint (checked by the caller) with a new secret, and its audit entry; the endpoint
        with its secret, which nothing else returns."""
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "url": url, "events": list(events), "secret": new_secret(), "enabled": enabled,
            "description": description, "created_at": now, "created_by": actor, "subscribed_at": now,
        }  # fmt: skip
        with self._db.write() as conn:
            new_id = conn.execute(insert(_ep).values(**values).returning(_ep.c.id)).scalar_one()
            endpoint = Endpoint(id=int(new_id), **values)
            write_audit(conn, actor, "webhook_add", f"webhook:{endpoint.id}", None, endpoint.audited())
        return endpoint

    def endpoints(self, *, deleted: bool = False) -> builtins.list[Endpoint]:
        """Every endpoint not deleted (with ``deleted``: those too), oldest first."""
        query = select(_ep).order_by(_ep.c.id)
        if not deleted:
            query = query.where(_ep.c.deleted_at.is_(None))
        with self._db.read() as conn:
            return [_endpoint(row) for row in conn.execute(query).mappings()]

    def endpoint(self, endpoint_id: int) -> Endpoint:
        """The endpoint (deleted or not); 404 :class:`WebhookError` when there is none."""
        with self._db.read() as conn:
            return self._endpoint(conn, endpoint_id)

    def subscribers(self) -> builtins.list[Endpoint]:
        """The enabled endpoints: who an event emitted now would go to."""
        with self._db.read() as conn:
            return _subscribers(conn)

    def change_endpoint(
        self,
        endpoint_id: int,
        actor: str,
        *,
        enabled: bool | None = None,
        events: Sequence[str] | None = None,
        url: str | None = None,
        description: str | None = None,
    ) -> Endpoint:
        """Change what is given, with an audit entry; enabling it again or changing its types starts its
        decisions afresh from now. 404 for no such endpoint, 409 for a deleted one."""
        now = datetime.now(UTC)
        with self._db.write() as conn:
            before = self._endpoint(conn, endpoint_id)
            if before.deleted_at is not None:
                raise WebhookError(f"webhook endpoint {endpoint_id} was deleted")
            values: dict[str, Any] = {}
            if enabled is not None and enabled != before.enabled:
                values["enabled"] = enabled
            if events is not None and list(events) != before.events:
                values["events"] = list(events)
            if url is not None and url != before.url:
                values["url"] = url
            if description is not None and description != before.description:
                values["description"] = description
            if not values:
                return before
            if values.get("enabled") or "events" in values:
                values["subscribed_at"] = now
            conn.execute(update(_ep).where(_ep.c.id == endpoint_id).values(**values))
            after = self._endpoint(conn, endpoint_id)
            write_audit(
                conn, actor, "webhook_change", f"webhook:{endpoint_id}", before.audited(), after.audited()
            )
        return after

    def delete_endpoint(self, endpoint_id: int, actor: str) -> Endpoint:
        """Delete an endpoint: nothing more is sent to it, its pending deliveries fail, and its row and
        delivery log stay. 404 for no such endpoint, 409 when it was deleted already."""
        now = datetime.now(UTC)
        with self._db.write() as conn:
            before = self._endpoint(conn, endpoint_id)
            if before.deleted_at is not None:
                raise WebhookError(f"webhook endpoint {endpoint_id} was deleted already")
            conn.execute(update(_ep).where(_ep.c.id == endpoint_id).values(deleted_at=now, enabled=False))
            conn.execute(
                update(_dl)
                .where(_dl.c.endpoint_id == endpoint_id, _dl.c.status == PENDING)
                .values(
                    status=FAILED, finished_at=now, claimed_by=None, last_error="the endpoint was deleted"
                )
            )
            after = self._endpoint(conn, endpoint_id)
            write_audit(conn, actor, "webhook_delete", f"webhook:{endpoint_id}", before.audited(), None)
        return after

    @staticmethod
    def _endpoint(conn: Connection, endpoint_id: int) -> Endpoint:
        row = conn.execute(select(_ep).where(_ep.c.id == endpoint_id)).mappings().first()
        if row is None:
            raise WebhookError(f"no webhook endpoint {endpoint_id}", status=404)
        return _endpoint(row)

    # -- events ----------------------------------------------------------------------------------

    def emit(self, events: Iterable[WebhookEvent]) -> int:
        """:func:`emit` in a transaction of its own, for facts stored already; how many deliveries."""
        with self._db.write() as conn:
            return emit(conn, events)

    def follow_decisions(
        self,
        outcomes: Sequence[str] | None = ("FLAG", "CHALLENGE", "HOLD", "BLOCK"),
        margin: timedelta = MARGIN,
    ) -> int:
        """Turn the stored decisions of ``outcomes`` (``None``: all), decided from ``margin`` before the
        newest one followed on, that have no ``decision.created`` event yet, into events for the
        endpoints that subscribe to it; how many decisions. The cursor moves with the events, in one
        transaction; with no subscriber nothing is read. A pass reads every decision of the margin, so
        frequent passes may take a short one and leave the full :data:`MARGIN` to every few."""
        with self._db.read() as conn:  # most passes find nothing new: no write lock for them
            endpoints = [e for e in _subscribers(conn) if e.subscribes(DECISION_CREATED)]
            if not endpoints:
                return 0
            since = _follow_from(endpoints, _cursor(conn), margin)
            if conn.execute(_unemitted(outcomes, since).limit(1)).first() is None:
                return 0
        followed = 0
        while True:
            with self._db.write() as conn:
                endpoints = [e for e in _subscribers(conn) if e.subscribes(DECISION_CREATED)]
                if not endpoints:
                    return followed
                cursor = _cursor(conn)
                since = _follow_from(endpoints, cursor, margin)
                rows = conn.execute(_unemitted(outcomes, since).limit(CHUNK)).all()
                if not rows:
                    return followed
                events = [_decision_event(row) for row in rows]
                decided = [r.decided_at for r in rows]
                _emit(conn, events, endpoints, datetime.now(UTC), decided)
                latest = max(decided)
                if cursor is None:
                    conn.execute(insert(_cur).values(id=1, decided_at=latest))
                elif latest > cursor:
                    conn.execute(update(_cur).where(_cur.c.id == 1).values(decided_at=latest))
            followed += len(rows)
            if len(rows) < CHUNK:
                return followed

    # -- delivering ------------------------------------------------------------------------------

    def claim(
        self, consumer: str, limit: int, lease_seconds: float, now: datetime | None = None
    ) -> builtins.list[Claimed]:
        """Claim up to ``limit`` due deliveries to enabled endpoints for ``lease_seconds``, the longest
        due first. A delivery is handed out again only once its lease has run out unsettled."""
        now = now or datetime.now(UTC)
        expired = now - timedelta(seconds=lease_seconds)
        live = select(_ep.c.id).where(_ep.c.enabled.is_(True), _ep.c.deleted_at.is_(None))
        due = (
            select(_dl.c.id)
            .where(_dl.c.status == PENDING, _dl.c.next_attempt_at <= now, _dl.c.endpoint_id.in_(live))
            .where(or_(_dl.c.claimed_at.is_(None), _dl.c.claimed_at < expired))
            .order_by(_dl.c.next_attempt_at, _dl.c.id)
            .limit(limit)
        )
        with self._db.read() as conn:  # most looks find nothing due: no write lock for them
            if conn.execute(due.limit(1)).first() is None:
                return []
        with self._db.write() as conn:
            ids = [int(i) for i in conn.execute(self._db.vendor.claimable(due)).scalars()]
            if not ids:
                return []
            conn.execute(update(_dl).where(_dl.c.id.in_(ids)).values(claimed_by=consumer, claimed_at=now))
            query = (
                select(
                    _dl.c.id, _dl.c.attempts, _dl.c.created_at, _ev.c.event_id, _ev.c.type, _ev.c.body,
                    _dl.c.endpoint_id, _ep.c.url, _ep.c.secret,
                )
                .join(_ev, _ev.c.id == _dl.c.event_id)
                .join(_ep, _ep.c.id == _dl.c.endpoint_id)
                .where(_dl.c.id.in_(ids))
                .order_by(_dl.c.next_attempt_at, _dl.c.id)
            )  # fmt: skip
            rows = conn.execute(query).all()
        return [
            Claimed(
                id=int(r.id), attempts=int(r.attempts), created_at=r.created_at,
                event_id=r.event_id, event_type=r.type, body=r.body.encode(), endpoint_id=int(r.endpoint_id),
                url=r.url, secret=r.secret,
            )
            for r in rows
        ]  # fmt: skip

    def settle(self, consumer: str, outcomes: Iterable[Outcome]) -> None:
        """Record what became of claimed deliveries, in one transaction: each attempt in the log, and
        each delivery's state, unless ``consumer``'s claim on it ran out and another took it."""
        outcomes = list(outcomes)
        if not outcomes:
            return
        attempts = [
            {
                "delivery_id": o.delivery_id, "attempt": o.attempt, "attempted_at": o.attempted_at,
                "status_code": o.status_code, "error": o.error, "duration_ms": o.duration_ms,
            }
            for o in outcomes
            if o.attempt is not None
        ]  # fmt: skip
        now = datetime.now(UTC)
        with self._db.write() as conn:
            if attempts:
                conn.execute(insert(_at), attempts)
            for o in outcomes:
                values: dict[str, Any] = {"status": o.status, "claimed_by": None, "claimed_at": None}
                if o.attempt is not None:
                    values |= {"attempts": o.attempt, "last_status": o.status_code, "last_error": o.error}
                elif o.error is not None:
                    values["last_error"] = o.error
                if o.next_attempt_at is not None:
                    values["next_attempt_at"] = o.next_attempt_at
                if o.status != PENDING:
                    values["finished_at"] = now
                conn.execute(
                    update(_dl)
                    .where(_dl.c.id == o.delivery_id, _dl.c.claimed_by == consumer)
                    .values(**values)
                )

    # -- the log ---------------------------------------------------------------------------------

    def deliveries(
        self,
        *,
        endpoint_id: int | None = None,
        event_type: str | None = None,
        status: str | None = None,
        event_id: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> builtins.list[dict[str, Any]]:
        """Deliveries newest first (ids below ``before``, for the next page), filtered by endpoint, event
        type, status or event, each with its attempts oldest first (``log``)."""
        query = _listing()
        for column, wanted in (
            (_dl.c.endpoint_id, endpoint_id), (_ev.c.type, event_type), (_dl.c.status, status),
            (_ev.c.event_id, event_id),
        ):  # fmt: skip
            if wanted is not None:
                query = query.where(column == wanted)
        if before is not None:
            query = query.where(_dl.c.id < before)
        query = query.order_by(_dl.c.id.desc()).limit(limit)
        with self._db.read() as conn:
            rows = [_delivery(row) for row in conn.execute(query).mappings()]
            _with_log(conn, rows)
        return rows

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        """One delivery with its log and the ``event`` it sends; 404 :class:`WebhookError` when there is
        none."""
        query = _listing().add_columns(_ev.c.body).where(_dl.c.id == delivery_id)
        with self._db.read() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                raise WebhookError(f"no webhook delivery {delivery_id}", status=404)
            found = _delivery(row) | {"event": loads(row["body"])}
            _with_log(conn, [found])
        return found

    def replay(self, delivery_id: int, actor: str) -> dict[str, Any]:
        """A new delivery of the same event to the same endpoint, due now (``replay_of`` names this one),
        with an audit entry. 404 for no such delivery, 409 when the endpoint is deleted or disabled."""
        now = datetime.now(UTC)
        with self._db.write() as conn:
            row = conn.execute(
                select(_dl.c.event_id, _dl.c.endpoint_id, _ep.c.enabled, _ep.c.deleted_at)
                .join(_ep, _ep.c.id == _dl.c.endpoint_id)
                .where(_dl.c.id == delivery_id)
            ).first()
            if row is None:
                raise WebhookError(f"no webhook delivery {delivery_id}", status=404)
            if row.deleted_at is not None or not row.enabled:
                state = "deleted" if row.deleted_at is not None else "disabled"
                raise WebhookError(f"webhook endpoint {row.endpoint_id} is {state}: nothing would be sent")
            values = {
                "event_id": row.event_id, "endpoint_id": row.endpoint_id, "status": PENDING, "attempts": 0,
                "next_attempt_at": now, "created_at": now, "replay_of": delivery_id,
            }  # fmt: skip
            new_id = int(conn.execute(insert(_dl).values(**values).returning(_dl.c.id)).scalar_one())
            replayed = {"delivery": delivery_id, "replay": new_id}
            write_audit(conn, actor, "webhook_replay", f"webhook:{int(row.endpoint_id)}", None, replayed)
        return self.delivery(new_id)

    def trim(self, older_than: datetime) -> int:
        """Delete deliveries that ended before ``older_than``, their attempts, and the events left with
        no delivery; how many deliveries went."""
        gone = 0
        with self._db.write() as conn:
            ended = select(_dl.c.id).where(_dl.c.status != PENDING, _dl.c.finished_at < older_than)
            ids = [int(i) for i in conn.execute(ended).scalars()]
            for chunk in chunks(ids):
                conn.execute(_at.delete().where(_at.c.delivery_id.in_(chunk)))
                gone += conn.execute(_dl.delete().where(_dl.c.id.in_(chunk))).rowcount
            if gone:
                kept = select(_dl.c.event_id)
                conn.execute(_ev.delete().where(_ev.c.id.not_in(kept)))
        return gone


def _listing() -> Select[Any]:
    return (
        select(
            _dl.c.id, _ev.c.event_id, _ev.c.type.label("event_type"), _dl.c.endpoint_id, _ep.c.url,
            _dl.c.status, _dl.c.attempts, _dl.c.created_at, _dl.c.next_attempt_at, _dl.c.finished_at,
            _dl.c.last_status, _dl.c.last_error, _dl.c.replay_of,
        )
        .join(_ev, _ev.c.id == _dl.c.event_id)
        .join(_ep, _ep.c.id == _dl.c.endpoint_id)
    )  # fmt: skip


_LISTED = tuple(_listing().selected_columns.keys())
"""The columns a delivery is listed with."""


def _delivery(row: Any) -> dict[str, Any]:
    out = {k: row[k] for k in _LISTED}
    if out["status"] != PENDING:
        out["next_attempt_at"] = None
    return out


def _with_log(conn: Connection, rows: builtins.list[dict[str, Any]]) -> None:
    """Give each delivery its attempts, oldest first, as ``log``."""
    by_id: dict[int, builtins.list[dict[str, Any]]] = {int(r["id"]): [] for r in rows}
    for chunk in chunks(builtins.list(by_id)):
        query = select(_at).where(_at.c.delivery_id.in_(chunk)).order_by(_at.c.id)
        for attempt in conn.execute(query).mappings():
            by_id[int(attempt["delivery_id"])].append(
                {
                    "attempt": attempt["attempt"],
                    "attempted_at": attempt["attempted_at"],
                    "status_code": attempt["status_code"],
                    "error": attempt["error"],
                    "duration_ms": attempt["duration_ms"],
                }
            )
    for row in rows:
        row["log"] = by_id[int(row["id"])]


__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "STATUSES",
    "Claimed",
    "Endpoint",
    "Outcome",
    "WebhookError",
    "WebhookRepository",
    "emit",
    "new_secret",
]
