"""``GET /v1/stream``: decisions as they happen, as Server-Sent Events.

One :class:`DecisionFeed` per app tails the decisions table and fans out to every subscriber, so
decisions made by a worker in another process arrive too, and a hundred open streams cost one query
per poll, not a hundred. Each subscriber has a bounded buffer: a slow client skips ahead (it is told
how many it missed with an ``event: gap``) and never holds up the poller, scoring or other clients.
What a subscriber has waiting is sent as one write per wake-up, not one per decision, so the event
loop that also answers ``POST /v1/score`` does a few writes a second per stream however busy the
traffic. The number of open streams is capped, in all and per client (the key's name, or the address
without keys): past either cap a new stream is refused with 503 rather than slowing everything else down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from sqlalchemy import and_, or_, select
from starlette.background import BackgroundTask

from fraudstream.api.deps import CallerDep, StoreDep
from fraudstream.api.keyring import ANONYMOUS, Caller
from fraudstream.events.transaction import DECISIONS, DECISIONS_PATTERN, ID_PATTERN, MAX_ID_LENGTH
from fraudstream.storage import tables
from fraudstream.storage.errors import StorageError
from fraudstream.storage.store import Store

log = logging.getLogger(__name__)

OUTCOMES = DECISIONS
_d = tables.decisions
COLUMNS = (
    _d.c.transaction_id, _d.c.customer_id, _d.c.decision, _d.c.probability, _d.c.reasons, _d.c.rules,
    _d.c.amount, _d.c.timestamp, _d.c.decided_at, _d.c.model_version,
)  # fmt: skip
NAMES = tuple(str(column.name) for column in COLUMNS)  # plain str: orjson refuses str subclasses as keys
Key = tuple[datetime, str]


@dataclass(eq=False)
class Subscription:
    """One client's bounded buffer: appending never blocks; a full buffer drops its oldest entry."""

    outcomes: frozenset[str]
    customer_id: str | None
    size: int
    client: str = ""
    items: deque[dict[str, Any]] = field(init=False)
    skipped: int = 0
    closed: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.items = deque(maxlen=self.size)

    def offer(self, rows: list[dict[str, Any]]) -> None:
        wanted = [
            r
            for r in rows
            if r["decision"] in self.outcomes
            and (self.customer_id is None or r["customer_id"] == self.customer_id)
        ]
        if not wanted:
            return
        overflow = len(self.items) + len(wanted) - self.size
        if overflow > 0:
            self.skipped += overflow
        self.items.extend(wanted)
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()


class StreamsFull(Exception):
    """No more streams may be opened now (503)."""


class DecisionFeed:
    """Tails the decisions table by ``(decided_at, transaction_id)`` and fans rows out to subscribers.

    The poller starts with the first subscriber and stops with the last (or the app). Every poll also
    looks ``lookback`` seconds behind the newest row seen, because a concurrent writer can commit a
    decision stamped slightly earlier than one already read; ids already sent are remembered for that
    window so nothing is sent twice. Only the outcomes some subscriber wants are read.
    """

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 0.25,
        queue_size: int = 1000,
        heartbeat: float = 15.0,
        lookback: float = 1.0,
        page: int = 5000,
        max_subscribers: int = 100,
        max_per_client: int = 5,
    ) -> None:
        self.store, self.interval, self.queue_size = store, interval, queue_size
        self.max_subscribers, self.max_per_client = max_subscribers, max_per_client
        self.heartbeat, self.lookback, self.page = heartbeat, timedelta(seconds=lookback), page
        self.subscribers: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None
        self.polls = 0
        self._floor = datetime.now(UTC)
        self._newest: datetime | None = None
        self._resume: Key | None = None
        self._seen: dict[str, datetime] = {}

    def subscribe(
        self, outcomes: frozenset[str], customer_id: str | None = None, client: str = ""
    ) -> Subscription:
        """A new subscriber's buffer; :class:`StreamsFull` past either cap on open streams."""
        if len(self.subscribers) >= self.max_subscribers:
            raise StreamsFull(
                f"{len(self.subscribers)} streams are open, the most this server allows "
                "(FRAUD_STREAM_MAX_CLIENTS): retry later"
            )
        mine = sum(1 for s in self.subscribers if s.client == client)
        if mine >= self.max_per_client:
            raise StreamsFull(
                f"this client has {mine} streams open, the most one client may "
                "(FRAUD_STREAM_MAX_PER_CLIENT): close one first"
            )
        subscription = Subscription(outcomes, customer_id, self.queue_size, client)
        self.subscribers.add(subscription)
        if self.task is None or self.task.done():
            self._floor, self._newest, self._resume, self._seen = datetime.now(UTC), None, None, {}
            self.task = asyncio.create_task(self._run(), name="fraudstream-decision-feed")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)

    async def stop(self) -> None:
        """Stop polling and end every open stream."""
        for subscription in list(self.subscribers):
            subscription.close()
        self.subscribers.clear()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    def wanted(self) -> list[str]:
        return sorted(set().union(*(s.outcomes for s in self.subscribers)))

    async def _run(self) -> None:
        while self.subscribers:
            wanted, pause = self.wanted(), self.interval
            try:
                rows = await asyncio.to_thread(self.read, wanted)
            except StorageError as error:
                log.warning("decision stream: cannot read decisions (%s); retrying", error)
                rows, pause = [], max(self.interval, 1.0)
            except Exception:  # a bug here must not silently end every open stream
                log.exception("decision stream: poll failed; retrying")
                rows, pause = [], max(self.interval, 1.0)
            if not set(self.wanted()) <= set(wanted):
                continue  # someone joined wanting more outcomes: read again, wider, so order holds
            fresh = self.advance(rows)
            for subscription in list(self.subscribers):
                subscription.offer(fresh)
            self.polls += 1
            await asyncio.sleep(pause)

    def read(self, outcomes: list[str]) -> list[dict[str, Any]]:
        """Decisions of ``outcomes`` from the cursor on, oldest first: one query, no feature vectors.

        It runs off the event loop and leaves the cursor alone; :meth:`advance` moves it.
        """
        query = select(*COLUMNS).where(_d.c.decision.in_(outcomes))
        if self._resume is not None:  # catching up after a full page: plain keyset, no look-back
            at, after = self._resume
            query = query.where(
                or_(_d.c.decided_at > at, and_(_d.c.decided_at == at, _d.c.transaction_id > after))
            )
        else:
            low = self._floor if self._newest is None else max(self._floor, self._newest - self.lookback)
            query = query.where(_d.c.decided_at >= low)
        query = query.order_by(_d.c.decided_at, _d.c.transaction_id).limit(self.page)
        return [dict(zip(NAMES, row, strict=True)) for row in self.store.query(query)]

    def advance(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Move past ``rows``: remember what was sent and where to resume; the ones not sent before."""
        self._resume = (
            (rows[-1]["decided_at"], rows[-1]["transaction_id"]) if len(rows) == self.page else None
        )
        fresh = [row for row in rows if row["transaction_id"] not in self._seen]
        for row in fresh:
            self._seen[row["transaction_id"]] = row["decided_at"]
        if rows:
            self._newest = max(self._newest or rows[-1]["decided_at"], rows[-1]["decided_at"])
        if self._newest is not None and len(self._seen) > self.page:
            horizon = self._newest - self.lookback
            self._seen = {t: at for t, at in self._seen.items() if at >= horizon}
        return fresh


def event(row: dict[str, Any]) -> bytes:
    """One decision as an SSE message: a single ``data:`` line of JSON."""
    return b"data: " + orjson.dumps(row) + b"\n\n"


def feed_for(app: FastAPI, store: Store) -> DecisionFeed:
    """The app's one feed, created on first use (tests may install their own beforehand)."""
    feed: DecisionFeed | None = getattr(app.state, "decision_feed", None)
    if feed is None:
        settings = app.state.settings
        feed = DecisionFeed(
            store,
            max_subscribers=settings.stream_max_clients,
            max_per_client=settings.stream_max_per_client,
        )
        app.state.decision_feed = feed
    return feed


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Merged into the app's lifespan by ``include_router``: stop the poller at shutdown."""
    yield
    feed: DecisionFeed | None = getattr(app.state, "decision_feed", None)
    if feed is not None:
        await feed.stop()


router = APIRouter(prefix="/v1/stream", tags=["stream"], lifespan=lifespan)


def parse_outcomes(value: str) -> frozenset[str]:
    names = frozenset(part.strip().upper() for part in value.split(",") if part.strip())
    unknown = sorted(names - set(OUTCOMES))
    if not names or unknown:
        message = f"decision must be a comma-separated list of {', '.join(OUTCOMES)}"
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "decision"), "msg": message, "input": value}]
        )
    return names


#: Most decisions sent in one write.
CHUNK = 500


async def _events(
    feed: DecisionFeed, subscription: Subscription, duration: float | None
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    end = math.inf if duration is None else loop.time() + duration
    try:
        yield b"retry: 3000\n: connected\n\n"
        while not subscription.closed and loop.time() < end:
            if subscription.skipped:  # before the items that came after the skipped ones
                skipped, subscription.skipped = subscription.skipped, 0
                yield b"event: gap\ndata: " + orjson.dumps({"skipped": skipped}) + b"\n\n"
            elif subscription.items:
                items = subscription.items
                yield b"".join([event(items.popleft()) for _ in range(min(len(items), CHUNK))])
            else:
                subscription.ready.clear()
                try:
                    await asyncio.wait_for(subscription.ready.wait(), min(feed.heartbeat, end - loop.time()))
                except TimeoutError:
                    if loop.time() < end:
                        yield b": heartbeat\n\n"
    finally:
        feed.unsubscribe(subscription)


def _client(request: Request, caller: Caller) -> str:
    """Whose stream this is, for the per-client cap: the key's name, else (no keys set) the peer's
    address."""
    if caller is not ANONYMOUS:
        return "key:" + caller.name
    return "addr:" + (request.client.host if request.client else "")


@router.get(
    "",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "one `data:` JSON per decision"},
        503: {"description": "too many streams are open, in all or for this client: retry later"},
    },
)
async def stream(
    request: Request,
    store: StoreDep,
    caller: CallerDep,
    decision: Annotated[
        str, Query(description="comma-separated outcomes, e.g. FLAG,BLOCK", pattern=DECISIONS_PATTERN)
    ] = ",".join(OUTCOMES),
    customer_id: Annotated[
        str | None, Query(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    ] = None,
    duration: Annotated[
        float | None, Query(gt=0, le=86_400, description="end the stream after this many seconds")
    ] = None,
) -> StreamingResponse:
    """Decisions made from now on, pushed as they are stored (by this process or any other worker).

    Each message is ``data: {transaction_id, customer_id, decision, probability, reasons, rules, amount,
    timestamp, decided_at, model_version}``. A client too slow to keep up gets ``event: gap`` with
    ``{"skipped": n}`` and continues with the newest decisions; comments keep idle connections alive.
    Open streams are capped in all and per client: past a cap the answer is 503.
    """
    outcomes = parse_outcomes(decision)
    feed = feed_for(request.app, store)
    try:
        subscription = feed.subscribe(outcomes, customer_id, _client(request, caller))
    except StreamsFull as full:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, str(full), headers={"Retry-After": "10"}
        ) from None
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _events(feed, subscription, duration),
        media_type="text/event-stream",
        headers=headers,
        background=BackgroundTask(feed.unsubscribe, subscription),  # if the body never started
    )
