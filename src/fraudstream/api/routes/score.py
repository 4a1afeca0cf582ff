"""``POST /v1/score``: decide one transaction now, in the request.

The synchronous path for callers that must hold a payment until it is decided. A replayed id gets
the decision already made (``duplicate: true``), never a second one, and leaves the feature state as
it was; ``dry_run`` scores against the current state without recording anything anywhere.

The route runs hundreds of times a second, so it is a :class:`LeanRoute`: FastAPI documents it from the
endpoint's signature like any route, while a request skips FastAPI's per-request dependency solving
and response validation. It authenticates through the same :func:`~fraudstream.api.deps.authenticate`
and role table as every route, validates its body with the transaction's prebuilt validator, and
raises the same errors; the body limit, the rate limits, the error answers and the request metrics are
the app's middleware and exception handlers, as for every route.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response

from fraudstream.api.bodies import one_or_many_events
from fraudstream.api.deps import authenticate, get_keyring, refuse_role
from fraudstream.api.errors import unparsable_body
from fraudstream.api.keyring import offered_keys
from fraudstream.api.roles import roles_for
from fraudstream.api.schemas import CONFLICT, DecisionOut
from fraudstream.events.transaction import Transaction

PATH = "/v1/score"
_flag = TypeAdapter(bool)
_answer = DecisionOut.__pydantic_serializer__.to_json


class LeanRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` whose requests are handled by :func:`decide`; the
    endpoint below stays its documentation (body, query, answer and errors in the OpenAPI document)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        roles = roles_for("POST", PATH)

        async def handler(request: Request) -> Response:
            keyring = get_keyring(request)
            caller = await authenticate(keyring, offered_keys(dict(request.scope["headers"])))
            refused = refuse_role(caller, roles)
            if refused is not None:
                raise refused
            return await decide(request)

        return handler


router = APIRouter(tags=["scoring"], route_class=LeanRoute)


@router.post(PATH, response_model=DecisionOut, responses=CONFLICT)
async def score(
    transaction: Transaction,
    dry_run: Annotated[bool, Query(description="score without storing or updating feature state")] = False,
) -> DecisionOut:
    """Score one transaction synchronously and store the decision (unless ``dry_run``).

    Idempotent by ``transaction_id``: the same id with the same body answers the decision already made
    (``duplicate: true``); with another body, 409 (one id, one transaction). Concurrent requests are
    scored and stored together, as one batch (see :mod:`fraudstream.api.batcher`).
    """
    raise NotImplementedError  # documentation only: LeanRoute's handler answers (see decide)


async def decide(request: Request) -> Response:
    """Validate, queue for the decider, answer with the decision's JSON."""
    dry_run = _dry_run(request)
    services = request.app.state.services
    mapping = None if services is None else services.intake.mapping
    body, content_type = await request.body(), request.headers.get("content-type")
    if mapping is None:
        transaction = _transaction(body, content_type)
    else:  # the team's own event, read as the model's training read its file
        transaction = one_or_many_events(_json_object(body, content_type), mapping, max_items=1)[0]
    record, duplicate = await request.app.state.batcher.submit(transaction, dry_run=dry_run)
    body = _answer(DecisionOut.from_record(record, duplicate=duplicate))
    return Response(body, media_type="application/json")


def _dry_run(request: Request) -> bool:
    raw = request.query_params.get("dry_run")
    if raw is None:
        return False
    try:
        return bool(_flag.validate_python(raw))
    except ValidationError as error:
        raise RequestValidationError(_placed(error, "query", "dry_run")) from None


def _transaction(body: bytes, content_type: str | None) -> Transaction:
    """The body as a transaction, or the errors FastAPI's own body handling gives: a missing body,
    JSON that does not parse (saying why), a body that is not JSON, a field error named by its path."""
    if not body:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing])
    if content_type is not None and not _json_type(content_type):
        try:
            return Transaction.model_validate(body)  # never a transaction: the error says what it wants
        except ValidationError as error:
            raise RequestValidationError(_placed(error, "body")) from None
    try:
        return Transaction.model_validate_json(body)
    except ValidationError as error:
        strict = error
    try:  # why it failed, as the body handling of every other route says it
        parsed = json.loads(body)
    except (ValueError, RecursionError) as cause:
        detail = {"type": "json_invalid", "loc": ("body",), "msg": unparsable_body(cause), "input": None}
        raise RequestValidationError([detail]) from None
    try:
        Transaction.model_validate(parsed)
    except ValidationError as error:
        raise RequestValidationError(_placed(error, "body")) from None
    raise RequestValidationError(_placed(strict, "body"))  # JSON only Python reads (NaN, Infinity)


def _json_object(body: bytes, content_type: str | None) -> Any:
    """The body's JSON, or the error FastAPI's body handling gives for a missing or unparsable one."""
    if not body:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing])
    if content_type is not None and not _json_type(content_type):
        wrong = {
            "type": "model_attributes_type",
            "loc": ("body",),
            "msg": "expected a JSON object sent with 'Content-Type: application/json'",
            "input": None,
        }
        raise RequestValidationError([wrong])
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as cause:
        detail = {"type": "json_invalid", "loc": ("body",), "msg": unparsable_body(cause), "input": None}
        raise RequestValidationError([detail]) from None
    if isinstance(parsed, list):  # one event per request here: a list goes to /v1/transactions
        wrong = {"type": "model_type", "loc": ("body",), "msg": "an event is a JSON object", "input": None}
        raise RequestValidationError([wrong])
    return parsed


def _json_type(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _placed(error: ValidationError, *where: str) -> list[dict[str, Any]]:
    return [{**e, "loc": (*where, *e["loc"])} for e in error.errors()]
