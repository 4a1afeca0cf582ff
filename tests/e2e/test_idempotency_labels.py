"""One id, one body (``POST /v1/score``, ``POST /v1/transactions``, the worker), labels that can change with
an audit trail, and ``wait=`` in seconds: through HTTP, on SQLite and on
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fraudstream.api import create_app
from fraudstream.config import Settings
from fraudstream.events.transaction import Transaction
from fraudstream.runtime import open_services
from fraudstream.worker import Worker
from fraudstream.worker.worker import TRANSACTIONS
from tests.e2e.apitools import NOW, Api, tx
from tests.integration.conftest import POSTGRES_URL, require, scratch_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
#: Sent without the fast path's content type, so that FastAPI's own route answers.
ROUTE = {"Content-Type": "application/json;charset=utf-8"}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, bundle_path: Path) -> Iterator[Api]:
    """An API without a worker on each store: a SQLite file and PostgreSQL."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": f"sqlite:///{tmp_path}/t.db",
        "model_path": bundle_path,
        "api_keys": "",
        "max_wait": 0.01,
    }
    with _database(request.param) as url:
        if url is not None:
            values["database_url"] = url
        services = open_services(Settings(**values))
        app = create_app(services.settings, services, run_worker=False)
        try:
            with TestClient(app) as client:
                yield client, services, app
        finally:
            services.close()


def _database(kind: str) -> AbstractContextManager[str | None]:
    """A scratch PostgreSQL database for ``postgres``; nothing (the SQLite file) otherwise."""
    if kind != "postgres":
        return nullcontext()
    return scratch_database(require(POSTGRES_URL, "PostgreSQL"))


def stored_amount(services: Any, transaction_id: str) -> float | None:
    row = services.store.decisions.get_transaction(transaction_id)
    return None if row is None else float(row["payload"]["amount"])


# --- one id, one body ------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, ROUTE], ids=["fast-path", "route"])
def test_score_replays_the_same_body_and_refuses_another(backend: Api, headers: dict[str, str]) -> None:
    client, services, _ = backend
    body = tx("s1", "C1", amount=10.0, extra={"a": 1, "b": {"x": 1, "y": 2}})
    first = client.post("/v1/score", json=body, headers=headers)
    assert first.status_code == 200, first.text

    # the same transaction, written differently (keys in another order, the time in another zone)
    same = {**body, "extra": {"b": {"y": 2, "x": 1}, "a": 1}}
    same["timestamp"] = (
        datetime.fromisoformat(body["timestamp"]).astimezone(timezone(timedelta(hours=2))).isoformat()
    )
    replay = client.post("/v1/score", json=same, headers=headers)
    assert replay.status_code == 200 and replay.json() == {**first.json(), "duplicate": True}

    for changed in ({"amount": 9999.0}, {"customer_id": "C2"}, {"extra": {"a": 2}}, {"device_id": "D9"}):
        other = client.post("/v1/score", json={**body, **changed}, headers=headers)
        assert other.status_code == 409, (changed, other.text)
        answer = other.json()
        assert answer["transaction_ids"] == ["s1"]
        assert "s1" in answer["detail"] and "different body" in answer["detail"]
    assert stored_amount(services, "s1") == 10.0
    assert services.store.decisions.get("s1").amount == 10.0  # type: ignore[union-attr]


def test_repeats_of_an_id_arriving_together_are_answered_by_their_body(backend: Api) -> None:
    """Requests that arrive together are decided in one batch (or a few): a repeat with the first
    body's gets its decision, one with another body a 409, and only the first body is stored."""
    client, services, _ = backend
    bodies = [tx("b1", amount=1.0), tx("b1", amount=1.0), tx("b1", amount=2.0), tx("b2", amount=3.0)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: client.post("/v1/score", json=b), bodies))
    codes = sorted(a.status_code for a in answers[:3])
    assert answers[3].status_code == 200
    stored = stored_amount(services, "b1")
    if stored == 1.0:  # the 1.0 bodies came first: both are answered, the 2.0 one refused
        assert codes == [200, 200, 409]
    else:  # the 2.0 body came first: both 1.0 bodies are refused
        assert stored == 2.0 and codes == [200, 409, 409]
    decided = [a.json() for a in answers[:3] if a.status_code == 200]
    assert {d["amount"] for d in decided} == {stored}
    assert sorted(d["duplicate"] for d in decided) == [False, True][: len(decided)]


def test_an_id_scored_cannot_be_queued_with_another_body(backend: Api) -> None:
    client, services, _ = backend
    assert client.post("/v1/score", json=tx("x1", amount=5.0)).status_code == 200
    # at once, right after the answer
    refused = client.post("/v1/transactions", json=[tx("y1"), tx("x1", amount=6.0)])
    assert refused.status_code == 409 and refused.json()["transaction_ids"] == ["x1"]
    assert services.store.decisions.get_transaction("y1") is None  # nothing of the request was accepted
    again = client.post("/v1/transactions", json=[tx("y1"), tx("x1", amount=5.0)])
    assert again.status_code == 202 and again.json() == {"accepted": ["y1"], "duplicates": ["x1"]}
    assert services.store.queue.pending(TRANSACTIONS) == 1  # y1 only: x1 is decided, never queued
    assert stored_amount(services, "x1") == 5.0


def test_an_id_queued_cannot_be_scored_with_another_body(backend: Api) -> None:
    client, services, _ = backend
    assert client.post("/v1/transactions", json=tx("q1", amount=7.0)).status_code == 202
    refused = client.post("/v1/score", json=tx("q1", amount=8.0))
    assert refused.status_code == 409 and refused.json()["transaction_ids"] == ["q1"]
    assert services.store.decisions.get("q1") is None
    decided = client.post("/v1/score", json=tx("q1", amount=7.0))  # the queued body: decided now
    assert decided.status_code == 200 and decided.json()["amount"] == 7.0
    stats = Worker(services.broker, services.decider, services.store, max_wait=0.01).run(burst=True)
    assert stats.decided == 0 and stats.dead == 0  # the worker finds it decided
    assert client.get("/v1/transactions/q1").json()["decision"]["amount"] == 7.0


def test_a_request_repeating_an_id_with_another_body_is_refused_whole(backend: Api) -> None:
    client, services, _ = backend
    response = client.post("/v1/transactions", json=[tx("r1", amount=1.0), tx("r2"), tx("r1", amount=2.0)])
    assert response.status_code == 409 and response.json()["transaction_ids"] == ["r1"]
    assert (
        services.store.decisions.get_transaction("r1") is None
        and services.store.decisions.get_transaction("r2") is None
    )
    same = client.post("/v1/transactions", json=[tx("r1"), tx("r2"), tx("r1")])
    assert same.status_code == 202 and same.json() == {"accepted": ["r1", "r2"], "duplicates": ["r1"]}


def test_score_and_queue_racing_with_one_id_store_one_body_and_one_decision(backend: Api) -> None:
    """``POST /v1/score`` and ``POST /v1/transactions`` sent at once with the same ids and different
    amounts: for each id exactly one of them is taken and the other gets 409, and once the worker has
    run, the stored transaction and its one decision have the same amount."""
    client, services, _ = backend
    n = 40

    def post(job: tuple[str, int]) -> tuple[str, int, int]:
        path, i = job
        amount = 100.0 + i if path == "/v1/score" else 200.0 + i
        return path, i, client.post(path, json=tx(f"race{i}", amount=amount)).status_code

    paths = ("/v1/score", "/v1/transactions")
    jobs = [(path, i) for i in range(n) for path in (paths if i % 2 else paths[::-1])]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, jobs))
    Worker(services.broker, services.decider, services.store, max_wait=0.01).run(burst=True)
    codes = {(path, i): code for path, i, code in results}
    for i in range(n):
        score, queue = codes["/v1/score", i], codes["/v1/transactions", i]
        assert sorted((score, queue)) in ([200, 409], [202, 409]), (i, score, queue)
        winner = 100.0 + i if score == 200 else 200.0 + i
        assert stored_amount(services, f"race{i}") == winner
        decision = services.store.decisions.get(f"race{i}")
        assert decision is not None and decision.amount == winner
    assert not services.store.dead_letters.list()


def test_the_worker_dead_letters_another_body_under_a_used_id(backend: Api) -> None:
    """Producers writing to the broker directly bypass the API's checks: the worker keeps the first body
    with its decision and dead-letters the others, saying why."""
    client, services, _ = backend
    store, broker = services.store, services.broker
    client.post("/v1/score", json=tx("w1", amount=1.0))  # decided by the API
    store.queue.accept(
        [Transaction.model_validate(tx("w2", amount=2.0))], enqueue=False
    )  # stored, not queued
    raw = [tx("w1", amount=1.5), tx("w2", amount=2.5), tx("w3", amount=3.0), tx("w3", amount=3.5)]
    broker.publish(TRANSACTIONS, [("C1", Transaction.model_validate(b).model_dump(mode="json")) for b in raw])
    stats = Worker(broker, services.decider, store, max_wait=0.01).run(burst=True)
    assert stats.decided == 1 and stats.dead == 3  # w3's first body; the three others
    letters = store.dead_letters.list()
    assert sorted(Transaction.model_validate_json(d["payload"]).amount for d in letters) == [1.5, 2.5, 3.5]
    assert all("different body" in d["reason"] for d in letters)
    assert {i: stored_amount(services, i) for i in ("w1", "w2", "w3")} == {"w1": 1.0, "w2": 2.0, "w3": 3.0}
    assert store.decisions.get("w2") is None and store.decisions.get_transaction("w2")["status"] == "queued"  # type: ignore[index]
    assert store.decisions.get("w3").amount == 3.0  # type: ignore[union-attr]


# --- labels -----------------------------------------------------------------------------------------


def label(
    transaction_id: str, is_fraud: bool, minutes_ago: float, source: str = "chargeback"
) -> dict[str, Any]:
    when = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    return {"transaction_id": transaction_id, "is_fraud": is_fraud, "label_time": when, "source": source}


def test_labels_for_unknown_transactions_or_before_them_are_refused(backend: Api) -> None:
    client, _, _ = backend
    client.post("/v1/score", json=tx("k1", minutes_ago=30))
    one = client.post("/v1/labels", json=label("never-seen", False, 5))
    assert one.status_code == 422
    (error,) = one.json()["detail"]
    assert error["loc"] == ["body", "transaction_id"] and error["type"] == "unknown_transaction"

    early = client.post(
        "/v1/labels",
        json=[label("k1", True, 5), label("k1", True, 45, "analyst")],
    )
    assert early.status_code == 422
    (error,) = early.json()["detail"]
    assert error["loc"] == ["body", 1, "label_time"] and error["type"] == "label_before_transaction"
    assert "before the transaction's timestamp" in error["msg"]
    assert client.get("/v1/labels/k1").json()["labels"] == []  # nothing of the request was stored
    assert client.get("/v1/labels/never-seen").status_code == 404

    queued = client.post("/v1/transactions", json=tx("k2", minutes_ago=20))  # known once queued
    assert queued.status_code == 202
    assert client.post("/v1/labels", json=label("k2", True, 5)).json()["accepted"] == 1


def test_a_later_verdict_supersedes_with_history_and_fraud_wins(backend: Api) -> None:
    client, services, _ = backend
    client.post("/v1/score", json=tx("v1", "CV", minutes_ago=60, device_id="DV"))
    # a legitimate verdict first (an analyst's quick look), then the chargeback
    assert client.post("/v1/labels", json=label("v1", False, 50)).json() == {
        "accepted": 1,
        "superseded": 0,
        "ignored": 0,
    }
    assert client.get("/v1/labels/v1").json()["is_fraud"] is False
    changed = client.post("/v1/labels", json=[label("v1", True, 10), label("v1", True, 5)])
    assert changed.json() == {"accepted": 0, "superseded": 1, "ignored": 1}
    # an older verdict arriving late does not undo a newer one
    assert client.post("/v1/labels", json=label("v1", False, 30)).json()["ignored"] == 1

    found = client.get("/v1/labels/v1").json()
    assert found["is_fraud"] is True
    assert [(lb["source"], lb["is_fraud"]) for lb in found["labels"]] == [("chargeback", True)]
    (old,) = found["history"]
    assert (old["source"], old["is_fraud"]) == ("chargeback", False)
    assert datetime.fromisoformat(old["label_time"]) == datetime.fromisoformat(
        label("v1", False, 50)["label_time"]
    )
    assert datetime.fromisoformat(old["superseded_at"]) >= datetime.fromisoformat(old["received_at"])

    # the fraud reached the feature state: the device's next payment sees one known fraud
    next_one = client.post("/v1/score", json=tx("v2", "CV2", minutes_ago=1, device_id="DV")).json()
    assert services.store.decisions.get("v2").features["device_known_fraud_30d"] == 1.0  # type: ignore[union-attr]
    assert next_one["transaction_id"] == "v2"

    # another source disagreeing does not outvote the chargeback
    assert client.post("/v1/labels", json=label("v1", False, 4, "analyst")).json()["accepted"] == 1
    assert client.get("/v1/labels/v1").json()["is_fraud"] is True

    # flipping back and forth keeps every verdict, and the state counts the fraud once
    client.post("/v1/labels", json=[label("v1", False, 3), label("v1", True, 2)])
    found = client.get("/v1/labels/v1").json()
    assert [(h["is_fraud"]) for h in found["history"]] == [False, True, False]
    client.post("/v1/score", json=tx("v3", "CV3", minutes_ago=0.5, device_id="DV"))
    assert services.store.decisions.get("v3").features["device_known_fraud_30d"] == 1.0  # type: ignore[union-attr]

    profile = client.get("/v1/customers/CV").json()
    assert {(lb["source"], lb["is_fraud"]) for lb in profile["labels"]} == {
        ("chargeback", True),
        ("analyst", False),
    }


def test_a_verdict_posted_before_its_transaction_cannot_stand_in_for_the_chargeback(backend: Api) -> None:
    """The issue's case: ``is_fraud: false`` sent in advance used to win over the real chargeback."""
    client, _, _ = backend
    assert client.post("/v1/labels", json=label("a1", False, 1)).status_code == 422
    client.post("/v1/score", json=tx("a1", minutes_ago=30))
    assert client.post("/v1/labels", json=label("a1", False, 20)).json()["accepted"] == 1
    assert client.post("/v1/labels", json=label("a1", True, 5)).json()["superseded"] == 1
    assert client.get("/v1/labels/a1").json()["is_fraud"] is True


def test_a_transaction_known_but_unlabelled_has_no_verdict(backend: Api) -> None:
    client, _, _ = backend
    client.post("/v1/score", json=tx("u1"))
    assert client.get("/v1/labels/u1").json() == {
        "transaction_id": "u1",
        "is_fraud": None,
        "labels": [],
        "history": [],
    }


# --- wait= is seconds on both endpoints ----------------------------------------------------------------


def test_wait_is_seconds_on_both_endpoints(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api()  # no worker: a budget that runs out is decided by the API
    response = client.post("/v1/transactions", params={"wait": 0.05}, json=tx("t1"))
    assert response.status_code == 200 and response.json()["decided_by_api"] == ["t1"]
    polled = client.get("/v1/transactions/t1", params={"wait": 0.05})
    assert polled.json()["status"] == "decided"
    for path, method in (("/v1/transactions", "post"), ("/v1/transactions/t1", "get")):
        too_long = client.request(method.upper(), path, params={"wait": 31}, json=tx("t2"))
        assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["query", "wait"]
    spec = client.get("/openapi.json").json()["paths"]
    for path, method in (("/v1/transactions", "post"), ("/v1/transactions/{transaction_id}", "get")):
        (wait,) = [p for p in spec[path][method]["parameters"] if p["name"] == "wait"]
        assert "seconds" in wait["description"] and "milli" not in wait["description"]


def test_a_queued_transaction_is_decided_by_the_worker_within_a_wait_in_seconds(worker_api: Api) -> None:
    client, _, _ = worker_api
    response = client.post("/v1/transactions", params={"wait": 10}, json=[tx("s1"), tx("s2")])
    assert response.status_code == 200, response.text
    assert response.json()["decided_by_api"] == []
