"""Alerts delivered for real: a local SMTP server (aiosmtpd) and a local HTTP receiver on loopback ports.

Covers delivered content, retries after 500s with backoff, attempts recorded, a dead channel that
holds back neither the other channel nor scoring, resuming pending alerts after a restart, bursts and
de-duplication across two processes sharing a database, the API end to end, and PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from fraudstream.alerts import AlertDispatcher, Retry, open_dispatcher
from fraudstream.config import Settings
from fraudstream.events import Label
from fraudstream.events.decision import DecisionRecord
from fraudstream.storage import Store, open_store
from fraudstream.storage.tables import alert_deliveries
from tests.waiting import wait_for

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
FAST = Retry(attempts=4, backoff=0.05, max_backoff=0.2)


def decision(i: int, verdict: str = "BLOCK", customer: str = "c1", minutes: float = 0.0) -> DecisionRecord:
    return DecisionRecord(
        transaction_id=f"t{i:04d}",
        customer_id=customer,
        timestamp=T0 + timedelta(minutes=minutes),
        amount=250.0 + i,
        decision=verdict,
        probability=0.97,
        reasons=[{"code": "card_testing", "reason": "burst of tiny payments", "source": "rules"}],
        rules=["card_testing"],
        model_version="m1",
        features={"amount": 250.0 + i},
        latency_ms={"total": 1.0},
    )


# -- the receivers -----------------------------------------------------------------------------------


class Inbox:
    """The aiosmtpd handler: keeps every accepted message."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[str, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{controller.port}", inbox
    finally:
        controller.stop()


class Receiver:
    """What the HTTP receiver does: fail the first ``fail_first`` posts with 500 (all with ``-1``),
    optionally hang each post until ``release`` is set; keeps the bodies it accepted."""

    def __init__(self) -> None:
        self.fail_first = 0
        self.hang: threading.Event | None = None
        self.posts = 0
        self.accepted: list[dict[str, Any]] = []
        self.lock = threading.Lock()


@pytest.fixture
def webhook() -> Iterator[tuple[str, Receiver]]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if receiver.hang is not None:
                receiver.hang.wait(10)
            with receiver.lock:
                receiver.posts += 1
                fail = receiver.fail_first < 0 or receiver.posts <= receiver.fail_first
                if not fail:
                    receiver.accepted.append(body)
            self.send_response(500 if fail else 200)
            self.end_headers()
            self.wfile.write(b"boom" if fail else b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", receiver
    finally:
        if receiver.hang is not None:
            receiver.hang.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/alerts.db") as s:
        s.migrate()
        yield s


def settings(webhook_url: str | None = None, smtp_url: str | None = None, **kw: Any) -> Settings:
    return Settings(
        alert_webhook_url=webhook_url,
        smtp_url=smtp_url,
        alert_email_from="fraud@example.com",
        alert_email_to="analyst@example.com, lead@example.com",
        **kw,
    )


def attempts(store: Store) -> list[tuple[str, int, bool, str | None, datetime]]:
    d = alert_deliveries
    query = select(d.c.channel, d.c.attempt, d.c.ok, d.c.error, d.c.attempted_at).order_by(d.c.id)
    with store.db.engine.connect() as conn:
        return [(str(c), int(n), bool(ok), e, at) for c, n, ok, e, at in conn.execute(query)]


# -- delivery ------------------------------------------------------------------------------------------


def test_webhook_and_email_deliver_the_alert(
    store: Store, webhook: tuple[str, Receiver], smtp: tuple[str, Inbox]
) -> None:
    (hook_url, receiver), (smtp_url, inbox) = webhook, smtp
    dispatcher = open_dispatcher(settings(hook_url, smtp_url), store, retry=FAST)
    dispatcher.submit([decision(1), decision(2, "APPROVE")])
    assert dispatcher.flush(15)
    dispatcher.close()

    [body] = receiver.accepted
    assert "BLOCK of transaction t0001" in body["text"] and "card_testing" in body["text"]
    assert body["blocks"][0]["text"]["text"] == "fraudstream: block for customer:c1"
    [(sender, recipients, mail)] = inbox.messages
    assert sender == "fraud@example.com"
    assert recipients == ["analyst@example.com", "lead@example.com"]
    assert mail["Subject"] == "fraudstream: block for customer:c1"
    text = mail.get_payload(decode=True).decode()
    assert "amount 251.00, fraud probability 0.97" in text and "transaction: t0001" in text
    [alert] = store.alerts.feed()
    assert (alert["status"], alert["attempts"], alert["last_error"]) == ("delivered", 2, None)


def test_500s_are_retried_with_backoff_and_every_attempt_recorded(
    store: Store, webhook: tuple[str, Receiver]
) -> None:
    url, receiver = webhook
    receiver.fail_first = 2
    dispatcher = open_dispatcher(settings(url), store, retry=FAST)
    dispatcher.submit([decision(1)])
    assert dispatcher.flush(15)
    dispatcher.close()

    rows = attempts(store)
    assert [(c, n, ok) for c, n, ok, _, _ in rows] == [
        ("webhook", 1, False),
        ("webhook", 2, False),
        ("webhook", 3, True),
    ]
    assert rows[0][3] == "DeliveryError: webhook answered HTTP 500: boom"
    gaps = [(b[4] - a[4]).total_seconds() for a, b in itertools.pairwise(rows)]
    assert gaps[0] >= FAST.wait(1) and gaps[1] >= FAST.wait(2)  # waited at least the backoff, doubling
    assert len(receiver.accepted) == 1
    assert store.alerts.feed()[0]["status"] == "delivered"


def test_a_dead_webhook_holds_back_neither_email_nor_scoring(
    store: Store, webhook: tuple[str, Receiver], smtp: tuple[str, Inbox]
) -> None:
    (url, receiver), (smtp_url, inbox) = webhook, smtp
    receiver.fail_first, receiver.hang = -1, threading.Event()
    dispatcher = open_dispatcher(settings(url, smtp_url), store, retry=FAST)
    for i in range(3):  # the scoring side keeps handing over batches while the webhook hangs
        dispatcher.submit([decision(i, customer=f"c{i}")])
    wait_for(
        lambda: len(inbox.messages) >= 1 and len(store.alerts.feed()) == 3, "e-mail while the webhook hangs"
    )
    assert receiver.posts == 0  # still hanging on the first post
    receiver.hang.set()
    assert dispatcher.flush(15)
    dispatcher.close()

    delivered_ids = {
        line for _, _, m in inbox.messages for line in m.get_payload(decode=True).decode().split()
    }
    assert {"t0000", "t0001", "t0002"} <= delivered_ids
    feed = store.alerts.feed()
    assert {a["status"] for a in feed} == {"failed"}
    assert all(a["last_error"].startswith("webhook: DeliveryError: webhook answered HTTP 500") for a in feed)
    assert {(c, ok) for c, _, ok, _, _ in attempts(store)} == {("webhook", False), ("email", True)}


def test_restart_resumes_pending_alerts_without_repeating_delivered_ones(
    store: Store, webhook: tuple[str, Receiver], smtp: tuple[str, Inbox]
) -> None:
    (url, receiver), (smtp_url, inbox) = webhook, smtp
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: connection refused
    first = open_dispatcher(settings(down, smtp_url), store, retry=Retry(attempts=5, backoff=60))
    first.submit([decision(1)])
    wait_for(lambda: len(attempts(store)) >= 2, "the e-mail and the first webhook attempt")
    first.close(timeout=0.5)  # the process stops while the webhook waits for its retry
    [alert] = store.alerts.feed()
    assert alert["status"] == "pending" and len(inbox.messages) == 1
    assert "ConnectError" in alert["last_error"]

    second = open_dispatcher(settings(url, smtp_url), store, retry=FAST)
    assert second.flush(15)
    second.close()
    assert len(receiver.accepted) == 1 and "t0001" in receiver.accepted[0]["text"]
    assert len(inbox.messages) == 1  # e-mail had it already: not sent twice
    assert store.alerts.feed()[0]["status"] == "delivered"


def test_bursts_and_dedup_hold_across_processes_sharing_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    with open_store(url) as a_store, open_store(url) as b_store:
        a_store.migrate()
        config = settings(flag_burst=3, flag_burst_seconds=600, alert_dedup_seconds=600)
        a: AlertDispatcher = open_dispatcher(config, a_store)
        b: AlertDispatcher = open_dispatcher(config, b_store)
        try:
            for dispatcher, store, batch in (
                (a, a_store, [decision(1, "FLAG", minutes=0), decision(2, "FLAG", minutes=4)]),
                (b, b_store, [decision(3, "FLAG", minutes=8)]),  # the third FLAG in 10 min, elsewhere
                (a, a_store, [decision(4, "BLOCK", minutes=9)]),
                (b, b_store, [decision(5, "BLOCK", minutes=11)]),  # a second BLOCK alert: de-duplicated
            ):
                store.decisions.save(batch)
                dispatcher.submit(batch)
                assert dispatcher.flush(10)
        finally:
            a.close()
            b.close()
        feed = a_store.alerts.feed()
    assert sorted((x["kind"], x["transaction_id"], x["status"]) for x in feed) == [
        ("block", "t0004", "stored"),
        ("flag_burst", "t0003", "stored"),
    ]
    burst = next(x for x in feed if x["kind"] == "flag_burst")
    assert burst["details"]["transactions"] == ["t0001", "t0002", "t0003"]


# -- end to end through the API ------------------------------------------------------------------------


@pytest.mark.slow
def test_score_endpoint_raises_and_delivers_alerts(
    tmp_path: Path, bundle_path: Path, webhook: tuple[str, Receiver], smtp: tuple[str, Inbox]
) -> None:
    from fastapi.testclient import TestClient

    from fraudstream.api import create_app

    (url, receiver), (smtp_url, inbox) = webhook, smtp
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\ndeny:\n  customer_id: [mallory]\n")
    config = settings(
        url,
        smtp_url,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path}/api.db",
        model_path=bundle_path,
        rules_path=rules,
        api_keys="",
    )
    body = {"transaction_id": "api-1", "timestamp": datetime.now(UTC).isoformat(), "customer_id": "mallory",
            "amount": 99.0}  # fmt: skip
    with TestClient(create_app(config)) as client:
        answer = client.post("/v1/score", json=body)
        assert answer.status_code == 200 and answer.json()["decision"] == "BLOCK"
        wait_for(lambda: bool(receiver.accepted) and bool(inbox.messages), "webhook and e-mail")
        wait_for(lambda: client.get("/v1/alerts").json()[0]["status"] == "delivered", "status delivered")
        [alert] = client.get("/v1/alerts", params={"limit": 5}).json()
        assert set(alert) >= {
            "id",
            "created_at",
            "kind",
            "entity",
            "transaction_id",
            "message",
            "status",
            "attempts",
        }
        assert (alert["kind"], alert["entity"], alert["transaction_id"], alert["attempts"]) == (
            "block",
            "customer:mallory",
            "api-1",
            2,
        )
        assert "deny_list:customer_id" in receiver.accepted[0]["text"]
        report = client.get("/v1/reports/daily", params={"date": datetime.now(UTC).date().isoformat()})
        assert report.json()["by_decision"]["BLOCK"] == {"count": 1, "amount": 99.0}


# -- PostgreSQL ----------------------------------------------------------------------------------------


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    import psycopg

    name = f"fs_alerts_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base = postgres_url.rsplit("/", 1)[0]
    try:
        with open_store(f"{base}/{name}") as s:
            s.migrate()
            yield s
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.postgres
def test_alert_store_and_daily_report_on_postgres(pg_store: Store) -> None:
    from fraudstream.reports import daily_report

    records = [decision(1), decision(2, "FLAG"), decision(3, "APPROVE"), decision(4, "FLAG", customer="c2")]
    for r in records:
        r.decided_at = T0
    pg_store.decisions.save(records)
    pg_store.labels.add(
        [Label(transaction_id=t, is_fraud=f, label_time=T0) for t, f in (("t0001", True), ("t0002", False),
                                                                          ("t0003", True))]
    )  # fmt: skip
    report = daily_report(pg_store, date(2024, 3, 1)).to_dict()
    assert report["by_decision"]["FLAG"] == {"count": 2, "amount": 506.0}
    assert report["top_rules"][0] == {"name": "card_testing", "count": 4, "amount": 1010.0}
    assert report["top_reasons"] == []  # only rule reasons in these records
    labels = report["labels"]
    assert (
        labels["caught_fraud"]["count"],
        labels["missed_fraud"]["amount"],
        labels["false_positives"]["count"],
    ) == (
        1,
        253.0,
        1,
    )
    assert sorted(pg_store.alerts.flag_history(["c1", "c2"], T0 - timedelta(hours=1), T0)) == [
        ("c1", "t0002", T0),
        ("c2", "t0004", T0),
    ]
    config = settings()
    dispatcher = open_dispatcher(config, pg_store)
    dispatcher.submit(records)
    assert dispatcher.flush(10)
    dispatcher.close()
    assert {(a["kind"], a["entity"]) for a in pg_store.alerts.feed()} == {("block", "customer:c1")}
    assert pg_store.alerts.recent_keys({("block", "customer:c1"), ("block", "customer:c2")}, T0) == {
        ("block", "customer:c1")
    }
