"""The OpenAPI document names every status the API can answer, with the body each one carries.

Clients and fuzzers read the document to know what to expect: an answer whose status is not in it is
a bug in the document or in the API. FastAPI documents a route's own answers; the ones any route can
give — a body too large, a validation error, too many requests, a service unavailable — are added
here, once, with the ``{"detail": ...}`` body that :mod:`.errors` sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

REF = "#/components/schemas/"

#: Answers any operation may give, whatever its route says.
ANY_ROUTE = {
    429: "too many requests: retry after the `Retry-After` seconds",
    503: "a service it needs (database, broker) is unavailable, or the API is starting: retry after "
    "the `Retry-After` seconds",
}
#: Answers any operation that takes a body may give.
WITH_BODY = {413: "the body is larger than FRAUD_MAX_BODY_BYTES, or holds too many items"}
VALIDATION = (
    "a parameter or the body is invalid: each error names its location (`loc`) and the reason (`msg`); "
    "a body that is not JSON, not UTF-8, nested too deeply or holds too long a number is `json_invalid`"
)


class Problem(BaseModel):
    """The body of every error but validation errors."""

    detail: str = Field(description="what went wrong, and what to do about it")


def _problem_content() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"{REF}Problem"}}}


def _summary(operation: dict[str, Any]) -> str:
    """The first sentence of the route's docstring, rather than FastAPI's title-cased function name."""
    text = " ".join(str(operation.get("description", "")).split()).replace("``", "`")
    first = text.split(". ")[0].split("; ")[0].rstrip(".")
    return first if 0 < len(first) <= 90 else str(operation.get("summary", ""))


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the answers every route may give to each operation of ``schema`` (in place; returned)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Problem", Problem.model_json_schema())
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation["summary"] = _summary(operation)
            responses: dict[str, Any] = operation.setdefault("responses", {})
            extra = {**ANY_ROUTE, **(WITH_BODY if "requestBody" in operation else {})}
            for status, description in extra.items():
                responses.setdefault(str(status), {"description": description})
            if "requestBody" in operation or operation.get("parameters"):
                invalid = responses.setdefault("422", {})
                invalid["description"] = VALIDATION
                refs = [{"$ref": f"{REF}HTTPValidationError"}, {"$ref": f"{REF}Problem"}]
                invalid["content"] = {"application/json": {"schema": {"anyOf": refs}}}
            if operation.get("security") and "401" not in responses:  # the key is optional here
                operation["security"] = [{}, *operation["security"]]
            for code, response in responses.items():
                if str(code) >= "400" and not response.get("content"):
                    response["content"] = _problem_content()
                if not response.get("description"):
                    response["description"] = "error"
    return schema


EVENT = "Event"
"""The component schema of a team's own event, when the served model reads events through a mapping."""
EVENT_BODIES = {"/v1/score": False, "/v1/transactions": True}
"""The operations (``POST``) that take events, and whether they take a list of them too."""


def with_mapping(schema: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the event-taking operations' bodies in the team's own shape ``event`` (a copy)."""
    out = {**schema, "paths": dict(schema.get("paths", {}))}
    components = dict(out.get("components", {}))
    components["schemas"] = {**components.get("schemas", {}), EVENT: event}
    out["components"] = components
    ref = {"$ref": f"{REF}{EVENT}"}
    for path, many in EVENT_BODIES.items():
        operations = out["paths"].get(path)
        if operations is None or "post" not in operations:
            continue
        body = {"anyOf": [ref, {"type": "array", "items": ref, "minItems": 1}]} if many else ref
        post = {**operations["post"]}
        post["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        out["paths"][path] = {**operations, "post": post}
    return out


def install(app: FastAPI) -> None:
    """Have ``app``'s OpenAPI document list the answers every route may give, and show the team's own
    event shape on the routes that take events when the served model reads them through a mapping."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        services = getattr(app.state, "services", None)
        mapping = None if services is None else services.intake.mapping
        if mapping is None:
            return app.openapi_schema
        return with_mapping(app.openapi_schema, mapping.json_schema())

    app.openapi = openapi  # type: ignore[method-assign]
