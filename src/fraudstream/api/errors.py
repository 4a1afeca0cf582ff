"""Error responses: every failure the client can cause is a 4xx with a JSON ``detail``.

* :class:`BodyLimitMiddleware` answers 413 before a too-large body is parsed, whether its size is
  announced (``Content-Length``) or only found out while streaming (chunked transfer encoding).
* Validation errors keep FastAPI's 422 body (a list of ``loc`` / ``msg`` / ``type`` / ``input``), with
  the echoed input made JSON-safe: ``NaN`` is valid Python JSON but not valid JSON output, and bytes or
  exception objects in ``ctx`` would otherwise turn a client's mistake into a 500.
* A transaction sent under an id already known with a different body is a 409 naming the ids: an id
  names one transaction, as with a payment API's idempotency key.
* A database or message broker that cannot be reached is a 503 (retry later), not a 500.
* Anything else is a bug: a 500 with an error id that is also logged with the traceback, so a user's
  report can be matched to the log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraudstream.brokers.base import BrokerError
from fraudstream.events.transaction import DECISIONS, DECISIONS_PATTERN, ID_PATTERN
from fraudstream.state.base import StateError
from fraudstream.storage.errors import BodyConflictError, StorageError

log = logging.getLogger(__name__)

#: Echoed inputs longer than this are cut, so a 2 MB wrong-typed body is not sent back whole.
MAX_ECHO_CHARS = 500
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def too_large(size: int, limit: int, *, streamed: bool = False) -> JSONResponse:
    at_least = "at least " if streamed else ""
    return JSONResponse(
        {"detail": f"request body too large ({at_least}{size} bytes; limit {limit})"}, status_code=413
    )


class BodyLimitMiddleware:
    """Reject request bodies over ``max_bytes`` with 413, reading at most ``max_bytes + 1`` chunk bytes,
    and JSON bodies that name a key twice in one object with 422.

    The body is buffered here and replayed to the app. The API only takes JSON that FastAPI reads
    whole anyway, so buffering costs nothing extra, and it means the 413 is sent before any route
    sees the request (FastAPI would turn an error raised while it reads the body into a 400). Every
    JSON parser of the app keeps the last of two equal keys: ``{"amount": 10, "amount": 999999}`` was
    scored as 999,999 though a proxy or a log would show 10, so such a body is refused whole, naming
    the key, before any route reads it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS_WITH_BODY:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await too_large(declared, self.max_bytes)(scope, receive, send)
            return
        body = await read_body(receive, self.max_bytes)
        if body is None:  # the client went away: nothing to answer
            return
        if isinstance(body, list):
            size = sum(len(chunk) for chunk in body)
            await too_large(size, self.max_bytes, streamed=declared is None)(scope, receive, send)
            return
        repeated = repeated_key(body) if _is_json(scope) else None
        if repeated is not None:
            await repeated_key_refusal(repeated)(scope, receive, send)
            return
        await self.app(scope, replay_body(body, receive), send)


class _Repeated(ValueError):
    pass


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Repeated(key)
            seen.add(key)
    return out


_decode_strict = json.JSONDecoder(object_pairs_hook=_no_repeats).decode


def repeated_key(body: bytes) -> str | None:
    """The first key a JSON body names twice in one object, or ``None`` (also for a body that is not
    JSON: the route says what is wrong with that)."""
    try:
        _decode_strict(body.decode("utf-8"))
    except _Repeated as found:
        return str(found.args[0])
    except (ValueError, RecursionError):
        return None
    return None


def repeated_key_refusal(key: str) -> JSONResponse:
    detail = [
        {
            "type": "json_invalid",
            "loc": ["body"],
            "msg": f"the key {json_safe(key)!r} appears twice in one object; JSON objects name a key once",
            "input": None,
        }
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or (
                kind.startswith(b"application/") and kind.endswith(b"+json")
            )
    return True  # no content type: read as JSON, as the routes do


async def read_body(receive: Receive, limit: int | None) -> bytes | list[bytes] | None:
    """The whole request body; the chunks read so far as soon as they pass ``limit`` bytes (reading no
    further); ``None`` when the client went away first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            return chunks
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the whole, already read ``body`` first, then what follows."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def json_safe(value: Any) -> Any:
    """``value`` with everything JSON cannot carry replaced: non-finite floats and objects by text."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        text = value if len(value) <= MAX_ECHO_CHARS else value[:MAX_ECHO_CHARS] + "…"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: echoed escaped, as JSON cannot carry it
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        return text
    if isinstance(value, bytes | bytearray):
        return json_safe(bytes(value).decode("utf-8", errors="replace"))
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, BaseException):
        return str(value)
    return json_safe(str(value))


_ID_MESSAGE = "must not contain control characters, line separators or bidirectional overrides"


_PATTERN_MESSAGES = {
    ID_PATTERN: f"String {_ID_MESSAGE}",
    DECISIONS_PATTERN: f"must be a comma-separated list of {', '.join(DECISIONS)}",
}


OWN_FIELD = (
    "not a field of a transaction: send your own fields under extra (a feature spec reads them as "
    "extra.<name>), or serve a model trained with --mapping to send your events as they are"
)


def _explained(error: dict[str, Any]) -> dict[str, Any]:
    """``error`` with a message a person can act on where pydantic's only quotes a pattern, or only
    says a field is not allowed in a transaction (a team's own field name sent as it is)."""
    loc = tuple(error.get("loc") or ())
    if (
        error.get("type") == "extra_forbidden"
        and loc[:1] == ("body",)
        and len(loc) <= 3
        and (len(loc) == 2 or isinstance(loc[1], int))
    ):
        return {**error, "msg": OWN_FIELD}
    if error.get("type") == "string_pattern_mismatch":
        message = _PATTERN_MESSAGES.get(str((error.get("ctx") or {}).get("pattern")))
        if message is not None:
            return {**error, "msg": message}
    return error


async def validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own 422 body (``{"detail": [{"type", "loc", "msg", "input", "ctx"?}]}``), JSON-safe."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": json_safe([_explained(e) for e in exc.errors()])}, status_code=422)


def unparsable_body(cause: BaseException) -> str:
    """Why a JSON body could not be parsed, in words a client can act on."""
    return _unparsable(cause) or f"the body is not valid JSON: {cause}"


def _unparsable(cause: BaseException | None) -> str | None:
    """Why FastAPI could not parse a JSON body (it answers 400 for these), or ``None`` if it is not
    one of the ways a client's body fails before it reaches validation."""
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8 (byte {cause.start + 1})"
    if isinstance(cause, RecursionError):
        return "the body's JSON is nested too deeply"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "the body holds a number with too many digits"
    if isinstance(cause, ValueError):
        return f"the body is not valid JSON: {cause}"
    return None


def _allowed(request: Request) -> list[str]:
    """The methods some route of the app answers on the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, APIRoute | Route) and route.methods and route.path_regex.match(request.url.path):
            methods |= route.methods
    return sorted(methods)


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to an ``HTTPException``, except that a body that cannot be parsed (not UTF-8,
    nested too deep, a number too long) is a 422 ``json_invalid`` at ``body`` like any malformed JSON,
    not a bare 400."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:  # Allow: every method of the path, not only those of its first route
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(_allowed(request))}
    why = _unparsable(exc.__cause__) if exc.status_code == 400 else None
    if why is None:
        return await http_exception_handler(request, exc)
    detail = [{"type": "json_invalid", "loc": ["body"], "msg": why, "input": None}]
    return JSONResponse({"detail": detail}, status_code=422)


def _unavailable(what: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A handler answering 503 (retry later) when ``what`` cannot be reached: not the client's fault."""

    async def handler(request: Request, exc: Exception) -> Response:
        log.error("%s unavailable during %s %s: %s", what, request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": f"the {what} is unavailable; try again later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    return handler


async def body_conflict(request: Request, exc: Exception) -> Response:
    """409: ``{"detail": why, "transaction_ids": [...]}`` for ids already received with another body."""
    assert isinstance(exc, BodyConflictError)
    return JSONResponse({"detail": str(exc), "transaction_ids": exc.ids}, status_code=409)


storage_unavailable = _unavailable("database")
broker_unavailable = _unavailable("message broker")
state_unavailable = _unavailable("feature state")  # unreachable, or lost and being rebuilt


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """The catch-all: a bug, not bad input. Log it with an id the client can quote."""
    error_id = uuid.uuid4().hex[:12]
    log.error("unexpected error %s during %s %s", error_id, request.method, request.url.path, exc_info=exc)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.unhandled_errors.inc()
    return JSONResponse(
        {"detail": f"internal error; quote error id {error_id} when reporting it", "error_id": error_id},
        status_code=500,
        headers={"Connection": "close"},  # the server closes it after a 500: say so
    )


def install_error_handlers(app: FastAPI, max_body_bytes: int) -> None:
    """Register the handlers and the body-size limit on ``app``."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(BodyConflictError, body_conflict)
    app.add_exception_handler(StorageError, storage_unavailable)
    app.add_exception_handler(BrokerError, broker_unavailable)
    app.add_exception_handler(StateError, state_unavailable)
    app.add_exception_handler(Exception, unexpected_error)


class DeadlineMiddleware:
    """Answers ``503`` with ``Retry-After`` to a request its route has not answered within ``seconds``
    (plus its own ``?wait=``): a database or feature state that hangs then holds no client, and the
    routes that need neither (``/health``, ``/metrics``) go on answering, since deciding and storing
    run off the event loop. The route's work is abandoned, not undone: a decision its batch stores
    later is there for the retry (answered as a duplicate). ``/v1/stream`` runs as long as its client
    stays.
    """

    UNBOUNDED = frozenset({"/v1/stream"})

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.UNBOUNDED:
            await self.app(scope, receive, send)
            return
        started = False
        late: asyncio.Future[None] | None = None

        async def sending(message: Message) -> None:
            nonlocal started
            if late is not None:  # the deadline answered for the route: what it sends late is dropped
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        limit = self.seconds + _waited(scope)
        request = asyncio.current_task()

        def expire() -> None:
            nonlocal late
            if started or request is None:
                return
            log.error("%s %s not answered within %g s", scope["method"], scope["path"], limit)
            late = asyncio.ensure_future(_unavailable_after(limit)(scope, receive, send))
            request.cancel()  # stops what can be stopped; a database call in a thread runs its course

        timer = asyncio.get_running_loop().call_later(limit, expire)
        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            if late is None or request is None:
                raise
            request.uncancel()  # cancelled by the deadline, which answers instead
        finally:
            timer.cancel()
        if late is not None:
            await late


def _unavailable_after(limit: float) -> JSONResponse:
    return JSONResponse(
        {"detail": f"not answered within {limit:g} s: the database or the feature state is not answering; "
         "try again later"},
        status_code=503,
        headers={"Retry-After": "5"},
    )  # fmt: skip


def _waited(scope: Scope) -> float:
    """The request's own ``?wait=`` (seconds, at most the routes' 30), to add to its deadline."""
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if name == "wait":
            try:
                return min(max(float(value), 0.0), 30.0) if math.isfinite(float(value)) else 0.0
            except ValueError:
                return 0.0
    return 0.0
