"""Every route's role decision, as keys of each role meet them: one explicit table over the app's OpenAPI
routes (``/metrics`` and ``/v1/stream`` among them). AN route the table does not name fails the test, so
a new route cannot ship without someone deciding who may call it."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.e2e.apitools import Api

OPEN = "open"  # no key needed at all
IN, AN, AD = "ingest", "analyst", "admin"
SENDER = frozenset({IN, AN, AD})
READER = frozenset({AN, AD})
ADMIN = frozenset({AD})

#: (method, path) → the roles whose keys may call it; admin may call everything.
EXPECTED: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/health"): OPEN,
    ("GET", "/ready"): OPEN,
    ("GET", "/metrics"): READER,
    ("POST", "/v1/score"): frozenset({IN, AD}),
    ("POST", "/v1/transactions"): frozenset({IN, AD}),
    ("GET", "/v1/transactions/{transaction_id}"): SENDER,
    ("GET", "/v1/decisions"): READER,
    ("GET", "/v1/stats"): READER,
    ("GET", "/v1/stats/series"): READER,
    ("GET", "/v1/customers/{customer_id}"): READER,
    ("POST", "/v1/labels"): READER,
    ("GET", "/v1/labels/{transaction_id}"): READER,
    ("GET", "/v1/simulations"): READER,
    ("POST", "/v1/simulations"): ADMIN,
    ("GET", "/v1/model"): READER,
    ("GET", "/v1/stream"): READER,
    ("GET", "/v1/alerts"): READER,
    ("GET", "/v1/reports/daily"): READER,
    ("GET", "/v1/dead-letters"): READER,
    ("POST", "/v1/dead-letters/requeue"): READER,
    ("GET", "/v1/models"): READER,
    ("POST", "/v1/models/promote"): ADMIN,
    ("POST", "/v1/models/rollback"): ADMIN,
    ("GET", "/v1/models/compare"): READER,
    ("GET", "/v1/drift"): READER,
    ("GET", "/v1/cases"): READER,
    ("GET", "/v1/cases/{case_id}"): READER,
    ("GET", "/v1/cases/{case_id}/report"): READER,
    ("POST", "/v1/cases/{case_id}/claim"): READER,
    ("POST", "/v1/cases/{case_id}/assign"): READER,
    ("POST", "/v1/cases/{case_id}/notes"): READER,
    ("POST", "/v1/cases/{case_id}/verdict"): READER,
    ("POST", "/v1/cases/verdicts"): READER,
    ("GET", "/v1/audit"): READER,
    ("GET", "/v1/entities"): READER,
    ("GET", "/v1/entities/{field}/{value}"): READER,
    ("GET", "/v1/me"): SENDER,
    ("GET", "/v1/keys"): ADMIN,
    ("POST", "/v1/keys"): ADMIN,
    ("POST", "/v1/keys/{name}/revoke"): ADMIN,
    ("GET", "/v1/rules"): READER,
    ("POST", "/v1/rules"): ADMIN,
    ("PUT", "/v1/rules"): ADMIN,
    ("POST", "/v1/rules/backtest"): READER,
    ("GET", "/v1/rules/guard"): READER,
    ("POST", "/v1/rules/guard/baseline"): ADMIN,
    ("POST", "/v1/rules/guard/{rule}/reenable"): ADMIN,
    ("GET", "/v1/snoozes"): READER,
    ("POST", "/v1/snoozes"): READER,
    ("DELETE", "/v1/snoozes/{snooze_id}"): READER,
    ("POST", "/v1/challenges/{transaction_id}"): SENDER,
    ("GET", "/v1/holds"): READER,
    ("GET", "/v1/webhooks"): ADMIN,
    ("POST", "/v1/webhooks"): ADMIN,
    ("PATCH", "/v1/webhooks/{endpoint_id}"): ADMIN,
    ("DELETE", "/v1/webhooks/{endpoint_id}"): ADMIN,
    ("GET", "/v1/webhooks/deliveries"): ADMIN,
    ("GET", "/v1/webhooks/deliveries/{delivery_id}"): ADMIN,
    ("POST", "/v1/webhooks/deliveries/{delivery_id}/replay"): ADMIN,
}
#: What makes a call end quickly and change nothing: a stream that ends, bodies that fail validation.
QUERY = {"/v1/stream": {"duration": "0.05"}}
#: Path parameters that must have their type to reach the route at all (an integer id); "x-1" elsewhere.
SAMPLE = {"case_id": "999999", "snooze_id": "999999", "endpoint_id": "999999", "delivery_id": "999999"}


def routes(client: TestClient) -> list[tuple[str, str]]:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return sorted((method.upper(), path) for path, ops in paths.items() for method in ops)


def call(client: TestClient, method: str, path: str, key: str | None) -> httpx.Response:
    url = re.sub(r"\{([^}]+)\}", lambda m: SAMPLE.get(m.group(1), "x-1"), path)
    headers = {"X-API-Key": key} if key else {}
    body = [] if method in ("POST", "PUT", "PATCH") else None  # never a valid body: nothing is done
    return client.request(method, url, headers=headers, json=body, params=QUERY.get(path))


@pytest.fixture
def keyed(make_api: Callable[..., Api]) -> tuple[TestClient, dict[str, str]]:
    client, services, _ = make_api(api_keys="env-both-1-01234", key_cache_seconds=0, rate_limits=False)
    repo = services.store.keys
    keys = {role: repo.create(f"the-{role}", role)[1] for role in (IN, AN, AD)}
    return client, keys


def test_every_route_has_a_role_decision(keyed: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = keyed
    undecided = [route for route in routes(client) if route not in EXPECTED]
    assert not undecided, f"routes without a role decision in EXPECTED (and in api.routes.ROLES): {undecided}"
    gone = [route for route in EXPECTED if route not in routes(client)]
    assert not gone, f"EXPECTED names routes the app no longer has: {gone}"


@pytest.mark.parametrize("role", [IN, AN, AD])
def test_each_role_is_allowed_or_refused_as_the_table_says(
    keyed: tuple[TestClient, dict[str, str]], role: str
) -> None:
    client, keys = keyed
    wrong = []
    for method, path in routes(client):
        allowed = EXPECTED.get((method, path), frozenset())
        answer = call(client, method, path, keys[role])
        if allowed == OPEN or role in allowed:
            if answer.status_code in (401, 403):
                wrong.append(f"{method} {path}: {role} refused ({answer.status_code} {answer.text})")
        elif answer.status_code != 403 or f"the key 'the-{role}' has the role {role}" not in answer.text:
            wrong.append(f"{method} {path}: {role} not refused ({answer.status_code} {answer.text[:120]})")
    assert not wrong, "\n".join(wrong)


def test_without_a_key_only_the_probes_answer(keyed: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = keyed
    for method, path in routes(client):
        status = call(client, method, path, None).status_code
        assert (status != 401) if EXPECTED.get((method, path)) == OPEN else status == 401, (method, path)


def test_the_environment_s_api_keys_act_as_analyst_and_ingest(
    keyed: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = keyed
    for method, path in routes(client):
        allowed = EXPECTED.get((method, path), frozenset())
        status = call(client, method, path, "env-both-1-01234").status_code
        refused = allowed != OPEN and not ({IN, AN} & set(allowed))
        assert (status == 403) == refused, (method, path, status)
