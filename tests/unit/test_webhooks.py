"""The event webhooks' sender against a real local receiver and an embedded store: signed posts with the
event's id and type, retries with doubling waits, a redirect never followed, a dead endpoint costing
one attempt a round, deliveries given up after their attempts or their age; events are typed and
their envelope stable."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from fraudstream.config import Settings
from fraudstream.events.decision import DecisionRecord
from fraudstream.events.transaction import Transaction
from fraudstream.events.webhook import CASE_OPENED, DECISION_CREATED, LABEL_CREATED, WebhookEvent, event_id
from fraudstream.storage import Store, open_store
from fraudstream.webhooks import Retry, WebhookDispatcher, signature_header
from tests.waiting import wait_for

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)


@dataclass
class Receiver:
    """A local HTTP endpoint answering each POST with the next of ``answers`` (then 200), keeping them."""

    url: str
    answers: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((self.path, dict(self.headers), body))
            answer = state.answers.pop(0) if state.answers else 200
            code, headers = answer if isinstance(answer, tuple) else (answer, {})
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"nope")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/w.db") as s:
        s.migrate()
        yield s


def dispatcher(store: Store, **retry: Any) -> WebhookDispatcher:
    values = {"backoff": 0.001, "max_backoff": 0.002} | retry
    return WebhookDispatcher(store, retry=Retry(**values), timeout=5)


def status(store: Store) -> str:
    """The status of the one delivery stored."""
    (delivery,) = store.webhooks.deliveries()
    return str(delivery["status"])


def emit(store: Store, n: int = 1) -> list[WebhookEvent]:
    events = [WebhookEvent(LABEL_CREATED, f"k{i}", {"n": i}, occurred=T0) for i in range(n)]
    store.webhooks.emit(events)
    return events


def test_a_delivery_is_signed_over_the_timestamp_and_the_raw_body_with_the_event_s_headers(
    store: Store, receiver: Receiver
) -> None:
    endpoint = store.webhooks.add_endpoint(receiver.url, ["*"], "admin")
    (event,) = emit(store)
    sender = dispatcher(store)
    assert sender.deliver() == 1
    sender.close()
    ((path, headers, body),) = receiver.received
    assert path == "/hook" and headers["Content-Type"] == "application/json"
    assert headers["Fraudstream-Event-Id"] == event.id and headers["Fraudstream-Event-Type"] == LABEL_CREATED
    assert headers["Fraudstream-Delivery-Attempt"] == "1"
    t, v1 = (part.split("=", 1)[1] for part in headers["Fraudstream-Signature"].split(","))
    expected = hmac.new(endpoint.secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected) and abs(int(t) - datetime.now(UTC).timestamp()) < 60
    assert json.loads(body) == {
        "id": event.id,
        "type": LABEL_CREATED,
        "created": "2024-03-01T12:00:00Z",
        "emitted": json.loads(body)["emitted"],
        "data": {"n": 0},
    }
    (delivery,) = store.webhooks.deliveries()
    assert delivery["status"] == "delivered" and delivery["log"][0]["status_code"] == 200


def test_the_signature_header_is_t_and_v1() -> None:
    assert signature_header("whsec_x", 1700000000, b"{}") == (
        "t=1700000000,v1=" + hmac.new(b"whsec_x", b"1700000000.{}", hashlib.sha256).hexdigest()
    )


def test_a_failed_attempt_is_tried_again_until_it_succeeds_each_attempt_logged(
    store: Store, receiver: Receiver
) -> None:
    store.webhooks.add_endpoint(receiver.url, ["*"], "admin")
    emit(store)
    receiver.answers = [500, 503]
    sender = dispatcher(store)
    wait_for(lambda: sender.deliver() >= 0 and status(store) == "delivered", "the third attempt")
    sender.close()
    (delivery,) = store.webhooks.deliveries()
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["log"]] == [500, 503, 200]
    assert delivery["log"][0]["error"] == "HTTP 500: nope"
    assert [h["Fraudstream-Delivery-Attempt"] for _, h, _ in receiver.received] == ["1", "2", "3"]
    assert len({h["Fraudstream-Event-Id"] for _, h, _ in receiver.received}) == 1


def test_a_delivery_is_failed_after_its_last_attempt(store: Store, receiver: Receiver) -> None:
    store.webhooks.add_endpoint(receiver.url, ["*"], "admin")
    emit(store)
    receiver.answers = [500, 500, 500]
    sender = dispatcher(store, max_attempts=2)
    wait_for(lambda: sender.deliver() >= 0 and status(store) == "failed", "the last attempt")
    sender.close()
    (delivery,) = store.webhooks.deliveries()
    assert delivery["status"] == "failed" and delivery["attempts"] == 2 and len(receiver.received) == 2


def test_a_redirect_is_not_followed(store: Store, receiver: Receiver) -> None:
    store.webhooks.add_endpoint(receiver.url, ["*"], "admin")
    emit(store)
    receiver.answers = [(302, {"Location": "http://169.254.169.254/latest"})]
    sender = dispatcher(store)
    sender.deliver()
    sender.close()
    assert len(receiver.received) == 1
    (delivery,) = store.webhooks.deliveries()
    assert delivery["status"] == "pending" and delivery["last_status"] == 302
    assert "redirect" in delivery["last_error"] and "169.254.169.254" in delivery["last_error"]


def test_an_endpoint_that_does_not_answer_costs_one_attempt_a_round(store: Store, receiver: Receiver) -> None:
    dead = store.webhooks.add_endpoint("http://127.0.0.1:9/nothing-listens", ["*"], "admin")
    store.webhooks.add_endpoint(receiver.url, ["*"], "admin")
    emit(store, 3)
    sender = dispatcher(store, backoff=60, max_backoff=60)
    assert sender.deliver() == 6
    sender.close()
    to_dead = store.webhooks.deliveries(endpoint_id=dead.id)
    assert sorted(d["attempts"] for d in to_dead) == [0, 0, 1]  # one tried; the others wait with it
    assert {d["status"] for d in to_dead} == {"pending"}
    assert len({d["next_attempt_at"] for d in to_dead}) == 1
    assert to_dead[-1]["log"][0]["status_code"] is None and "ConnectError" in to_dead[-1]["log"][0]["error"]
    assert len(receiver.received) == 3  # the live endpoint got all of its own


def test_a_delivery_older_than_the_maximum_age_is_failed_unsent(store: Store, receiver: Receiver) -> None:
    store.webhooks.add_endpoint(receiver.url, ["*"], "admin")
    emit(store)
    sender = dispatcher(store, max_age=0.001)
    wait_for(lambda: sender.deliver() >= 0 and status(store) == "failed", "the delivery to expire")
    sender.close()
    (delivery,) = store.webhooks.deliveries()
    assert (
        delivery["status"] == "failed" and delivery["log"] == [] and "maximum age" in delivery["last_error"]
    )
    assert receiver.received == []


def test_waits_double_up_to_the_cap_and_stop_at_the_attempts_or_the_age() -> None:
    retry = Retry(backoff=10, max_backoff=60, max_attempts=5, max_age=3600)
    assert [retry.wait(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]
    queued = T0
    assert retry.after_failure(1, queued, T0) == T0 + timedelta(seconds=10)
    assert retry.after_failure(5, queued, T0) is None
    assert retry.after_failure(2, queued, T0 + timedelta(seconds=3590)) is None  # past the age


def test_following_emits_decisions_and_opens_cases_only_for_subscribers(store: Store) -> None:
    now = datetime.now(UTC)
    sender = dispatcher(store)
    decision = DecisionRecord(
        transaction_id="t1", customer_id="c1", timestamp=T0, amount=5.0, decision="BLOCK", probability=0.9,
        reasons=[], rules=["big"], model_version="m1", features={}, latency_ms={}, decided_at=now,
    )  # fmt: skip
    transaction = Transaction(transaction_id="t1", timestamp=T0, customer_id="c1", amount=5.0)
    store.decisions.save([decision], transactions=[transaction])
    assert sender.follow() == 0 and store.cases.list() == []  # nobody listens: nothing grouped either
    store.webhooks.add_endpoint("http://127.0.0.1:9/x", [CASE_OPENED], "admin")
    assert sender.follow() == 0 and len(store.cases.list()) == 1
    store.webhooks.add_endpoint("http://127.0.0.1:9/y", [DECISION_CREATED], "admin")
    assert sender.follow() == 0  # decided before that endpoint subscribed
    sender.close()
    assert [d["event_type"] for d in store.webhooks.deliveries()] == [CASE_OPENED]


def test_event_ids_are_stable_per_fact_and_distinct_across_types() -> None:
    assert event_id(DECISION_CREATED, "t1") == WebhookEvent(DECISION_CREATED, "t1", {}).id
    assert event_id(DECISION_CREATED, "t1") != event_id(LABEL_CREATED, "t1")
    assert event_id(DECISION_CREATED, "t1").startswith("evt_") and len(event_id(DECISION_CREATED, "t1")) == 36


def test_the_outcomes_that_emit_decisions_are_checked() -> None:
    assert Settings().webhook_outcomes == ("FLAG", "CHALLENGE", "HOLD", "BLOCK")
    assert Settings(webhook_decisions="all").webhook_outcomes is None
    assert Settings(webhook_decisions=" block , flag,BLOCK").webhook_outcomes == ("BLOCK", "FLAG")
    with pytest.raises(ValidationError, match="webhook_decisions"):
        Settings(webhook_decisions="FLAG,MAYBE")


def test_an_envelope_holds_what_orjson_refuses_and_times_in_utc() -> None:
    emitted = datetime(2024, 3, 1, 13, 30, tzinfo=timezone(timedelta(hours=1)))
    body = json.loads(WebhookEvent(LABEL_CREATED, "k", {"n": 2**70, "at": emitted}).body(emitted))
    assert body["data"] == {"n": 2**70, "at": "2024-03-01T12:30:00Z"}
    assert body["created"] == body["emitted"] == "2024-03-01T12:30:00Z"


def test_no_sender_runs_in_a_process_told_to_leave_it_to_others(store: Store) -> None:
    before = set(threading.enumerate())
    sender = WebhookDispatcher.from_settings(Settings(webhook_senders=0), store).start()
    assert set(threading.enumerate()) - before == set()
    sender.close()
