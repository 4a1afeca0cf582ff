"""``GET /v1/decisions``: browse decisions newest first, filtered, with keyset pagination."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from fraudstream.api.deps import StoreDep
from fraudstream.api.params import QueryTime
from fraudstream.api.schemas import DecisionName, DecisionPage, StoredDecisionOut
from fraudstream.events.transaction import ID_PATTERN, MAX_ID_LENGTH

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])


def _query_error(name: str, message: str, value: object) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": value}]
    )


@router.get("", response_model=DecisionPage)
def list_decisions(
    store: StoreDep,
    decision: DecisionName | None = None,
    customer_id: Annotated[
        str | None, Query(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    ] = None,
    since: Annotated[
        QueryTime | None, Query(description="decided at or after: ISO 8601, naive meaning UTC")
    ] = None,
    until: Annotated[
        QueryTime | None, Query(description="decided before: ISO 8601, naive meaning UTC; after `since`")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024, description="next_cursor of the last page")] = None,
) -> DecisionPage:
    """One page of decisions; rows written while paging never shift later pages.

    An analyst's queue is ``?decision=FLAG``; a customer's history is ``?customer_id=...``.
    """
    if since is not None and until is not None and since >= until:
        raise _query_error("until", "until must be after since", until.isoformat())
    try:
        records, next_cursor = store.decisions.list(
            decision=decision,
            customer_id=customer_id,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
    except ValueError as error:  # only the cursor can be invalid here: the rest is validated above
        raise _query_error("cursor", str(error), cursor) from None
    return DecisionPage(items=[StoredDecisionOut.from_record(r) for r in records], next_cursor=next_cursor)
