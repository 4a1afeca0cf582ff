"""The HTTP API as a client uses it: a real SQLite file, a real model, the embedded worker.

Every test client re-raises server-side exceptions (TestClient's default), so any request that reached
the catch-all 500 handler would fail its test: bad input must always be answered with a 4xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fraudstream.api import create_app
from fraudstream.api.errors import BodyLimitMiddleware
from fraudstream.config import Settings
from fraudstream.runtime import open_services
from fraudstream.storage.errors import StorageError
from fraudstream.worker import Worker
from tests.e2e.apitools import NOW, Api, customer_feature, metric, stored, tx
from tests.waiting import wait_for

# --- health, readiness, metrics -------------------------------------------------------------------


def test_health_ready_are_open_even_with_keys_and_metrics_needs_one(make_api: Callable[..., Api]) -> None:
    client, services, _ = make_api(api_keys="secret-012345678")
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and set(body["checks"]) == {"database", "broker", "state", "model"}
    assert all(check == {"ok": True} for check in body["checks"].values())  # no versions without a key
    client.headers["X-API-Key"] = "secret-012345678"
    body = client.get("/ready").json()
    assert body["checks"]["model"]["detail"] == f"model {services.scorer.version}"
    assert body["checks"]["database"]["detail"].startswith("SQLite")
    assert body["checks"]["broker"]["detail"].startswith("queue in SQLite")
    assert body["checks"]["state"]["detail"] == "in-process"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    for name in ("fraudstream_http_request_seconds", "fraudstream_queue_lag", "fraudstream_scoring_seconds"):
        assert name in metrics.text
    del client.headers["X-API-Key"]
    assert client.get("/metrics").status_code == 401
    assert client.get("/v1/stats").status_code == 401  # while /health and /ready stay open


def test_ready_names_the_failing_check(worker_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    client, services, app = worker_api
    assert client.get("/ready").json()["checks"]["worker"]["ok"] is True

    def broken() -> str:
        raise StorageError("database sqlite:///x is unreachable")

    monkeypatch.setattr(services.store, "ping", broken)
    response = client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == {"ok": False, "detail": "database sqlite:///x is unreachable"}
    assert body["checks"]["model"]["ok"] is True

    monkeypatch.undo()
    app.state.worker.stop()
    app.state.worker_thread.join(5)
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"]["ok"] is False
    assert response.json()["checks"]["database"]["ok"] is True


def test_metrics_count_scoring_and_decisions(api: Api) -> None:
    client, _, _ = api
    decisions = [client.post("/v1/score", json=tx(f"m{i}")).json()["decision"] for i in range(3)]
    client.post("/v1/score", json=tx("m0"))  # a replay is not a second decision
    client.post("/v1/score", params={"dry_run": True}, json=tx("m-dry"))  # nor is a dry run
    client.post("/v1/transactions", json=[tx("m-q1"), tx("m-q2")])
    counted = {d: metric(client, f'fraudstream_decisions_total{{decision="{d}"}}') for d in set(decisions)}
    assert counted == {d: float(decisions.count(d)) for d in set(decisions)}
    assert metric(client, 'fraudstream_scoring_seconds_count{path="sync"}') == 4.0
    assert metric(client, "fraudstream_score_batch_size_count") == 5.0  # one request at a time
    assert metric(client, "fraudstream_score_batch_size_sum") == 5.0
    assert metric(client, "fraudstream_queue_lag") == 2.0
    assert metric(client, 'fraudstream_http_request_seconds_count{method="POST",route="/v1/score"') == 5.0
    # a path that matches no route is recorded under one label, not under the arbitrary path
    client.get("/no/such/path")
    assert metric(
        client, 'fraudstream_http_request_seconds_count{method="GET",route="unrouted",status="404"}'
    )


# --- POST /v1/score --------------------------------------------------------------------------------


def test_score_replay_and_dry_run(api: Api) -> None:
    client, services, _ = api
    first = client.post("/v1/score", json=tx("s1", "CS", minutes_ago=30))
    assert first.status_code == 200, first.text
    decision = first.json()
    assert decision["decision"] in {"APPROVE", "FLAG", "BLOCK"}
    assert 0.0 <= decision["probability"] <= 1.0
    assert isinstance(decision["reasons"], list) and isinstance(decision["rules"], list)
    assert decision["model_version"] == services.scorer.version
    assert decision["latency_ms"]["total"] > 0 and decision["duplicate"] is False
    assert customer_feature(client, "CS", "customer_count_24h") == 1.0

    replay = client.post("/v1/score", json=tx("s1", "CS", minutes_ago=30))  # same body: its decision
    assert replay.status_code == 200
    assert replay.json() == {**decision, "duplicate": True}
    assert customer_feature(client, "CS", "customer_count_24h") == 1.0  # the replay changed no state

    dry = client.post("/v1/score", params={"dry_run": "true"}, json=tx("s-dry", "CS", minutes_ago=20))
    assert dry.status_code == 200 and dry.json()["decision"] in {"APPROVE", "FLAG", "BLOCK"}
    assert client.get("/v1/transactions/s-dry").status_code == 404
    assert services.store.decisions.get("s-dry") is None
    assert customer_feature(client, "CS", "customer_count_24h") == 1.0  # nor did the dry run

    second = client.post("/v1/score", json=tx("s2", "CS", minutes_ago=15))
    assert second.status_code == 200 and second.json()["duplicate"] is False
    assert customer_feature(client, "CS", "customer_count_24h") == 2.0
    status = client.get("/v1/transactions/s1").json()
    assert status["status"] == "decided" and status["decision"]["decision"] == decision["decision"]


# --- validation: every bad input is a 4xx naming the field ------------------------------------------

BAD_FIELDS: list[tuple[dict[str, Any], tuple[Any, ...], str]] = [
    ({"amount": -1}, ("amount",), "greater_than_equal"),
    ({"customer_id": None}, ("customer_id",), "string_type"),
    ({"timestamp": "yesterday"}, ("timestamp",), "datetime_from_date_parsing"),
    ({"timestamp": "1900-01-01T00:00:00Z"}, ("timestamp",), "value_error"),
    ({"timestamp": "0001-01-01T00:00:00+01:00"}, ("timestamp",), "value_error"),
    ({"colour": "red"}, ("colour",), "extra_forbidden"),
    ({"amount": "lots"}, ("amount",), "float_type"),
    ({"amount": [1]}, ("amount",), "float_type"),
    ({"customer_id": 17}, ("customer_id",), "string_type"),
    ({"currency": "usd"}, ("currency",), "string_pattern_mismatch"),
    ({"latitude": 10.0}, (), "value_error"),
    ({"transaction_id": "x" * 129}, ("transaction_id",), "string_too_long"),
    ({"device_id": "d\x00"}, ("device_id",), "string_pattern_mismatch"),  # PostgreSQL text cannot hold NUL
]


@pytest.mark.parametrize(("change", "loc", "kind"), BAD_FIELDS)
def test_invalid_fields_are_422_with_the_field_path(
    api: Api, change: dict[str, Any], loc: tuple[Any, ...], kind: str
) -> None:
    client, _, _ = api
    body = {**tx("v1"), **change}
    one = client.post("/v1/score", json=body)
    assert one.status_code == 422, one.text
    assert [(e["loc"], e["type"]) for e in one.json()["detail"]] == [(["body", *loc], kind)]
    queued = client.post("/v1/transactions", json=body)
    assert queued.status_code == 422
    assert [(e["loc"], e["type"]) for e in queued.json()["detail"]] == [(["body", *loc], kind)]
    many = client.post("/v1/transactions", json=[tx("v0"), body])
    assert many.status_code == 422
    assert [(e["loc"], e["type"]) for e in many.json()["detail"]] == [(["body", 1, *loc], kind)]
    assert client.get("/v1/transactions/v0").status_code == 404  # nothing of a rejected batch is kept


def test_a_field_of_ones_own_is_refused_saying_where_it_goes(api: Api) -> None:
    client, _, _ = api
    for body in ({**tx("v3"), "shop": "acme"}, [tx("v4"), {**tx("v5"), "shop": "acme"}]):
        answer = client.post("/v1/transactions", json=body)
        (error,) = answer.json()["detail"]
        assert "under extra" in error["msg"] and "--mapping" in error["msg"], error


def test_missing_field_is_reported(api: Api) -> None:
    client, _, _ = api
    body = tx("v2")
    del body["customer_id"]
    response = client.post("/v1/score", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "customer_id"]
    assert response.json()["detail"][0]["type"] == "missing"


JSON = {"content-type": "application/json"}


def raw_tx(amount: bytes) -> bytes:
    """A transaction body as raw bytes, for JSON that ``json=`` cannot produce (``NaN``, ``1e999``)."""
    return b'{"transaction_id":"r1","timestamp":"2025-01-01","customer_id":"c","amount":' + amount + b"}"


RAW_BODIES: list[tuple[str, bytes, dict[str, str]]] = [
    ("malformed", b'{"transaction_id": "r1", "amount": ', JSON),
    ("trailing comma", b'{"transaction_id": "r1",}', JSON),
    ("NaN amount", raw_tx(b"NaN"), JSON),
    ("Infinity", raw_tx(b"Infinity"), JSON),
    ("overflow", raw_tx(b"1e999"), JSON),
    ("NaN latitude", raw_tx(b'1,"latitude":NaN,"longitude":0'), JSON),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, JSON),
    ("invalid utf-8", b'{"transaction_id": "\xff\xfe"}', JSON),
    ("empty", b"", JSON),
    ("null", b"null", JSON),
    ("number", b"123", JSON),
    ("string", b'"a transaction"', JSON),
    ("empty list", b"[]", JSON),
    ("list of junk", b"[1, null, []]", JSON),
    ("no content type", b'{"transaction_id": "r1"}', {}),
    ("form", b"transaction_id=r1", {"content-type": "application/x-www-form-urlencoded"}),
]


@pytest.mark.parametrize(("name", "content", "headers"), RAW_BODIES, ids=[r[0] for r in RAW_BODIES])
def test_bad_bodies_never_reach_the_catch_all(
    api: Api, name: str, content: bytes, headers: dict[str, str]
) -> None:
    client, _, _ = api
    for path in ("/v1/score", "/v1/transactions", "/v1/labels"):
        response = client.post(path, content=content, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        assert response.json()["detail"], path
    assert metric(client, "fraudstream_unhandled_errors_total") == 0.0


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"[" * 5_000 + b"]" * 5_000, "nested too deeply"),
        (raw_tx(b"9" * 5_000), "too many digits"),
        (b'{"transaction_id": "\xff\xfe"}', "not valid UTF-8"),
    ],
    ids=["deep", "long number", "not utf-8"],
)
def test_unparsable_bodies_are_422_saying_why(api: Api, content: bytes, why: str) -> None:
    client, _, _ = api
    for path in ("/v1/score", "/v1/transactions", "/v1/labels"):
        response = client.post(path, content=content, headers=JSON)
        assert response.status_code == 422, (path, response.text)
        detail = response.json()["detail"][0]
        assert detail["type"] == "json_invalid" and detail["loc"] == ["body"] and why in detail["msg"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", "12.5"), ("amount", True), ("is_fraud", 0), ("is_fraud", "true"), ("latitude", "1")],
)
def test_values_of_the_wrong_json_type_are_refused_not_converted(api: Api, field: str, value: Any) -> None:
    client, _, _ = api
    body = {**tx("strict-1"), "latitude": 1.0, "longitude": 2.0, field: value}
    response = client.post("/v1/score", json=body)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", field]
    label = {"transaction_id": "strict-1", "is_fraud": 1, "label_time": NOW.isoformat()}
    assert client.post("/v1/labels", json=label).status_code == 422


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/v1/decisions", "since", "0.5"),
        ("/v1/decisions", "until", "1700000000"),
        ("/v1/alerts", "since", "12"),
        ("/v1/reports/daily", "date", "0"),
        ("/v1/decisions", "since", "9999-12-31T00:00:00"),
        ("/v1/alerts", "since", "0001-01-01T00:04:00+01:00"),  # before year 1 in UTC: no 500
    ],
)
def test_times_in_queries_are_iso_8601_within_range(api: Api, path: str, name: str, value: str) -> None:
    client, _, _ = api
    response = client.get(path, params={name: value})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", name]


def test_malformed_json_is_422_json_invalid(api: Api) -> None:
    client, _, _ = api
    response = client.post("/v1/score", content=b'{"amount": ', headers=JSON)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_invalid_text_is_422_naming_the_field_and_harms_no_neighbour(api: Api) -> None:
    """A lone surrogate (valid JSON, not valid Unicode) in extra or in an id is refused at the edge;
    the requests beside it are scored as usual."""
    client, services, _ = api
    poison = (
        b'{"transaction_id":"p1","timestamp":"2025-03-01T12:00:00Z","customer_id":"c","amount":1,'
        b'"extra":{"k":"\\ud800"}}'
    )
    response = client.post("/v1/score", content=poison, headers=JSON)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "extra"] and "extra.k: not valid Unicode" in detail["msg"]
    in_id = client.post("/v1/score", content=poison.replace(b'"p1"', b'"p\\udfff"'), headers=JSON)
    assert in_id.status_code == 422 and in_id.json()["detail"][0]["loc"] == ["body", "transaction_id"]
    assert "\\udfff" in in_id.json()["detail"][0]["input"]
    assert services.store.decisions.get("p1") is None
    assert client.post("/v1/score", json=tx("after-poison")).status_code == 200


def test_a_key_named_twice_in_a_body_is_refused_whole(api: Api) -> None:
    """JSON parsers keep the last of two equal keys: an amount of 10 then 999999 was scored as 999999."""
    client, services, _ = api
    twice = (
        b'{"transaction_id":"dk1","timestamp":"2025-03-01T12:00:00Z","customer_id":"c",'
        b'"amount":10,"amount":999999}'
    )
    nested = b'{"transaction_id":"dk2","timestamp":"2025-03-01T12:00:00Z","customer_id":"c","amount":1,'
    nested += b'"extra":{"note":"a","note":"b"}}'
    label = b'{"transaction_id":"dk1","is_fraud":true,"is_fraud":false,"label_time":"2025-03-02T00:00:00Z"}'
    for path, body, key in (
        ("/v1/score", twice, "amount"),
        ("/v1/transactions", nested, "note"),
        ("/v1/labels", label, "is_fraud"),
    ):
        response = client.post(path, content=body, headers=JSON)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body"] and f"'{key}' appears twice" in detail["msg"]
    assert services.store.decisions.get("dk1") is None and services.store.decisions.get("dk2") is None


def test_numbers_json_cannot_carry_are_refused_in_extra(api: Api) -> None:
    client, _, _ = api
    body = b'{"transaction_id":"nan1","timestamp":"2025-03-01T12:00:00Z","customer_id":"c","amount":1,'
    for value in (b"NaN", b"Infinity", b"-Infinity"):
        response = client.post("/v1/score", content=body + b'"extra":{"score":' + value + b"}}", headers=JSON)
        assert response.status_code == 422, response.text
        assert "extra.score" in response.text and "finite" in response.text


def test_nul_in_extra_is_422_naming_the_key_on_every_ingest_path(api: Api) -> None:
    """PostgreSQL's text and JSON cannot hold NUL: one stored value would break every later read of
    its field for every analyst, so it is refused at the edge, naming the key, like a bad id."""
    client, services, _ = api
    for path, body in (
        ("/v1/score", {**tx("n1"), "extra": {"note": "a\x00b"}}),
        ("/v1/transactions", {**tx("n2"), "extra": {"tags": ["ok", "\x00"]}}),
        ("/v1/transactions", {**tx("n3"), "extra": {"k\x00": 1}}),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 422, response.text
        assert "NUL" in response.json()["detail"][0]["msg"]
    assert "extra.note" in client.post("/v1/score", json={**tx("n1"), "extra": {"note": "\x00"}}).text
    services.broker.publish("transactions", [("c", {**tx("n4"), "extra": {"note": "\x00"}})])
    stats = Worker(services.broker, services.decider, services.store, max_wait=0.01).run(burst=True)
    assert stats.dead == 1 and "extra.note: holds a NUL" in services.store.dead_letters.list()[0]["reason"]
    assert all(services.store.decisions.get(i) is None for i in ("n1", "n2", "n3", "n4"))


@pytest.mark.parametrize("bad", ["a\nb", "a\x1b[31mred", "\u202eevil", "a\u2028b", "a\x00b"])
def test_control_characters_in_identifiers_are_422(api: Api, bad: str) -> None:
    """An id is shown in logs, alerts, e-mails and the dashboard: text that would rewrite them is
    refused at the edge, with a message saying why rather than quoting a pattern."""
    client, services, _ = api
    for field in ("transaction_id", "customer_id", "merchant_id"):
        response = client.post("/v1/score", json={**tx("cc-1"), field: bad})
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", field] and "control characters" in detail["msg"]
    label = client.post(
        "/v1/labels", json={"transaction_id": bad, "is_fraud": True, "label_time": NOW.isoformat()}
    )
    assert label.status_code == 422 and label.json()["detail"][0]["loc"][-1] == "transaction_id"
    assert services.store.decisions.get("cc-1") is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({f"k{i}": i for i in range(300)}, "more than 256 keys"),
        ({"a": {"b": {"c": {"d": {"e": 1}}}}}, "extra.a.b.c.d is nested more than 4 deep"),
        ({"blob": "x" * 40_000}, "bytes as JSON; at most 32,768"),
    ],
)
def test_extra_is_bounded(api: Api, extra: dict[str, Any], message: str) -> None:
    client, _, _ = api
    response = client.post("/v1/score", json=tx("big-extra", extra=extra))
    assert response.status_code == 422 and message in response.json()["detail"][0]["msg"]


def test_report_dates_out_of_range_are_422(api: Api) -> None:
    client, _, _ = api
    for day in ("9999-12-31", "0001-01-01", "1989-12-31"):
        response = client.get("/v1/reports/daily", params={"date": day})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "date"]


def test_non_finite_input_is_echoed_safely(api: Api) -> None:
    client, _, _ = api
    response = client.post("/v1/transactions", content=raw_tx(b"NaN"), headers=JSON)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "amount"] and error["input"] == "nan"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/transactions/t1", {"wait": "31"}),
        ("/v1/transactions/t1", {"wait": "-1"}),
        ("/v1/transactions/t1", {"wait": "nan"}),
        ("/v1/decisions", {"limit": "0"}),
        ("/v1/decisions", {"limit": "501"}),
        ("/v1/decisions", {"decision": "MAYBE"}),
        ("/v1/decisions", {"since": "last week"}),
        ("/v1/stats", {"window": "0"}),
        ("/v1/stats", {"window": str(31 * 86400)}),
        ("/v1/customers/C1", {"limit": "0"}),
        ("/v1/decisions", {"customer_id": "C\x001"}),
    ],
)
def test_invalid_query_parameters_are_422(api: Api, path: str, params: dict[str, str]) -> None:
    client, _, _ = api
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", next(iter(params))]


def test_oversized_bodies_are_413(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api(max_body_bytes=2048, max_batch=3)
    big = [tx(f"b{i}") for i in range(40)]
    response = client.post("/v1/transactions", json=big)
    assert response.status_code == 413
    assert response.json()["detail"].startswith("request body too large (")
    assert "limit 2048" in response.json()["detail"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the size is only known while streaming
        yield b"["
        for i in range(40):
            yield (b"," if i else b"") + json.dumps(tx(f"c{i}")).encode()
        yield b"]"

    streamed = client.post("/v1/transactions", content=chunked(), headers=JSON)
    assert streamed.status_code == 413
    assert streamed.json()["detail"].startswith("request body too large (at least ")

    too_many = client.post("/v1/transactions", json=[tx(f"n{i}") for i in range(4)])
    assert too_many.status_code == 413
    assert too_many.json()["detail"].startswith("too many transactions in one request (4; limit 3)")
    assert client.post("/v1/labels", json=[{"transaction_id": "x"}] * 4).status_code == 413
    assert client.post("/v1/transactions", json=[tx(f"n{i}") for i in range(3)]).status_code == 202
    small_chunks = client.post("/v1/score", content=iter([b'{"transaction_id": ', b'"z"}']), headers=JSON)
    assert small_chunks.status_code == 422  # a small chunked body is passed through whole


def test_body_limit_stops_reading_a_stream_at_the_limit() -> None:
    """At the ASGI level, with a body arriving in several chunks and no Content-Length."""
    received: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        received.append(message["body"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def call(chunks: list[bytes]) -> tuple[list[Any], int]:
        pending = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]
        reads = 0
        sent: list[Any] = []

        async def receive() -> Any:
            nonlocal reads
            reads += 1
            return pending.pop(0)

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
        await BodyLimitMiddleware(app, max_bytes=2500)(scope, receive, send)
        return sent, reads

    sent, reads = asyncio.run(call([b"x" * 1000] * 10))
    assert sent[0]["status"] == 413 and reads == 3 and received == []
    assert json.loads(sent[1]["body"]) == {
        "detail": "request body too large (at least 3000 bytes; limit 2500)"
    }
    sent, reads = asyncio.run(call([b"a" * 1000, b"b" * 1000, b"c" * 500]))
    assert sent[0]["status"] == 204 and received == [b"a" * 1000 + b"b" * 1000 + b"c" * 500]


def test_unknown_ids_are_404(api: Api) -> None:
    client, _, _ = api
    response = client.get("/v1/transactions/nope")
    assert response.status_code == 404 and "nope" in response.json()["detail"]
    assert client.get("/v1/transactions/nope", params={"wait": 0.1}).status_code == 404
    assert client.get("/v1/customers/nobody").status_code == 404
    assert client.get("/v1/no-such-resource").status_code == 404


def test_api_keys(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api(api_keys="k-one-0123456789, k-two-0123456789")
    missing = client.get("/v1/stats")
    assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/stats", headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.get("/v1/stats", headers={"Authorization": "Bearer wrong"}).json() == {
        "detail": "invalid API key"
    }
    assert client.get("/v1/stats", headers={"Authorization": "Basic k-one"}).status_code == 401
    assert client.get("/v1/stats", headers={"X-API-Key": "k-one-0123456789"}).status_code == 200
    assert client.get("/v1/stats", headers={"Authorization": "Bearer k-two-0123456789"}).status_code == 200
    assert client.post("/v1/score", json=tx("k1")).status_code == 401  # before any validation or work
    assert (
        client.post("/v1/score", json=tx("k1"), headers={"X-API-Key": "k-two-0123456789"}).status_code == 200
    )
    for path in ("/v1/transactions/k1", "/v1/decisions", "/v1/customers/C1", "/v1/simulations"):
        assert client.get(path).status_code == 401, path


def test_warns_at_startup_without_api_keys(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fraudstream.api.app"):
        make_api()
    assert "API keys are not set: anyone who can reach this port can use the API" in caplog.text


# --- POST /v1/transactions with the embedded worker -------------------------------------------------


def test_transactions_are_queued_then_decided_once(worker_api: Api) -> None:
    client, services, _ = worker_api
    one = client.post("/v1/transactions", json=tx("q1", "CQ", minutes_ago=40))
    assert one.status_code == 202 and one.json() == {"accepted": ["q1"], "duplicates": []}
    many = client.post("/v1/transactions", json=[tx("q2", "CQ", 30), tx("q1", "CQ", 40), tx("q3", "CQ", 20)])
    assert many.status_code == 202 and many.json() == {"accepted": ["q2", "q3"], "duplicates": ["q1"]}

    status = client.get("/v1/transactions/q3", params={"wait": 5})
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "decided" and body["decision"]["decision"] in {"APPROVE", "FLAG", "BLOCK"}
    assert body["decision"]["transaction_id"] == "q3"

    again = client.post("/v1/transactions", json=[tx("q1", "CQ", 40), tx("q1", "CQ", 40)])
    assert again.json() == {"accepted": [], "duplicates": ["q1"]}
    wait_for(lambda: services.store.queue.pending("transactions") == 0, what="an empty queue")
    page = client.get("/v1/decisions", params={"customer_id": "CQ"}).json()
    assert sorted(item["transaction_id"] for item in page["items"]) == ["q1", "q2", "q3"]
    assert all(client.get(f"/v1/transactions/{i}").json()["status"] == "decided" for i in ("q1", "q2"))
    assert customer_feature(client, "CQ", "customer_count_24h") == 3.0


def test_long_poll_times_out_while_queued(api: Api) -> None:
    client, _, _ = api  # no worker: the transaction stays queued
    client.post("/v1/transactions", json=tx("lp1"))
    started = time.monotonic()
    response = client.get("/v1/transactions/lp1", params={"wait": 0.3})
    assert 0.25 <= time.monotonic() - started < 2.0
    queued = {"transaction_id": "lp1", "status": "queued", "decision": None, "hold": None, "challenge": None}
    assert response.json() == queued


def test_a_long_poll_is_woken_by_the_decision_and_asks_storage_rarely(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiting request sleeps until this process stores the decision it waits for, asking storage
    only at growing intervals meanwhile (for decisions another process makes), not every 20 ms."""
    import threading

    from fraudstream.api.routes import transactions

    client, services, _ = api
    client.post("/v1/transactions", json=tx("wk1"))
    asked: list[str] = []
    real = services.store.decisions.get_transaction
    monkeypatch.setattr(services.store.decisions, "get_transaction", lambda i: asked.append(i) or real(i))
    waited = client.get("/v1/transactions/wk1", params={"wait": 2.0})
    assert waited.json()["status"] == "queued" and len(asked) <= 8  # 0.05, 0.1, 0.2, ... seconds apart
    monkeypatch.setattr(transactions, "FIRST_CHECK", 60.0)  # no re-check before the deadline: only a wake
    asked.clear()
    worker = Worker(services.broker, services.decider, services.store, max_wait=0.01)
    later = threading.Timer(0.5, lambda: worker.run(burst=True))
    later.start()
    started = time.monotonic()
    try:
        woken = client.get("/v1/transactions/wk1", params={"wait": 20.0})
    finally:
        later.join(30)
    assert woken.json()["status"] == "decided" and time.monotonic() - started < 15
    assert len(asked) == 2  # before sleeping, and once woken


# --- GET /v1/decisions, /v1/stats --------------------------------------------------------------------


@pytest.fixture
def scored(api: Api) -> tuple[Api, list[dict[str, Any]]]:
    """Six tiny payments of customer CA within an hour (the sixth trips the card-testing BLOCK rule),
    and three ordinary payments of customer CB."""
    client = api[0]
    bodies = [tx(f"a{i}", "CA", minutes_ago=50 - 5 * i, amount=1.0) for i in range(6)]
    bodies += [tx(f"b{i}", "CB", minutes_ago=30 - i) for i in range(3)]
    decisions = [client.post("/v1/score", json=body).json() for body in bodies]
    return api, decisions


def test_decisions_filters_and_pagination(scored: tuple[Api, list[dict[str, Any]]]) -> None:
    (client, _, _), decisions = scored
    assert decisions[5]["decision"] == "BLOCK" and "card_testing" in decisions[5]["rules"]
    blocked = client.get("/v1/decisions", params={"decision": "BLOCK"}).json()
    assert [d["transaction_id"] for d in blocked["items"]] == [
        d["transaction_id"] for d in decisions if d["decision"] == "BLOCK"
    ]
    customer_b = client.get("/v1/decisions", params={"customer_id": "CB"}).json()["items"]
    assert sorted(d["transaction_id"] for d in customer_b) == ["b0", "b1", "b2"]
    assert {d["customer_id"] for d in customer_b} == {"CB"}

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/decisions", params=params).json()
        seen += [d["transaction_id"] for d in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 5 and len(seen) == len(set(seen)) == 9
    assert set(seen) == {d["transaction_id"] for d in decisions}

    invalid = client.get("/v1/decisions", params={"cursor": "not-a-cursor"})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["query", "cursor"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get("/v1/decisions", params={"since": later}).json() == {"items": [], "next_cursor": None}
    backwards = client.get("/v1/decisions", params={"since": later, "until": NOW.isoformat()})
    assert backwards.status_code == 422 and backwards.json()["detail"][0]["loc"] == ["query", "until"]


def test_stats_match_what_was_scored(scored: tuple[Api, list[dict[str, Any]]]) -> None:
    (client, services, _), decisions = scored
    client.post("/v1/transactions", json=[tx("st1"), tx("st2")])  # queued, no worker
    stats = client.get("/v1/stats").json()
    assert stats["total"] == 9
    expected = {name: sum(d["decision"] == name for d in decisions) for name in {"APPROVE", "FLAG", "BLOCK"}}
    assert stats["by_decision"] == {name: n for name, n in expected.items() if n}
    assert stats["flagged_rate"] == pytest.approx((expected["FLAG"] + expected["BLOCK"]) / 9)
    assert stats["queue_lag"] == 2 and stats["model_version"] == services.scorer.version
    assert stats["latency_ms"]["p50"] > 0 and stats["window_s"] == 3600
    assert client.get("/v1/stats", params={"window": 1}).json()["window_s"] == 1


# --- labels and customers ----------------------------------------------------------------------------


def test_labels_are_stored_fed_to_features_and_shown(api: Api) -> None:
    client, services, _ = api
    client.post("/v1/score", json=tx("l1", "CL", minutes_ago=30, device_id="D1"))
    label = {"transaction_id": "l1", "is_fraud": True, "label_time": (NOW - timedelta(minutes=5)).isoformat()}
    response = client.post("/v1/labels", json=label)
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "superseded": 0, "ignored": 0}
    assert client.post("/v1/labels", json=label).json() == {"accepted": 0, "superseded": 0, "ignored": 1}
    assert client.post("/v1/labels", json={**label, "source": "analyst"}).json()["accepted"] == 1

    # the fraud label reached the feature state: the device's next payment sees it
    client.post("/v1/score", json=tx("l2", "CL2", minutes_ago=1, device_id="D1"))
    record = services.store.decisions.get("l2")
    assert record is not None and record.features["device_known_fraud_30d"] == 1.0

    profile = client.get("/v1/customers/CL").json()
    assert [d["transaction_id"] for d in profile["decisions"]] == ["l1"]
    assert {(lb["transaction_id"], lb["source"]) for lb in profile["labels"]} == {
        ("l1", "chargeback"),
        ("l1", "analyst"),
    }
    assert profile["features"]["customer_count_24h"] == 1.0
    assert all(name.startswith(("customer_", "new_")) for name in profile["features"])
    assert "new_device" in profile["features"] and "customer_amount_zscore_30d" not in profile["features"]

    invalid = client.post("/v1/labels", json=[label, {**label, "is_fraud": "perhaps"}])
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", 1, "is_fraud"]
    unlabelled_customer = client.get("/v1/customers/CL2")
    assert unlabelled_customer.status_code == 200 and unlabelled_customer.json()["labels"] == []


# --- simulations and the embedded end to end ---------------------------------------------------------


def test_simulation_start_poll_stop(make_api: Callable[..., Api], tmp_path: Path) -> None:
    client, services, _ = make_api(run_worker=True, datasets_dir=tmp_path / "no-datasets")
    assert client.get("/v1/simulations").json()["running"] is False
    assert client.post("/v1/simulations", json={"action": "stop"}).status_code == 404

    start = {"action": "start", "rate": 200, "limit": 100, "customers": 50, "days": 3}
    started = client.post("/v1/simulations", json=start)
    assert started.status_code == 202, started.text
    assert started.json()["running"] is True and started.json()["total"] in (None, 100)  # None: preparing
    conflict = client.post("/v1/simulations", json=start)
    assert conflict.status_code == 409 and "already running" in conflict.json()["detail"]

    wait_for(lambda: client.get("/v1/simulations").json()["sent"] == 100, what="100 sent")
    wait_for(lambda: client.get("/v1/stats", params={"window": 600}).json()["total"] >= 100, what="decisions")
    status = client.get("/v1/simulations").json()
    assert status["errors"] == 0 and status["source"] == "generator" and status["total"] == 100
    stopped = client.post("/v1/simulations", json={"action": "stop"})
    assert stopped.status_code == 200 and stopped.json()["running"] is False
    assert services.store.queue.pending("transactions") == 0

    unknown = client.post("/v1/simulations", json={"action": "start", "source": "no-such-data"})
    assert unknown.status_code == 422 and "known datasets" in unknown.json()["detail"][0]["msg"]
    huge = client.post("/v1/simulations", json={"action": "start", "customers": 30_000, "days": 30})
    assert huge.status_code == 422 and "FRAUD_SIMULATION_MAX_ROWS" in huge.json()["detail"][0]["msg"]
    missing = client.post("/v1/simulations", json={"action": "start", "source": "paysim"})
    assert missing.status_code == 404 and "does not exist" in missing.json()["detail"]
    for bad in ({"action": "start", "rate": 0}, {"action": "start", "rate": 20_000}, {"action": "pause"}):
        assert client.post("/v1/simulations", json=bad).status_code == 422

    slow = {"action": "start", "rate": 0.01, "customers": 20, "days": 2}  # 100 s between batches
    assert client.post("/v1/simulations", json=slow).status_code == 202  # new ids: no clash with the first
    wait_for(lambda: client.get("/v1/simulations").json()["sent"] == 50, what="the first batch")
    assert client.post("/v1/simulations", json={"action": "stop"}).json()["running"] is False  # prompt


def test_embedded_end_to_end_decides_each_transaction_once(worker_api: Api) -> None:
    client, services, app = worker_api
    start = {"action": "start", "rate": 2000, "limit": 300, "customers": 60, "days": 4, "seed": 3}
    assert client.post("/v1/simulations", json=start).status_code == 202
    wait_for(lambda: client.get("/v1/simulations").json()["sent"] == 300, what="300 sent")
    wait_for(lambda: services.store.queue.pending("transactions") == 0, what="an empty queue")

    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = client.get("/v1/decisions", params={"limit": 500, **({"cursor": cursor} if cursor else {})})
        ids += [d["transaction_id"] for d in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(ids) == len(set(ids)) == 300
    assert set(ids) == set(app.state.simulations.current.truth)
    assert app.state.worker.stats.decided == 300 and app.state.worker.stats.dead == 0
    assert client.get("/v1/stats").json()["total"] == 300
    assert metric(client, 'fraudstream_scoring_seconds_count{path="worker"}') >= 1
    assert (
        sum(
            metric(client, f'fraudstream_decisions_total{{decision="{d}"}}')
            for d in {services.store.decisions.get(i).decision for i in ids}
        )
        == 300
    )


# --- the app itself ----------------------------------------------------------------------------------


def test_unexpected_errors_are_500_with_an_id(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    client, _, app = api

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    quiet = TestClient(app, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="fraudstream.api.errors"):
        response = quiet.get("/boom")
    assert response.status_code == 500
    error_id = response.json()["error_id"]
    assert error_id in response.json()["detail"] and error_id in caplog.text and "a bug" in caplog.text
    assert "a bug" not in response.text  # no internals leak to the client
    assert metric(client, "fraudstream_unhandled_errors_total") == 1.0
    assert metric(client, 'fraudstream_http_request_seconds_count{method="GET",route="/boom",status="500"}')


def test_database_outage_is_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    client, services, _ = api

    def unreachable(*_: Any, **__: Any) -> Any:
        raise StorageError("database is unreachable")

    for repository, method in (
        (services.store.decisions, "decided_ids"),
        (services.store.decisions, "save"),
        (services.store.queue, "accept"),
    ):
        monkeypatch.setattr(repository, method, unreachable)
    for response in (client.post("/v1/score", json=tx("o1")), client.post("/v1/transactions", json=tx("o1"))):
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert response.json() == {"detail": "the database is unavailable; try again later"}


def test_openapi_documents_every_route(api: Api) -> None:
    client, _, _ = api
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "fraudstream"
    paths = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert paths >= {
        ("/health", "get"), ("/ready", "get"), ("/metrics", "get"), ("/v1/score", "post"),
        ("/v1/transactions", "post"), ("/v1/transactions/{transaction_id}", "get"), ("/v1/decisions", "get"),
        ("/v1/stats", "get"), ("/v1/customers/{customer_id}", "get"), ("/v1/labels", "post"),
        ("/v1/simulations", "get"), ("/v1/simulations", "post"),
    }  # fmt: skip
    body = spec["paths"]["/v1/labels"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["anyOf"][0] == {"$ref": "#/components/schemas/Label"}
    text = client.get("/openapi.json").text
    for ref in {part.split('"')[0] for part in text.split('"$ref":"')[1:]}:
        assert ref.removeprefix("#/components/schemas/") in spec["components"]["schemas"], ref
    assert {"APIKeyHeader", "HTTPBearer"} <= set(spec["components"]["securitySchemes"])


def test_app_owns_only_the_services_it_opened(tmp_path: Path, bundle_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path}/own.db",
        model_path=bundle_path,
        api_keys="k-0123456789abcdef",
    )
    app = create_app(settings, run_worker=True)
    with TestClient(app) as client:
        services = app.state.services
        assert services is not None and client.get("/ready").json()["checks"]["worker"]["ok"] is True
        thread = app.state.worker_thread
    assert app.state.services is None and not thread.is_alive()

    given = open_services(settings)
    closed: list[bool] = []
    real_close = given.close
    given.close = lambda: closed.append(True)
    with TestClient(create_app(settings, given)) as client:
        assert client.get("/health").status_code == 200
    assert closed == []
    real_close()


def test_wait_budget_answers_with_the_workers_decision_when_it_is_quick(worker_api: Api) -> None:
    client, _, _ = worker_api
    response = client.post("/v1/transactions", params={"wait": 5}, json=[tx("w1"), tx("w2")])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == ["w1", "w2"] and body["decided_by_api"] == []
    assert [d["transaction_id"] for d in body["decisions"]] == ["w1", "w2"]
    assert all(d["decision"] in ("APPROVE", "FLAG", "BLOCK") for d in body["decisions"])


def test_past_the_budget_the_api_decides_and_the_worker_finds_it_decided(api: Api) -> None:
    client, services, _ = api  # no worker: it is stopped or lagging
    response = client.post("/v1/transactions", params={"wait": 0.03}, json=[tx("b1"), tx("b2"), tx("b1")])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decided_by_api"] == ["b1", "b2"] and body["duplicates"] == ["b1"]
    assert {d["transaction_id"] for d in body["decisions"]} == {"b1", "b2"}
    made = {d["transaction_id"]: d["decision"] for d in body["decisions"]}

    # The worker gets there later: it recognises both as decided and makes no second decision.
    stats = Worker(services.broker, services.decider, services.store, max_wait=0.01).run(burst=True)
    assert stats.decided == 0 and stats.duplicates == 2
    assert {i: services.store.decisions.get(i).decision for i in made} == made  # type: ignore[union-attr]
    assert client.get("/v1/transactions/b1").json()["status"] == "decided"


def test_wait_budget_is_validated(api: Api) -> None:
    client, _, _ = api
    response = client.post("/v1/transactions", params={"wait": -1}, json=tx("v1"))
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "wait"]


# --- POST /v1/score: a lean route inside the app -----------------------------------------------------


def test_the_score_route_answers_with_the_apps_own_errors(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api(api_keys="secret-012345678")
    key = {"X-API-Key": "secret-012345678"}
    answered = client.post("/v1/score", json=tx("f-1"), headers=key)
    assert answered.status_code == 200 and answered.json()["transaction_id"] == "f-1"
    again = client.post("/v1/score", json=tx("f-1"), headers={"Authorization": "Bearer secret-012345678"})
    assert again.json()["duplicate"] is True
    assert client.post("/v1/score", json=tx("f-2")).status_code == 401
    assert client.post("/v1/score", json=tx("f-2"), headers={"X-API-Key": "wrong"}).status_code == 403
    field = client.post("/v1/score", json=tx("f-2", amount=-1), headers=key)
    assert field.status_code == 422 and field.json()["detail"][0]["loc"] == ["body", "amount"]
    broken = client.post("/v1/score", content=b"{not json", headers={**key, **JSON})
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    flag = client.post("/v1/score", json=tx("f-2"), headers=key, params={"dry_run": "maybe"})
    assert flag.status_code == 422 and flag.json()["detail"][0]["loc"] == ["query", "dry_run"]
    text = client.post(
        "/v1/score", content=json.dumps(tx("f-2")), headers={**key, "Content-Type": "text/plain"}
    )
    assert text.status_code == 422 and text.json()["detail"][0]["loc"][0] == "body"
    assert client.post("/v1/score", json=tx("f-3"), headers=key, params={"other": "1"}).status_code == 200
    assert client.get("/v1/transactions/f-2", headers=key).status_code == 404  # nothing refused was stored


def test_the_openapi_document_describes_the_score_route(api: Api) -> None:
    client, _, _ = api
    operation = client.get("/openapi.json").json()["paths"]["/v1/score"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Transaction"}
    assert [p["name"] for p in operation["parameters"]] == ["dry_run"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/DecisionOut"}
    assert {"401", "403", "409", "422"} <= set(operation["responses"])
    assert operation["security"]


def test_score_answers_are_timed_and_oversized_bodies_are_413(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api(max_body_bytes=2048)
    line = 'fraudstream_http_request_seconds_count{method="POST",route="/v1/score",status="200"}'
    before = metric(client, line) if line in client.get("/metrics").text else 0.0
    assert client.post("/v1/score", json=tx("m-1")).status_code == 200
    assert client.post("/v1/score", json=tx("m-2")).status_code == 200
    assert metric(client, line) == before + 2
    big = tx("m-3") | {"extra": {"note": "x" * 3000}}
    response = client.post("/v1/score", json=big)
    assert response.status_code == 413 and "limit 2048" in response.json()["detail"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: found out while reading
        yield json.dumps(big).encode()[:1500]
        yield json.dumps(big).encode()[1500:]

    streamed = client.post("/v1/score", content=chunked(), headers=JSON)
    assert streamed.status_code == 413 and streamed.json()["detail"].startswith("request body too large")
    assert client.get("/v1/transactions/m-3").status_code == 404


def test_a_transaction_recorded_but_not_stored_is_decided_on_retry(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, services, _ = api

    def unreachable(*_: Any, **__: Any) -> Any:
        raise StorageError("database is unreachable")

    with monkeypatch.context() as patch:  # scored and recorded in the feature state, then the write fails
        patch.setattr(services.store.decisions, "save", unreachable)
        assert client.post("/v1/score", json=tx("r-1")).status_code == 503
    retried = client.post("/v1/score", json=tx("r-1"))
    assert retried.status_code == 200, retried.text
    assert retried.json()["duplicate"] is False
    assert services.store.decisions.get("r-1") is not None


def test_the_score_path_hands_alerts_only_the_decisions_that_can_raise_one(api: Api) -> None:
    from fraudstream.api.batcher import ScoreBatcher
    from fraudstream.api.metrics import ApiMetrics
    from fraudstream.events.transaction import Transaction

    _, services, _ = api
    handed: list[tuple[str, str]] = []
    services.decider.on_decided = lambda decided: handed.extend(
        zip(decided.transaction_id.tolist(), decided.decision.tolist(), strict=True)
    )
    batcher = ScoreBatcher(services.decider, ApiMetrics())
    bodies = [tx(f"h{i}", "CH", minutes_ago=50 - 5 * i, amount=1.0) for i in range(6)]  # 6th: card testing

    async def run() -> list[Any]:
        return [await batcher.submit(Transaction.model_validate(body)) for body in bodies]

    outcomes = asyncio.run(run())
    decided = [(rec.transaction_id, rec.decision, rec.rules) for rec, _ in outcomes]
    quiet = [t for t, d, rules in decided if d == "APPROVE" and not rules]
    assert quiet and ("h5", "BLOCK") in handed
    assert handed == [(t, d) for t, d, rules in decided if d != "APPROVE" or rules]
    assert all(services.store.decisions.get(t) is not None for t in quiet)  # stored all the same


def test_under_load_a_score_request_waits_for_company_and_alone_it_does_not(api: Api) -> None:
    from fraudstream.api.batcher import ScoreBatcher
    from fraudstream.api.metrics import ApiMetrics
    from fraudstream.events.transaction import Transaction

    _, services, _ = api
    sizes: list[int] = []
    real_score = services.scorer.score

    def spy(batch: Any, **kw: Any) -> Any:
        sizes.append(len(batch))
        return real_score(batch, **kw)

    services.scorer.score = spy  # type: ignore[method-assign]
    batcher = ScoreBatcher(services.decider, ApiMetrics(), max_wait=0.3)

    def submit(i: int) -> Any:
        return batcher.submit(Transaction.model_validate(tx(f"lw{i}")))

    async def run() -> None:
        await asyncio.wait_for(submit(1), 0.2)  # idle: decided at once, well within max_wait
        second = asyncio.ensure_future(submit(2))  # right after a batch: waits for company
        await asyncio.sleep(0.1)
        third = asyncio.ensure_future(submit(3))
        await asyncio.gather(second, third)
        await asyncio.sleep(0.4)
        await asyncio.wait_for(submit(4), 0.2)  # idle again

    asyncio.run(run())
    assert sizes == [1, 2, 1]
    samples = {s.name: s.value for s in batcher.metrics.score_batches.collect()[0].samples}
    assert samples["fraudstream_score_batch_size_sum"] == 4.0  # 1 + 2 + 1
    assert all(services.store.decisions.get(f"lw{i}") is not None for i in range(1, 5))


def test_a_score_decision_is_stored_before_it_is_answered(api: Api) -> None:
    """One commit per micro-batch, before its answers: a decision the client has is in the table."""
    client, services, _ = api
    for i in range(3):
        assert client.post("/v1/score", json=tx(f"g{i}")).status_code == 200
        assert stored(services) == i + 1


def test_a_hung_database_holds_no_client_and_stops_no_other_route(make_api: Callable[..., Api]) -> None:
    """Storage that stops answering (a hung database): the requests that need it get 503 with
    Retry-After after FRAUD_REQUEST_TIMEOUT, the liveness probe answers at once meanwhile, and the
    decision stored once the database answers again is the one the client's retry gets."""
    import threading

    client, services, _ = make_api(request_timeout=1.0)
    hung = threading.Event()
    real_save, real_list = services.store.decisions.save, services.store.decisions.list

    def save(*args: Any, **kwargs: Any) -> Any:
        hung.wait(30)
        return real_save(*args, **kwargs)

    def listing(*args: Any, **kwargs: Any) -> Any:
        hung.wait(30)
        return real_list(*args, **kwargs)

    services.store.decisions.save = save  # type: ignore[method-assign]
    services.store.decisions.list = listing  # type: ignore[method-assign]
    health: list[tuple[int, float]] = []

    def probe() -> None:
        started = time.monotonic()
        health.append((client.get("/health").status_code, time.monotonic() - started))

    try:
        probing = threading.Timer(0.3, probe)
        probing.start()
        refused = client.post("/v1/score", json=tx("hung-1"))
        probing.join(10)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert "not answering" in refused.json()["detail"]
        assert client.get("/v1/decisions").status_code == 503
        ((status, seconds),) = health
        assert status == 200 and seconds < 0.5  # answered while the database hung
    finally:
        hung.set()
    services.store.decisions.save = real_save  # type: ignore[method-assign]
    services.store.decisions.list = real_list  # type: ignore[method-assign]
    wait_for(lambda: services.store.decisions.get("hung-1") is not None, what="the late store")
    retried = client.post("/v1/score", json=tx("hung-1"))
    assert retried.status_code == 200 and retried.json()["duplicate"] is True
