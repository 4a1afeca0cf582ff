"""``POST /v1/score`` answered in front of the framework, for the requests that need nothing but scoring.

The endpoint is the one that runs hundreds of times a second, and FastAPI's middleware stack, routing,
dependency resolution and response validation cost more of the event loop per request than parsing
the transaction and writing the answer. This front door answers a well-formed, authorised request of
at most ``max_body_bytes`` itself: same validation (the ``Transaction`` model), same batcher, same
``DecisionOut`` body, recorded in the same request metrics. Anything else (a bad key, a key without
the ingest role, invalid JSON, a field error, an unusual query, an oversized body) goes on to the
FastAPI app with its body intact, so every error is still the app's own, and the route stays the
documented one.

The rate limits (:mod:`.limits`) apply here as in the app: an authorised request is counted once,
before its body is read, and refused with the app's 429 when over its limit; a request without a
valid key goes on to the app, which answers the 401 or 403 and counts the failure.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from fraudstream.api.errors import (
    body_conflict,
    read_body,
    replay_body,
    state_unavailable,
    storage_unavailable,
    unexpected_error,
)
from fraudstream.api.keyring import Caller, offered_keys
from fraudstream.api.limits import ADMITTED, client_address
from fraudstream.api.routes import roles_for
from fraudstream.api.schemas import DecisionOut
from fraudstream.events.transaction import Transaction
from fraudstream.state.base import StateError
from fraudstream.storage.errors import BodyConflictError, StorageError

PATH = "/v1/score"
_TRUE = frozenset({"1", "true", "on", "yes", "t", "y"})
_FALSE = frozenset({"0", "false", "off", "no", "f", "n"})
_JSON = (b"application/json", b"application/json; charset=utf-8")


def _dry_run(query: bytes) -> bool | None:
    """The ``dry_run`` flag, or ``None`` when the query holds anything the route should judge."""
    if not query:
        return False
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "dry_run":
        return None
    value = pairs[0][1].lower()
    return True if value in _TRUE else False if value in _FALSE else None


class FastScoreMiddleware:
    """Answers ``POST /v1/score`` directly when the request is valid; hands everything else on.

    ``state`` is the app's state (settings, services, batcher, metrics); ``route`` the FastAPI route,
    whose template the request metrics record the fast answers under.
    """

    def __init__(self, app: ASGIApp, state: Any, route: BaseRoute | None = None) -> None:
        self.app = app
        self.state = state
        self.route = route
        self.template = getattr(route, "path", PATH)
        self.roles = roles_for("POST", PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        authorised, caller = await self._caller(headers)
        if not authorised:  # the app answers 401 or 403, and counts the failure
            await self.app(scope, receive, send)
            return
        limits = getattr(self.state, "limits", None)
        if limits is not None:
            scope[ADMITTED] = True
            refused = limits.admit(client_address(scope), caller.name if caller is not None else None)
            if refused is not None:
                await refused(scope, receive, send)
                self._observe(429, started)
                return
        body = await read_body(receive, self._max_bytes())
        if body is None:
            return  # the client went away
        if isinstance(body, list):  # too large: the app's body limit answers
            await self.app(scope, replay_body(b"".join(body), receive), send)
            return
        transaction, dry_run = self._accept(scope, headers, body)
        if transaction is None or dry_run is None:
            await self.app(scope, replay_body(body, receive), send)
            return
        if self.route is not None:
            scope["route"] = self.route
        try:
            record, duplicate = await self.state.batcher.submit(transaction, dry_run=dry_run)
        except BodyConflictError as exc:  # the id is known with another body: the route's 409
            failed = await body_conflict(Request(scope), exc)
        except StorageError as exc:
            failed = await storage_unavailable(Request(scope), exc)
        except StateError as exc:  # unreachable, or lost and being rebuilt: retry later
            failed = await state_unavailable(Request(scope), exc)
        except Exception as exc:  # the route's catch-all answer: logged, counted, 500 with an error id
            failed = await unexpected_error(Request(scope), exc)
        else:
            answer = DecisionOut.from_record(record, duplicate=duplicate)
            payload = DecisionOut.__pydantic_serializer__.to_json(answer)  # model_dump_json's bytes
            length = str(len(payload)).encode()
            answer_headers = [(b"content-type", b"application/json"), (b"content-length", length)]
            await send({"type": "http.response.start", "status": 200, "headers": answer_headers})
            await send({"type": "http.response.body", "body": payload})
            self._observe(200, started)
            return
        await failed(scope, receive, send)
        self._observe(failed.status_code, started)

    async def _caller(self, headers: dict[bytes, bytes]) -> tuple[bool, Caller | None]:
        """``(authorised, caller)``: whether the request may score here, and with whose key (``None``
        when no keys are set). A key lacking the route's role, or a database that cannot tell, is
        not authorised here: the app answers those."""
        keyring = getattr(self.state, "keyring", None)
        if keyring is None:
            return False, None
        try:
            if not await keyring.enabled_async():
                return True, None
            caller = await keyring.identify_async(offered_keys(headers))
        except StorageError:
            return False, None
        return caller is not None and caller.may(self.roles), caller

    def _observe(self, status: int, started: float) -> None:
        metrics = getattr(self.state, "metrics", None)
        if metrics is not None:
            timer = metrics.child(metrics.requests, "POST", self.template, str(status))
            timer.observe(time.perf_counter() - started)

    def _max_bytes(self) -> int | None:
        settings = getattr(self.state, "settings", None)
        return getattr(settings, "max_body_bytes", None)

    def _accept(
        self, scope: Scope, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[Transaction | None, bool | None]:
        """The transaction and the dry-run flag, or ``None`` for what the route must answer."""
        state = self.state
        if getattr(state, "services", None) is None or getattr(state, "batcher", None) is None:
            return None, None
        if headers.get(b"content-type", b"").lower() not in _JSON:
            return None, None
        dry_run = _dry_run(scope.get("query_string", b""))
        try:
            return Transaction.model_validate_json(body), dry_run
        except ValidationError:
            return None, None
