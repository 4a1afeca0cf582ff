"""``/v1/snoozes``: an analyst keeps a rule from acting on one customer, device, IP or merchant for a while.

``POST /v1/snoozes`` sets a snooze of a rule in use for one value of a field, for ``days`` (1 to 180)
or ``until`` a time; ``GET`` lists the snoozes in force; ``DELETE /v1/snoozes/{id}`` lifts one. Until
it ends, a hit of the rule on a transaction of that value whose own time is before the end takes no
part in the decision and is recorded among its rules as ``snoozed:<rule>``. The answering server uses a
change at once, every other server and worker within ``FRAUD_RULES_POLL_SECONDS``. Each snooze and
lift is in the audit log (``GET /v1/audit?subject=snooze:<id>``) under the acting key's name, which is
also the snooze's analyst.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from fraudstream.api.deps import CallerDep, ServicesDep
from fraudstream.events.transaction import ID_PATTERN, MAX_ID_LENGTH
from fraudstream.rules.snoozes import MAX_DAYS
from fraudstream.runtime import Services
from fraudstream.storage.snoozes import Snooze, SnoozeError

router = APIRouter(prefix="/v1/snoozes", tags=["snoozes"])

MAX_ID = 2**63 - 1
EntityField = Literal["customer_id", "device_id", "ip_address", "merchant_id"]
SnoozeId = Annotated[int, Path(ge=1, le=MAX_ID, description="the snooze's id")]


class SnoozeIn(BaseModel):
    """A rule kept from acting on one value of a field: for ``days``, or until ``until`` (one of them)."""

    rule: str = Field(
        min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="the name of a rule in use"
    )
    field: EntityField = Field(description="what the value is: a customer, device, IP address or merchant")
    value: str = Field(
        min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="e.g. the customer's id"
    )
    days: int | None = Field(None, ge=1, le=MAX_DAYS, description=f"how long, from now: 1 to {MAX_DAYS} days")
    until: AwareDatetime | None = Field(
        None, description=f"when it ends, with its time zone: after now, at most {MAX_DAYS} days ahead"
    )
    reason: str = Field(min_length=1, max_length=2000, description="why: kept with the snooze and audited")

    @model_validator(mode="after")
    def _one_end(self) -> SnoozeIn:
        if (self.days is None) == (self.until is None):
            raise ValueError(
                "give either days (1 to 180) or until (a time with its zone), not both or neither"
            )
        return self


class SnoozeOut(BaseModel):
    id: int
    rule: str
    field: str
    value: str
    until: datetime = Field(
        description="the end: transactions dated from then on are decided by the rule again"
    )
    reason: str
    analyst: str = Field(description="the key's name that set it")
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None

    @classmethod
    def of(cls, snooze: Snooze) -> SnoozeOut:
        return cls(**snooze.__dict__)


class SnoozesOut(BaseModel):
    items: list[SnoozeOut]


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such snooze"},
    409: {"description": "the snooze was lifted already"},
}


def _invalid(field: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": value}]
    )


def _end(body: SnoozeIn, now: datetime) -> datetime:
    """When the snooze ends; 422 naming ``until`` when it is not ahead or too far ahead."""
    if body.days is not None:
        return now + timedelta(days=body.days)
    assert body.until is not None
    until = body.until.astimezone(UTC)
    if until <= now:
        raise _invalid(
            "until", "must be after now (a snooze that has ended covers nothing)", body.until.isoformat()
        )
    if until > now + timedelta(days=MAX_DAYS):
        raise _invalid("until", f"at most {MAX_DAYS} days ahead", body.until.isoformat())
    return until


def _acting_rules(services: Services) -> list[str]:
    """The names of the rules in use that can act (shadow rules never do, so there is nothing to snooze)."""
    return [r.name for r in services.rules.current().rules if not r.shadow]


def _refresh(services: Services) -> None:
    if services.snoozes is not None:
        services.snoozes.refresh()


@router.post("", response_model=SnoozeOut, status_code=status.HTTP_201_CREATED)
async def snooze(body: SnoozeIn, services: ServicesDep, caller: CallerDep) -> SnoozeOut:
    """Keep ``rule`` from acting on transactions whose ``field`` is ``value`` until the end given.
    422 naming the field: a rule not in use (the answer lists those that are), days outside 1 to 180,
    an ``until`` not ahead or more than 180 days ahead."""
    rules = _acting_rules(services)
    if body.rule not in rules:
        known = ", ".join(rules) if rules else "none (no rule is in use)"
        raise _invalid("rule", f"no rule {body.rule!r} is in use; the rules are: {known}", body.rule)
    until = _end(body, datetime.now(UTC))
    saved = await run_in_threadpool(
        services.store.snoozes.add, body.rule, body.field, body.value, until, body.reason, caller.name
    )
    await run_in_threadpool(_refresh, services)
    return SnoozeOut.of(saved)


@router.get("", response_model=SnoozesOut)
async def active(
    services: ServicesDep,
    rule: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)] = None,
    field: Annotated[EntityField | None, Query()] = None,
    value: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> SnoozesOut:
    """The snoozes in force now (not lifted, ending after now), soonest to end first; optionally of
    one rule, field or value."""
    found = await run_in_threadpool(
        services.store.snoozes.active, datetime.now(UTC), rule=rule, field=field, value=value, limit=limit
    )
    return SnoozesOut(items=[SnoozeOut.of(s) for s in found])


@router.delete("/{snooze_id:int}", response_model=SnoozeOut, responses=ERRORS)
async def lift(snooze_id: SnoozeId, services: ServicesDep, caller: CallerDep) -> SnoozeOut:
    """End a snooze now: the rule acts on that value again. 404 when there is no such snooze, 409 when
    it was lifted already."""
    try:
        lifted = await run_in_threadpool(services.store.snoozes.lift, snooze_id, caller.name)
    except SnoozeError as e:
        raise HTTPException(e.status, str(e)) from None
    await run_in_threadpool(_refresh, services)
    return SnoozeOut.of(lifted)
