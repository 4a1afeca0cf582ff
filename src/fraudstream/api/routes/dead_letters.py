"""``/v1/dead-letters``: what could not be decided, and sending it back once the cause is fixed."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fraudstream.api.deps import ServicesDep, StoreDep
from fraudstream.worker.redrive import requeue, transaction_id_of

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])
MAX_ID = 2**63 - 1
"""Ids are 64-bit integers in both databases."""


class DeadLetterOut(BaseModel):
    """One message that was not decided, as it arrived, and why."""

    id: int
    created_at: datetime
    source: str = Field(description="the topic it came from")
    transaction_id: str | None = Field(description="the id its payload names, if any")
    reason: str = Field(description="'field.path: problem', 'unscoreable: ...' or 'delivered N times ...'")
    payload: str


DeadLetterId = Annotated[int, Field(ge=1, le=MAX_ID)]


class RequeueIn(BaseModel):
    """Which dead letters to send back: exactly one of a non-empty ``ids`` or ``all: true``."""

    model_config = ConfigDict(
        strict=True,
        json_schema_extra={
            "oneOf": [
                {"required": ["ids"], "properties": {"ids": {"minItems": 1}, "all": {"const": False}}},
                {"required": ["all"], "properties": {"ids": {"maxItems": 0}, "all": {"const": True}}},
            ]
        },
    )

    ids: list[DeadLetterId] = Field(default_factory=list, max_length=10_000)
    all: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> RequeueIn:
        if bool(self.ids) == self.all:
            raise ValueError("give dead-letter ids, or all: true")
        return self


class RequeueOut(BaseModel):
    requeued: list[int] = Field(description="dead letters published again and removed")
    transaction_ids: list[str] = Field(description="the transactions they carried, now queued")
    invalid: dict[int, str] = Field(description="left, still not a valid transaction: id → why")
    missing: list[int] = Field(description="ids that are not dead letters (requeued already?)")


@router.get("", response_model=list[DeadLetterOut])
def list_dead_letters(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="only ids below this: the next page")
    ] = None,
) -> list[DeadLetterOut]:
    """Dead letters newest first. Page on with ``before`` set to the last id of a page."""
    return [
        DeadLetterOut(**letter, transaction_id=transaction_id_of(letter["payload"]))
        for letter in store.dead_letters.list(limit, before=before)
    ]


@router.post("/requeue", response_model=RequeueOut)
def requeue_dead_letters(body: RequeueIn, services: ServicesDep) -> RequeueOut:
    """Publish dead letters back to the topic they came from and remove them; the worker then decides
    each transaction exactly once. Fix the cause first: one that fails again comes back with its new
    reason. One that is still not a valid transaction stays, listed under ``invalid``."""
    done = requeue(
        services.store,
        services.broker,
        None if body.all else body.ids,
        partition_key=services.settings.partition_key,
    )
    return RequeueOut(**asdict(done))
