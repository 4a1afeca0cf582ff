"""``/v1/entities``: search customers, devices, IP addresses and merchants (or any transaction field a
feature spec keys on), and look at one: its history with decisions and labels, its cases, and the
entities linked to it through shared devices and IP addresses within the feature set's retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from fraudstream.api.deps import ScorerDep, StoreDep
from fraudstream.events.transaction import UTCTime
from fraudstream.storage.entities import COLUMNS, Entity, column

router = APIRouter(prefix="/v1/entities", tags=["entities"])

FieldName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        description="customer_id, device_id, ip_address, merchant_id, or e.g. extra.card",
    ),
]


class FoundOut(BaseModel):
    field: str
    value: str
    transactions: int
    last_seen: datetime


class EntityTransactionOut(BaseModel):
    transaction_id: str
    timestamp: datetime
    customer_id: str
    device_id: str | None
    ip_address: str | None
    merchant_id: str | None
    amount: float
    decision: str | None = Field(description="null while queued")
    probability: float | None
    model_version: str | None
    known_fraud: bool | None = Field(
        description="the labels known now: fraud when any source says so; null unlabelled"
    )
    case_id: int | None


class LinkedOut(BaseModel):
    field: str
    value: str
    transactions: int = Field(description="the entity's transactions with this value, within the period")


class SharedOut(BaseModel):
    customer_id: str
    via: list[str] = Field(description="what is shared, as field:value (device_id:d-17, ip_address:10.0.0.3)")
    transactions: int
    known_fraud: bool = Field(description="the customer has a transaction labelled fraud")


class EntityOut(BaseModel):
    """An entity as an analyst looks at it."""

    field: str
    value: str
    since: datetime = Field(
        description="links are read from here on: the feature set's retention back from `as_of`, by "
        "default from the entity's latest transaction (the data's time, not the clock's)"
    )
    transactions: list[EntityTransactionOut] = Field(description="newest first")
    cases: list[dict[str, Any]]
    linked: list[LinkedOut] = Field(description="the other fields' values among its transactions")
    shared: list[SharedOut] = Field(description="other customers who used one of its devices or IP addresses")

    @classmethod
    def of(cls, field: str, value: str, entity: Entity) -> EntityOut:
        """The entity ``field`` = ``value`` as the store found it (its links read from ``since`` on)."""
        assert entity.since is not None
        return cls(
            field=field,
            value=value,
            since=entity.since,
            transactions=[EntityTransactionOut(**t) for t in entity.transactions],
            cases=entity.cases,
            linked=[LinkedOut(**link) for link in entity.linked],
            shared=[SharedOut(**s) for s in entity.shared],
        )


def _field(name: str, where: tuple[str, ...]) -> str:
    try:
        column(name)
    except ValueError as e:
        raise RequestValidationError(
            [{"type": "value_error", "loc": where, "msg": str(e), "input": name}]
        ) from None
    return name


@router.get("", response_model=list[FoundOut])
async def search(
    store: StoreDep,
    q: Annotated[str, Query(min_length=1, max_length=128, description="a value, or its beginning")],
    field: Annotated[
        list[str] | None, Query(max_length=64, description=f"fields to search; default {', '.join(COLUMNS)}")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[FoundOut]:
    """Entities whose value is ``q`` or starts with it; exact matches first, then the most active."""
    fields = [_field(f, ("query", "field")) for f in field] if field else None
    found = await run_in_threadpool(store.entities.search, q, fields, limit)
    return [FoundOut(**f) for f in found]


@router.get(
    "/{field}/{value}", response_model=EntityOut, responses={404: {"description": "no transaction has it"}}
)
async def entity(
    field: FieldName,
    value: Annotated[str, Path(min_length=1, max_length=128)],
    store: StoreDep,
    scorer: ScorerDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="most recent transactions")] = 100,
    as_of: Annotated[
        UTCTime | None,
        Query(
            description="read links from one retention before this time (default: before the entity's "
            "latest transaction)"
        ),
    ] = None,
) -> EntityOut:
    """One entity: its transactions, their decisions and labels, its cases, and its links."""
    _field(field, ("path", "field"))
    retention = timedelta(seconds=scorer.engine.feature_set.retention)
    since = retention if as_of is None else as_of - retention
    found = await run_in_threadpool(store.entities.get, field, value, since, limit)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no transaction has {field} {value!r}")
    return EntityOut.of(field, value, found)
