"""Event webhooks end to end: a running ``fraudstream serve`` delivers decisions, cases, verdicts and
labels to a receiver written from the documentation. The receiver is the code block of
``docs/operations/webhooks.md`` itself, run as it stands, so the page cannot drift from what the
server sends: it accepts the real deliveries, refuses a tampered body and a stale timestamp, gets an
event on the third attempt from an endpoint that answered 500 twice (the attempts in the delivery
log), and handles a replayed event once."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.apitools import NOW, tx
from tests.waiting import wait_for

DOCS = Path(__file__).parents[2] / "docs" / "operations" / "webhooks.md"
ADMIN = "webhooks-admin-0123456789"
RULES = "rules:\n  - {name: big, when: 'amount > 1000', action: BLOCK, reason: big amount}\n"
WAIT = 60.0


def documented_receiver() -> str:
    """The code of the page's ``receiver.py`` block."""
    found = re.search(r'```python title="receiver\.py"\n(.*?)\n```', DOCS.read_text(encoding="utf-8"), re.S)
    assert found, f"no receiver.py code block in {DOCS}"
    return found.group(1)


@dataclass
class Receiver:
    """The documented receiver running on a loopback port, with what reached it."""

    namespace: dict[str, Any]
    url: str = ""
    handled: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    failures: int = 0
    """answer this many requests 500 before letting the documented code answer"""

    def verify(self, body: bytes, header: str, now: float | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.namespace["verify"](body, header, now)
        return result

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.handled if e["type"] == type_]


def run_receiver(secret: str, monkeypatch: pytest.MonkeyPatch, failures: int = 0) -> Iterator[Receiver]:
    monkeypatch.setenv("FRAUDSTREAM_WEBHOOK_SECRET", secret)
    namespace: dict[str, Any] = {"__name__": "receiver"}  # not "__main__": the test serves it itself
    exec(compile(documented_receiver(), str(DOCS), "exec"), namespace)
    state = Receiver(namespace, failures=failures)
    namespace["handle"] = state.handled.append  # what the page's handle() would print

    class Recorded(namespace["Receiver"]):  # type: ignore[misc, name-defined]
        """The page's handler, with each raw request kept, answering 500 first when asked to."""

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append((dict(self.headers), body))
            if state.failures:
                state.failures -= 1
                state.answers.append(500)
                self.send_response(500)
                self.end_headers()
                return
            self.rfile = io.BytesIO(body)
            super().do_POST()

        def send_response(self, code: int, message: str | None = None) -> None:
            if code != 500:
                state.answers.append(code)
            super().send_response(code, message)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Recorded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/events"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path, bundle_path: Path) -> Iterator[httpx.Client]:
    """``fraudstream serve`` with an admin key, a rule that BLOCKs big amounts, every decision emitting
    an event, and waits short enough for a test."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    port = free_port()
    env = os.environ | {
        "FRAUD_DATA_DIR": str(tmp_path),
        "FRAUD_MODEL_PATH": str(bundle_path),
        "FRAUD_RULES_PATH": str(rules),
        "FRAUD_ADMIN_KEYS": f"ops:{ADMIN}",
        "FRAUD_WEBHOOK_DECISIONS": "all",
        "FRAUD_WEBHOOK_POLL_SECONDS": "0.1",
        "FRAUD_WEBHOOK_BACKOFF_SECONDS": "0.2",
        "FRAUD_REQUEST_TIMEOUT": "60",  # a first request on a busy machine
    }
    command = [sys.executable, "-m", "fraudstream", "serve", "--port", str(port), "--no-with-worker"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": ADMIN}, timeout=30)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(60)


def add_endpoint(api: httpx.Client, url: str, events: list[str]) -> dict[str, Any]:
    answer = api.post("/v1/webhooks", json={"url": url, "events": events, "description": "test receiver"})
    assert answer.status_code == 201, answer.text
    endpoint: dict[str, Any] = answer.json()
    assert endpoint["secret"].startswith("whsec_")
    return endpoint


def deliveries(api: httpx.Client, **query: Any) -> list[dict[str, Any]]:
    answer = api.get("/v1/webhooks/deliveries", params=query)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_a_receiver_written_from_the_docs_verifies_every_delivery_of_a_running_server(
    server: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = server
    endpoint = add_endpoint(api, "http://127.0.0.1:9/not-yet", ["*"])
    (listed,) = api.get("/v1/webhooks").json()["items"]
    assert "secret" not in listed and listed["id"] == endpoint["id"]
    receivers = run_receiver(endpoint["secret"], monkeypatch)
    receiver = next(receivers)
    assert api.patch(f"/v1/webhooks/{endpoint['id']}", json={"url": receiver.url}).status_code == 200

    # a decision, the case it opens, a claim and a verdict, and the verdict's label
    answer = api.post("/v1/score", json=tx("wh-1", "C-9", amount=5000.0))
    assert answer.status_code == 200 and answer.json()["decision"] == "BLOCK", answer.text
    wait_for(lambda: receiver.of_type("case.opened"), "case.opened", WAIT)
    (decision,) = receiver.of_type("decision.created")
    assert decision["data"]["transaction_id"] == "wh-1" and decision["data"]["rules"] == ["big"]
    assert datetime.fromisoformat(decision["created"]) == datetime.fromisoformat(tx("wh-1")["timestamp"])
    case_id = receiver.of_type("case.opened")[0]["data"]["id"]
    assert api.post(f"/v1/cases/{case_id}/claim").status_code == 200
    verdict = api.post(f"/v1/cases/{case_id}/verdict", json={"verdict": "fraud", "note": "confirmed"})
    assert verdict.status_code == 200, verdict.text
    wait_for(
        lambda: receiver.of_type("case.verdict") and receiver.of_type("label.created"), "the verdict", WAIT
    )
    (updated,) = receiver.of_type("case.updated")
    assert updated["data"]["change"] == "claim" and updated["data"]["actor"] == "env:ops"
    assert receiver.of_type("case.verdict")[0]["data"]["transaction_ids"] == ["wh-1"]
    (label,) = receiver.of_type("label.created")
    assert label["data"] == label["data"] | {"transaction_id": "wh-1", "is_fraud": True, "source": "case"}
    assert set(receiver.answers) == {204}  # every delivery verified

    # the headers name the event; a tampered body or a stale timestamp is refused
    headers, body = receiver.requests[0]
    event = receiver.verify(body, headers["Fraudstream-Signature"])
    assert (
        headers["Fraudstream-Event-Id"] == event["id"] and headers["Fraudstream-Event-Type"] == event["type"]
    )
    tampered = body.replace(b'"wh-1"', b'"wh-2"')
    assert tampered != body
    with pytest.raises(ValueError, match="does not match"):
        receiver.verify(tampered, headers["Fraudstream-Signature"])
    sent_at = int(headers["Fraudstream-Signature"].split(",")[0].removeprefix("t="))
    with pytest.raises(ValueError, match="too far"):
        receiver.verify(body, headers["Fraudstream-Signature"], now=sent_at + 301)
    assert receiver.verify(body, headers["Fraudstream-Signature"], now=sent_at + 299)["id"] == event["id"]
    refused = httpx.post(
        receiver.url, content=tampered, headers={"Fraudstream-Signature": headers["Fraudstream-Signature"]}
    )
    assert refused.status_code == 400 and len(receiver.of_type("decision.created")) == 1

    # a replay sends the same event again, signed afresh, and the receiver handles it once
    (first,) = deliveries(api, type="decision.created")
    assert first["status"] == "delivered" and first["log"][0]["status_code"] == 204
    replayed = api.post(f"/v1/webhooks/deliveries/{first['id']}/replay")
    assert replayed.status_code == 202 and replayed.json()["replay_of"] == first["id"]
    wait_for(lambda: deliveries(api, type="decision.created")[0]["status"] == "delivered", "the replay", WAIT)
    again = [h for h, _ in receiver.requests if h.get("Fraudstream-Event-Id") == first["event_id"]]
    assert len(again) == 2 and len(receiver.of_type("decision.created")) == 1
    assert api.get(f"/v1/webhooks/deliveries/{first['id']}").json()["event"]["id"] == first["event_id"]
    receivers.close()


def test_a_receiver_answering_500_twice_gets_the_event_on_the_third_attempt(
    server: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = server
    endpoint = add_endpoint(api, "http://127.0.0.1:9/not-yet", ["label.created"])
    receivers = run_receiver(endpoint["secret"], monkeypatch, failures=2)
    receiver = next(receivers)
    api.patch(f"/v1/webhooks/{endpoint['id']}", json={"url": receiver.url})
    assert api.post("/v1/score", json=tx("wh-2", "C-2")).status_code == 200
    label = {
        "transaction_id": "wh-2",
        "is_fraud": True,
        "label_time": (NOW + timedelta(minutes=1)).isoformat(),
    }
    assert api.post("/v1/labels", json=label).status_code == 200
    wait_for(lambda: receiver.handled, "the label's event", WAIT)
    assert receiver.answers == [500, 500, 204]
    (delivery,) = deliveries(api, endpoint_id=endpoint["id"])
    assert (delivery["status"], delivery["attempts"], delivery["event_type"]) == (
        "delivered",
        3,
        "label.created",
    )
    assert [a["status_code"] for a in delivery["log"]] == [500, 500, 204]
    assert [a["attempt"] for a in delivery["log"]] == [1, 2, 3]
    assert delivery["log"][0]["error"].startswith("HTTP 500")
    assert {h["Fraudstream-Event-Id"] for h, _ in receiver.requests} == {receiver.handled[0]["id"]}
    assert deliveries(api, status="failed") == [] and deliveries(api, type="decision.created") == []
    receivers.close()
