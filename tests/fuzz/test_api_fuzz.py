"""Every operation of the OpenAPI document, fuzzed with schemathesis against a running server.

The bar: no 5xx but the documented 503, no status and no body the document does not describe, with
every check schemathesis has but one. ``positive_data_acceptance`` (a request the schema allows must
succeed) cannot hold here: some rules depend on what is stored (a label names a transaction the API
has seen; an id already used with another body is 409) or relate fields in ways JSON Schema cannot
state (``label_time`` not before ``timestamp``, ``until`` after ``since``, times within 1990-2100).
Those are refused with a documented 422 naming the field, which the other checks hold to the schema.
Examples per operation are bounded, and drawn from a fixed seed (the same cases on every run, so a
run here tells what CI will see), so that the suite takes a minute or two; the stream is opened for
a moment and simulations are small and slow, so that fuzzing them costs no more than the rest.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from fraudstream.api import create_app
from fraudstream.config import Settings
from tests.fuzz.conftest import Served

# The document of an app built with the defaults (building it opens nothing); the requests go to the
# running server of the ``served`` fixture, whose document is checked to be the same.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())

#: Examples per operation.
EXAMPLES = 40


def _any_text(schema: dict[str, Any]) -> bool:
    """Whether ``schema`` is text of any characters (a length bound aside): no pattern, format or enum."""
    return schema.get("type") == "string" and not {"pattern", "format", "enum"} & set(schema)


def _text_params(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, bool]]:
    """Per operation, its query parameters of any text, each saying whether it is a list of them
    (``?field=a&field=b``) rather than one value."""
    found: dict[tuple[str, str], dict[str, bool]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "query":
                    continue
                options = parameter["schema"].get("anyOf", [parameter["schema"]])
                lists = any(o.get("type") == "array" and _any_text(o.get("items", {})) for o in options)
                if lists or any(_any_text(o) for o in options):
                    found.setdefault((method.upper(), path), {})[parameter["name"]] = lists
    return found


TEXT_PARAMS = _text_params(schema.raw_schema)

QUERY_NAMES = {
    (method.upper(), path): {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    for path, operations in schema.raw_schema["paths"].items()
    for method, operation in operations.items()
}
"""Per operation, the names of its query parameters."""


def _one_value_params(
    document: dict[str, Any],
) -> dict[tuple[str, str], dict[str, list[Draft202012Validator]]]:
    """Per operation, its query parameters of one value (not a list) other than those of any text,
    each with the validators of its forms other than null."""
    found: dict[tuple[str, str], dict[str, list[Draft202012Validator]]] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                options = parameter["schema"].get("anyOf", [parameter["schema"]])
                forms = [o for o in options if o.get("type") != "null"]
                if (
                    parameter["in"] == "query"
                    and forms
                    and not any(o.get("type") == "array" or _any_text(o) for o in options)
                ):
                    validators = [Draft202012Validator(o) for o in forms]
                    found.setdefault((method.upper(), path), {})[parameter["name"]] = validators
    return found


ONE_VALUE_PARAMS = _one_value_params(schema.raw_schema)


def _read_as_sent(item: Any) -> list[Any]:
    """What the API may read ``item`` of a query as: itself, and a text's number or boolean."""
    if not isinstance(item, str):
        return [item]
    try:
        return [item, json.loads(item)]
    except ValueError:
        return [item]


@schema.hook
def filter_query(context: Any, query: dict[str, Any] | None) -> bool:
    """Leave out a "negative" query whose only fault is one a URL cannot carry (see
    :func:`_text_in_the_url_only`)."""
    return not _text_in_the_url_only(context.operation.method, context.operation.path, query)


def _text_in_the_url_only(method: str, path: str, query: dict[str, Any] | None) -> bool:
    """Whether a query parameter of any text holds what only its JSON form tells from text: a number, a
    boolean or a null (in a URL, ``?field=false`` and ``?field=null`` are text), a list for one value
    (``?field=a`` either way; repeated, the last), or a bare value for a list; or any other parameter
    of one value given as a list whose last value sent is valid (repeated, the last counts; the HTTP
    client leaves out a list's nulls, so a list of nulls sends nothing); or a parameter the operation
    does not have, which is ignored. The API rightly accepts such a request, and schemathesis would
    count that as accepting schema-violating data (its false positive for text in the query,
    schemathesis issue 3056)."""
    if set(query or {}) - QUERY_NAMES.get((method.upper(), path), set()):
        return True  # a parameter the operation does not have is ignored, as HTTP APIs do
    params = TEXT_PARAMS.get((method.upper(), path), {})
    for name in params.keys() & set(query or {}):
        value = query[name]  # type: ignore[index]
        scalars = value if isinstance(value, list) else [value]
        if isinstance(value, list) != params[name] or any(
            v is None or isinstance(v, bool | int | float) for v in scalars
        ):
            return True
    for name, validators in ONE_VALUE_PARAMS.get((method.upper(), path), {}).items():
        value = (query or {}).get(name)
        if not isinstance(value, list):
            continue
        sent = [v for v in value if v is not None]  # the HTTP client leaves a list's nulls out
        if not sent or any(v.is_valid(x) for v in validators for x in _read_as_sent(sent[-1])):
            return True  # absent, or repeated in the URL: the last is the value, and it is valid
    return False


def bounded(case: Any) -> None:
    """Keep the long-running operations short: a stream ends after a moment, a simulation is small. A
    stream's ``duration`` that is not a valid number is left as generated: the API refuses it at once,
    and replacing it would turn a case generated to be refused into a valid one."""
    if case.path == "/v1/stream":
        duration = (case.query or {}).get("duration")
        number = isinstance(duration, int | float) and not isinstance(duration, bool)
        if duration is None or (number and 0 < duration <= 86_400):
            case.query = {**(case.query or {}), "duration": 0.2}
    if case.path == "/v1/simulations" and isinstance(case.body, dict) and case.body.get("action") == "start":
        case.body = {**case.body, "rate": 20, "limit": 40, "customers": 20, "days": 1.0}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_the_api_answers_only_what_it_documents(case: Any, served: Served) -> None:
    bounded(case)
    excluded = [positive_data_acceptance]
    if _text_in_the_url_only(case.method, case.path, case.query):  # a case the hook cannot leave out
        excluded.append(negative_data_rejection)  # (schemathesis's coverage phase skips query filters)
    case.call_and_validate(base_url=served.url, headers=served.headers, timeout=30, excluded_checks=excluded)


def test_the_served_document_is_the_one_fuzzed(served: Served) -> None:
    import httpx

    assert httpx.get(served.url + "/openapi.json", timeout=10).json() == schema.raw_schema


@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/stats"])
def test_the_key_is_required(served: Served, path: str) -> None:
    import httpx

    assert httpx.get(served.url + path, timeout=10).status_code == 401
