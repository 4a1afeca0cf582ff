"""``/v1/webhooks``: event webhooks, the endpoints that receive them, and the delivery log (admin role).

``POST /v1/webhooks`` adds an endpoint: a URL (``http://`` or ``https://``; redirects are never
followed) and the event types it receives (``*`` for all, those added later included). The answer
holds the endpoint's signing secret, shown this once. Every delivery is a ``POST`` of the event's JSON
signed in ``Fraudstream-Signature: t=<unix seconds>,v1=<HMAC-SHA256 hex of "t.body">``, with the event's
id and type in ``Fraudstream-Event-Id`` and ``Fraudstream-Event-Type``; a receiver verifies the
signature, rejects timestamps more than five minutes old, and de-duplicates by the event id (delivery
is at-least-once). Any answer but a 2xx is retried with exponential back-off.
``GET /v1/webhooks/deliveries`` is the log: every delivery with each attempt's status code, error and
duration; ``POST /v1/webhooks/deliveries/{id}/replay`` sends a delivery's event again (the same event
id, a new signature). Changes to endpoints and replays are in the audit log (``subject=webhook:<id>``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema, model_validator

from fraudstream.api.deps import CallerDep, StoreDep
from fraudstream.events.webhook import ALL_TYPES, EVENT_TYPES
from fraudstream.storage.webhooks import Endpoint, WebhookError

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

MAX_ID = 2**63 - 1
EndpointId = Annotated[int, Path(ge=1, le=MAX_ID, description="the endpoint's id")]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_ID, description="the delivery's id")]


def _known_type(value: str) -> str:
    if value != ALL_TYPES and value not in EVENT_TYPES:
        raise ValueError(f"unknown event type; expected one of {', '.join(EVENT_TYPES)}, or * for all")
    return value


def _target(value: str) -> str:
    """An absolute http(s) URL httpx can post to, as given."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number from 0 to 65535
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL) as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("must name a host, as in https://hooks.example.com/fraud")
    return value


EventName = Annotated[
    str,
    AfterValidator(_known_type),
    WithJsonSchema({"type": "string", "enum": [*EVENT_TYPES, ALL_TYPES]}),
]
Url = Annotated[
    str,
    Field(min_length=8, max_length=2048, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://"),
    AfterValidator(_target),
]
Description = Annotated[str, Field(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]


class EndpointIn(BaseModel):
    """An endpoint: where events are posted, and which."""

    url: Url = Field(description="where events are posted: http:// or https://; redirects are not followed")
    events: list[EventName] = Field(
        min_length=1,
        max_length=len(EVENT_TYPES) + 1,
        description="the event types it receives; * for all of them, types added later included",
    )
    enabled: bool = Field(True, description="false: stored, but sent nothing until enabled")
    description: Description | None = Field(None, description="what it is for, for people")


class EndpointChange(BaseModel):
    """What to change of an endpoint: any of these, at least one."""

    url: Url | None = None
    events: list[EventName] | None = Field(None, min_length=1, max_length=len(EVENT_TYPES) + 1)
    enabled: bool | None = Field(
        None, description="false pauses it: nothing is sent, and the events emitted meanwhile are not kept"
    )
    description: Description | None = None

    @model_validator(mode="after")
    def _something(self) -> EndpointChange:
        if self.url is None and self.events is None and self.enabled is None and self.description is None:
            raise ValueError("give at least one of url, events, enabled, description")
        return self


class EndpointOut(BaseModel):
    id: int
    url: str
    events: list[str]
    enabled: bool
    description: str | None
    created_at: datetime
    created_by: str = Field(description="the name of the key that added it")
    subscribed_at: datetime = Field(
        description="it receives the decisions decided from then on: when it was added, last enabled, or "
        "its event types changed"
    )

    @classmethod
    def of(cls, endpoint: Endpoint) -> Self:
        return cls.model_validate(endpoint, from_attributes=True)


class NewEndpointOut(EndpointOut):
    secret: str = Field(
        description="the signing secret, shown this once: keep it where the receiver can read it"
    )


class EndpointsOut(BaseModel):
    items: list[EndpointOut]


class AttemptOut(BaseModel):
    attempt: int = Field(description="its number, from 1")
    attempted_at: datetime
    status_code: int | None = Field(description="the endpoint's answer; null when none came")
    error: str | None = Field(description="why it failed; null for a success")
    duration_ms: float


class DeliveryOut(BaseModel):
    id: int
    event_id: str = Field(description="the event's id, the same in every delivery and replay of it")
    event_type: str
    endpoint_id: int
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    created_at: datetime = Field(description="when it was queued")
    next_attempt_at: datetime | None = Field(description="pending: when it is tried next")
    finished_at: datetime | None
    last_status: int | None = Field(description="the status code of the last attempt's answer")
    last_error: str | None
    replay_of: int | None = Field(description="the delivery this one replays")
    log: list[AttemptOut] = Field(description="every attempt, oldest first")


class DeliveryDetailOut(DeliveryOut):
    event: dict[str, Any] = Field(description="the event, as its deliveries send it")


class DeliveriesOut(BaseModel):
    items: list[DeliveryOut]
    next_before: int | None = Field(description="pass as before= for the next page; null on the last")


ENDPOINT_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such endpoint"},
    409: {"description": "the endpoint was deleted"},
}
DELIVERY_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such delivery"},
    409: {"description": "its endpoint is disabled or deleted"},
}


async def _call(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except WebhookError as e:
        raise HTTPException(e.status, str(e)) from None


@router.post("", response_model=NewEndpointOut, status_code=status.HTTP_201_CREATED)
async def add_endpoint(body: EndpointIn, store: StoreDep, caller: CallerDep) -> NewEndpointOut:
    """Add an endpoint receiving the given event types; the answer holds its signing secret, shown
    this once. 422 naming the field for a URL that is not http(s) or an unknown event type."""
    events = list(dict.fromkeys(body.events))
    added = await run_in_threadpool(
        store.webhooks.add_endpoint, body.url, events, caller.name, enabled=body.enabled,
        description=body.description,
    )  # fmt: skip
    return NewEndpointOut.of(added)


@router.get("", response_model=EndpointsOut)
async def endpoints(store: StoreDep) -> EndpointsOut:
    """The endpoints not deleted, oldest first (never their secrets)."""
    found = await run_in_threadpool(store.webhooks.endpoints)
    return EndpointsOut(items=[EndpointOut.of(e) for e in found])


@router.patch("/{endpoint_id:int}", response_model=EndpointOut, responses=ENDPOINT_ERRORS)
async def change_endpoint(
    endpoint_id: EndpointId, body: EndpointChange, store: StoreDep, caller: CallerDep
) -> EndpointOut:
    """Change an endpoint's URL, event types, description, or pause it (``enabled: false``) and resume
    it. Decisions reach it from when it was last enabled or its types changed."""
    changed = await _call(
        store.webhooks.change_endpoint, endpoint_id, caller.name, enabled=body.enabled,
        events=None if body.events is None else list(dict.fromkeys(body.events)), url=body.url,
        description=body.description,
    )  # fmt: skip
    return EndpointOut.of(changed)


@router.delete("/{endpoint_id:int}", response_model=EndpointOut, responses=ENDPOINT_ERRORS)
async def delete_endpoint(endpoint_id: EndpointId, store: StoreDep, caller: CallerDep) -> EndpointOut:
    """Delete an endpoint: nothing more is sent to it and its pending deliveries fail; its delivery log
    stays. 404 when there is no such endpoint, 409 when it was deleted already."""
    return EndpointOut.of(await _call(store.webhooks.delete_endpoint, endpoint_id, caller.name))


@router.get("/deliveries", response_model=DeliveriesOut)
async def deliveries(
    store: StoreDep,
    endpoint_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    type: Annotated[
        Literal[EVENT_TYPES] | None,  # type: ignore[valid-type]
        Query(description="only events of this type"),
    ] = None,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    event_id: Annotated[str | None, Query(pattern=r"^evt_[0-9a-f]{32}$")] = None,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="only deliveries with smaller ids")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveriesOut:
    """Deliveries, newest first, with every attempt: filter by endpoint, event type, status or event;
    page with ``before``."""
    found = await run_in_threadpool(
        store.webhooks.deliveries, endpoint_id=endpoint_id, event_type=type, status=status,
        event_id=event_id, before=before, limit=limit,
    )  # fmt: skip
    items = [DeliveryOut.model_validate(d) for d in found]
    return DeliveriesOut(items=items, next_before=items[-1].id if len(items) == limit else None)


@router.get("/deliveries/{delivery_id:int}", response_model=DeliveryDetailOut, responses={404: {}})
async def delivery(delivery_id: DeliveryId, store: StoreDep) -> DeliveryDetailOut:
    """One delivery with every attempt and the event it sends."""
    return DeliveryDetailOut.model_validate(await _call(store.webhooks.delivery, delivery_id))


@router.post(
    "/deliveries/{delivery_id:int}/replay",
    response_model=DeliveryDetailOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=DELIVERY_ERRORS,
)
async def replay(
    delivery_id: DeliveryId, store: StoreDep, caller: CallerDep, request: Request
) -> DeliveryDetailOut:
    """Send a delivery's event to its endpoint again, delivered or failed: a new delivery, due at once,
    with the same event id and a new signature (``replay_of`` names the one replayed). 409 when the
    endpoint is disabled or deleted."""
    again = await _call(store.webhooks.replay, delivery_id, caller.name)
    dispatcher = getattr(request.app.state, "webhooks", None)
    if dispatcher is not None:
        dispatcher.wake()
    return DeliveryDetailOut.model_validate(again)
