"""Bodies that are one object or a list of them (``POST /v1/transactions``, ``POST /v1/labels``).

Declaring ``Transaction | list[Transaction]`` to FastAPI would report every error twice, once per
union branch, under locations like ``body.list[Transaction].0.amount``. Validating here instead gives
the path the client actually sent — ``body.amount`` for one object, ``body.3.amount`` for the fourth
in a list — and checks the list's length before validating thousands of items.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

from fraudstream.events.mapping import EventMapping, MappedEventError
from fraudstream.events.transaction import Transaction

M = TypeVar("M", bound=BaseModel)
REF_PREFIX = "#/components/schemas/"


@cache
def _list_adapter(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def one_or_many(payload: Any, model: type[M], *, max_items: int, noun: str) -> list[M]:
    """Validate ``payload`` as one ``model`` or a non-empty list of at most ``max_items`` of them.

    Raises :class:`RequestValidationError` (422, FastAPI's format, ``loc`` starting with ``body``) or
    :class:`HTTPException` 413 for a list that is too long.
    """
    items = _items(payload, max_items=max_items, noun=noun)
    try:
        if items is None:
            return [model.model_validate(payload)]
        return list(_list_adapter(model).validate_python(items))
    except ValidationError as error:
        raise RequestValidationError(_located(error)) from None


def one_or_many_events(payload: Any, mapping: EventMapping, *, max_items: int) -> list[Transaction]:
    """:func:`one_or_many` for a team's own events read through its mapping: every event's errors,
    each located at the event's own field (``body.payer.account.id``, ``body.3.value``)."""
    items = _items(payload, max_items=max_items, noun="transaction")
    read = mapping.transactions([payload] if items is None else items)
    errors = [
        {**e, "loc": ("body", *(() if items is None else (i,)), *e["loc"])}
        for i, t in enumerate(read)
        if isinstance(t, MappedEventError)
        for e in t.errors
    ]
    if errors:
        raise RequestValidationError(errors)
    return [t for t in read if isinstance(t, Transaction)]


def _items(payload: Any, *, max_items: int, noun: str) -> list[Any] | None:
    """The list a body holds (``None`` for one object), refused when empty or longer than ``max_items``."""
    if isinstance(payload, bytes | bytearray):  # FastAPI passes the raw bytes when it is not JSON
        raise RequestValidationError(
            [
                {
                    "type": "json_type",
                    "loc": ("body",),
                    "msg": "expected a JSON body sent with 'Content-Type: application/json'",
                    "input": None,
                }
            ]
        )
    if not isinstance(payload, list):
        return None
    if not payload:
        raise RequestValidationError(
            [{"type": "too_short", "loc": ("body",), "msg": f"at least one {noun} is required", "input": []}]
        )
    if len(payload) > max_items:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"too many {noun}s in one request ({len(payload)}; limit {max_items}): split the batch",
        )
    return payload


def _located(error: ValidationError) -> list[dict[str, Any]]:
    return [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]


def one_or_many_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` for :func:`one_or_many` (pass as the route's ``openapi_extra``).

    It refers to ``model``'s component schema, which :func:`add_component_schemas` makes sure exists.
    """
    ref = {"$ref": f"{REF_PREFIX}{model.__name__}"}
    schema = {"anyOf": [ref, {"type": "array", "items": ref, "minItems": 1}]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def add_component_schemas(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add ``models`` (and the models they use) to ``app``'s OpenAPI components.

    FastAPI only lists the models that appear in a route's signature; the bodies validated by
    :func:`one_or_many` are declared as ``Any`` there, so their models are added here.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                own = model.model_json_schema(ref_template=REF_PREFIX + "{model}")
                for name, definition in own.pop("$defs", {}).items():
                    components.setdefault(name, definition)
                components.setdefault(model.__name__, own)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
