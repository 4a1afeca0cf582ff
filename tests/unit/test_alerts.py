"""Alerts without servers: detection, de-duplication, bursts, the dispatcher's retries and restarts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fraudstream.alerts import (
    AlertConfigError,
    AlertDetector,
    AlertDispatcher,
    Channel,
    DeliveryError,
    Retry,
    alerting_rules,
    channels_from_settings,
)
from fraudstream.alerts.email import EmailChannel
from fraudstream.alerts.webhook import webhook_body
from fraudstream.brokers.memory import MemoryBroker
from fraudstream.config import Settings
from fraudstream.events import Transaction
from fraudstream.events.alert import Alert
from fraudstream.events.decision import DecisionColumns, DecisionRecord, may_alert
from fraudstream.pipeline.decider import Decider, StoreLedger
from fraudstream.rules import parse_rules
from fraudstream.storage import Store, open_store
from fraudstream.worker.worker import Worker
from tests.unit.fakes import BlockingScorer

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def decision(
    i: int, verdict: str = "FLAG", customer: str = "c1", minutes: float = 0.0, rules: tuple[str, ...] = ()
) -> DecisionRecord:
    reasons: list[dict[str, Any]] = [
        {"code": "customer_amount_ratio_30d", "value": 12.5, "contribution": 0.4, "source": "xgboost"}
    ]
    reasons += [{"code": r, "reason": f"{r} reason", "source": "rules"} for r in rules]
    return DecisionRecord(
        transaction_id=f"t{i:04d}",
        customer_id=customer,
        timestamp=T0 + timedelta(minutes=minutes),
        amount=100.0 + i,
        decision=verdict,
        probability=0.93,
        reasons=reasons,
        rules=list(rules),
        model_version="m1",
        features={"amount": 1.0},
        latency_ms={"total": 1.0},
    )


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/alerts.db") as s:
        s.migrate()
        yield s


def detector(**kw: Any) -> AlertDetector:
    values: dict[str, Any] = {"flag_burst": 3, "flag_burst_seconds": 600, "dedup_seconds": 600}
    return AlertDetector(**(values | kw))


# -- detection -----------------------------------------------------------------------------------


def test_block_alert_says_decision_probability_amount_and_reasons() -> None:
    [alert] = detector().detect([decision(1, "BLOCK", rules=("card_testing",)), decision(2, "APPROVE")])
    assert (alert.kind, alert.entity, alert.transaction_id) == ("block", "customer:c1", "t0001")
    rule = "rule card_testing: card_testing reason"
    for text in ("BLOCK", "t0001", "101.00", "0.93", rule, "customer_amount"):
        assert text in alert.message
    assert alert.details["amount"] == 101.0 and alert.details["decision"] == "BLOCK"


def test_only_an_approve_no_rule_fired_on_cannot_alert() -> None:
    assert not may_alert("APPROVE", [])
    assert may_alert("APPROVE", ["allow_list:customer_id"])
    assert may_alert("FLAG", []) and may_alert("BLOCK", [])


def test_only_alerting_rules_and_deny_list_hits_alert() -> None:
    rules = parse_rules(
        {
            "rules": [
                {"name": "loud", "when": "amount > 1", "action": "FLAG", "reason": "r", "alert": True},
                {"name": "quiet", "when": "amount > 1", "action": "FLAG", "reason": "r"},
            ]
        },
        known_names=["amount"],
    )
    assert alerting_rules(rules) == {"loud"}
    found = detector(alert_rules=lambda: alerting_rules(rules)).detect(
        [
            decision(1, "FLAG", "a", rules=("quiet",)),
            decision(2, "FLAG", "b", rules=("quiet", "loud")),
            decision(3, "APPROVE", "c", rules=("deny_list:device_id",)),
        ]
    )
    assert [(a.kind, a.entity) for a in found] == [("rule", "customer:b"), ("rule", "customer:c")]
    assert found[0].message.startswith("Alerting rule loud:")


def test_burst_of_flags_by_event_time_across_batches() -> None:
    d = detector()
    assert d.detect([decision(1, minutes=0), decision(2, minutes=5)]) == []
    # a FLAG for another customer and one far outside the window do not count
    assert d.detect([decision(3, customer="c2", minutes=6), decision(4, minutes=30)]) == []
    assert d.detect([decision(5, minutes=32)]) == []  # two within the window so far
    [alert] = d.detect([decision(6, minutes=35)])
    assert (alert.kind, alert.entity, alert.transaction_id) == ("flag_burst", "customer:c1", "t0006")
    assert alert.details["count"] == 3 and alert.details["transactions"] == ["t0004", "t0005", "t0006"]


def test_burst_needs_flag_burst_flags_within_the_window() -> None:
    d = detector(flag_burst=3, flag_burst_seconds=600)
    assert d.detect([decision(1, minutes=0), decision(2, minutes=6), decision(3, minutes=12)]) == []
    [alert] = d.detect([decision(4, minutes=13), decision(5, minutes=14)])
    assert alert.details["transactions"] == ["t0002", "t0003", "t0004"]  # 6, 12, 13 min; not 0
    assert "3 FLAGs for customer c1" in alert.message


def test_burst_counts_flags_other_processes_stored() -> None:
    asked: list[tuple[list[str], datetime, datetime]] = []

    def history(customers: Any, since: datetime, until: datetime) -> list[tuple[str, str, datetime]]:
        asked.append((list(customers), since, until))
        return [
            ("c1", "elsewhere1", T0 - timedelta(minutes=2)),
            ("c1", "elsewhere2", T0 - timedelta(minutes=1)),
        ]

    [alert] = detector(history=history).detect([decision(1, minutes=0)])
    assert alert.kind == "flag_burst" and alert.details["count"] == 3
    assert asked == [(["c1"], T0 - timedelta(minutes=10), T0)]


def test_dedup_per_entity_and_kind_within_the_window() -> None:
    clock = Clock()
    d = detector(clock=clock, dedup_seconds=600)
    first = d.detect([decision(1, "BLOCK"), decision(2, "BLOCK"), decision(3, "BLOCK", customer="c2")])
    assert [a.transaction_id for a in first] == ["t0001", "t0003"]
    clock.now += timedelta(minutes=5)
    assert d.detect([decision(4, "BLOCK")]) == []
    assert [a.kind for a in d.detect([decision(5, "FLAG", rules=("deny_list:ip_address",))])] == ["rule"]
    clock.now += timedelta(minutes=6)
    assert [a.transaction_id for a in d.detect([decision(6, "BLOCK")])] == ["t0006"]


def test_dedup_holds_when_the_clock_steps_back() -> None:
    """Expired entries are dropped from the front of the memory, which is time order only while the
    clock moves forward; a step back must neither hide an alert nor repeat one."""
    clock = Clock()
    d = detector(clock=clock, dedup_seconds=600)
    assert len(d.detect([decision(1, "BLOCK")])) == 1
    clock.now -= timedelta(minutes=20)
    assert len(d.detect([decision(2, "BLOCK", customer="c2")])) == 1
    clock.now += timedelta(minutes=11)  # now T-9 min: c1's alert (at T) counts, c2's (at T-20) has expired
    assert [
        a.transaction_id for a in d.detect([decision(3, "BLOCK"), decision(4, "BLOCK", customer="c2")])
    ] == ["t0004"]


def test_dedup_sees_alerts_stored_by_other_processes(store: Store) -> None:
    store.alerts.save([Alert("block", "customer:c1", "old", "earlier", created_at=datetime.now(UTC))])
    d = detector(recent=store.alerts.recent_keys)
    assert [a.entity for a in d.detect([decision(1, "BLOCK"), decision(2, "BLOCK", "c2")])] == ["customer:c2"]


# -- the dispatcher --------------------------------------------------------------------------------


class FakeChannel(Channel):
    """Records what it was sent; fails its first ``failures`` sends (forever with ``-1``)."""

    def __init__(self, name: str, failures: int = 0, gate: threading.Event | None = None) -> None:
        self.name, self.failures, self.gate = name, failures, gate
        self.sent: list[list[str | None]] = []
        self.calls = 0

    def send(self, alerts: list[Alert]) -> None:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(10)
        if self.failures < 0 or self.calls <= self.failures:
            raise DeliveryError(f"{self.name} down (call {self.calls})")
        self.sent.append([a.transaction_id for a in alerts])


class Sleeps:
    """An injected sleep that records the waits and returns at once (``True`` if stopping)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, stopping: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        return stopping.is_set()


def dispatcher(
    store: Store, *channels: Channel, attempts: int = 4, **kw: Any
) -> tuple[AlertDispatcher, Sleeps]:
    sleeps = Sleeps()
    retry = Retry(attempts=attempts, backoff=1.5, max_backoff=5.0)
    return AlertDispatcher(store, detector(), channels, retry=retry, sleep=sleeps, **kw).start(), sleeps


def deliveries(store: Store) -> list[tuple[int, str, int, bool]]:
    from sqlalchemy import select

    from fraudstream.storage.tables import alert_deliveries as ad

    with store.db.engine.connect() as conn:
        rows = conn.execute(select(ad.c.alert_id, ad.c.channel, ad.c.attempt, ad.c.ok).order_by(ad.c.id))
        return [(int(a), str(c), int(n), bool(ok)) for a, c, n, ok in rows]


def test_alerts_are_stored_then_delivered_and_recorded(store: Store) -> None:
    hook, mail = FakeChannel("webhook"), FakeChannel("email")
    d, _ = dispatcher(store, hook, mail)
    d.submit([decision(1, "BLOCK"), decision(2, "APPROVE"), decision(3, "BLOCK", customer="c2")])
    assert d.flush(10)
    d.close()
    assert hook.sent == mail.sent == [["t0001", "t0003"]]
    feed = store.alerts.feed(10)
    assert {(a["transaction_id"], a["status"], a["attempts"]) for a in feed} == {
        ("t0001", "delivered", 2),
        ("t0003", "delivered", 2),
    }
    assert "BLOCK of transaction t0001" in {a["transaction_id"]: a for a in feed}["t0001"]["message"]


def test_retries_with_exponential_backoff_until_delivered(store: Store) -> None:
    hook = FakeChannel("webhook", failures=2)
    d, sleeps = dispatcher(store, hook, attempts=4)
    d.submit([decision(1, "BLOCK")])
    assert d.flush(10)
    d.close()
    assert hook.sent == [["t0001"]]
    assert sleeps.waits == [1.5, 3.0]
    [alert] = store.alerts.feed()
    assert [(c, n, ok) for _, c, n, ok in deliveries(store)] == [
        ("webhook", 1, False),
        ("webhook", 2, False),
        ("webhook", 3, True),
    ]
    assert alert["status"] == "delivered" and alert["attempts"] == 3
    assert Retry(backoff=2, max_backoff=10).wait(1) == 2 and Retry(backoff=2, max_backoff=10).wait(5) == 10


def test_a_failing_channel_gives_up_without_holding_back_the_other(store: Store) -> None:
    gate = threading.Event()
    broken, mail = FakeChannel("webhook", failures=-1, gate=gate), FakeChannel("email")
    d, sleeps = dispatcher(store, broken, mail, attempts=3)
    d.submit([decision(1, "BLOCK")])  # returns at once although the webhook hangs
    deadline = threading.Event()
    for _ in range(500):
        if mail.sent:
            break
        deadline.wait(0.02)
    assert mail.sent == [["t0001"]] and broken.sent == []  # e-mail delivered while the webhook hangs
    assert store.alerts.feed()[0]["status"] == "pending"
    gate.set()
    assert d.flush(10)
    d.close()
    [alert] = store.alerts.feed()
    assert alert["status"] == "failed" and alert["attempts"] == 4
    assert alert["last_error"].startswith("webhook: DeliveryError: webhook down")
    assert sleeps.waits == [1.5, 3.0]


def test_without_channels_alerts_are_stored_for_the_dashboard(store: Store) -> None:
    d, _ = dispatcher(store)
    d.submit([decision(1, "BLOCK")])
    assert d.flush(10)
    d.close()
    assert [(a["status"], a["attempts"]) for a in store.alerts.feed()] == [("stored", 0)]
    assert store.alerts.pending() == []


def test_restart_delivers_pending_alerts_only_where_missing(store: Store) -> None:
    broken, mail = FakeChannel("webhook", failures=-1), FakeChannel("email")
    sleeps_stop = Sleeps()
    first = AlertDispatcher(
        store,
        detector(),
        [broken, mail],
        retry=Retry(attempts=5),
        sleep=lambda e, s: sleeps_stop(e, s) or True,
    ).start()  # the injected sleep reports "stopping" after the first failure: the process dies
    first.submit([decision(1, "BLOCK")])
    assert first.flush(10)
    first.close()
    assert mail.sent == [["t0001"]]
    [(_, done)] = store.alerts.pending()
    assert done == {"email"}

    fixed, mail2 = FakeChannel("webhook"), FakeChannel("email")
    second, _ = dispatcher(store, fixed, mail2)
    assert second.flush(10)
    second.close()
    assert fixed.sent == [["t0001"]] and mail2.sent == []
    assert store.alerts.feed()[0]["status"] == "delivered"
    assert store.alerts.pending() == []


def test_a_detection_error_is_logged_and_later_batches_still_alert(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    d, _ = dispatcher(store)
    d.submit([SimpleNamespace(decision="BLOCK")])  # type: ignore[list-item]
    d.submit([decision(2, "BLOCK")])
    assert d.flush(10)
    d.submit([decision(3, "BLOCK", customer="c3")])
    assert d.flush(10)
    d.close()
    assert "detection or storage failed" in caplog.text
    assert "t0003" in {a["transaction_id"] for a in store.alerts.feed()}


# -- channels' configuration and content -------------------------------------------------------------


def test_channels_from_settings_and_clear_configuration_errors() -> None:
    assert channels_from_settings(Settings(alert_webhook_url=None, smtp_url=None)) == []
    names = [
        c.name
        for c in channels_from_settings(
            Settings(
                alert_webhook_url="http://127.0.0.1:9/hook", smtp_url="smtp://h:25", alert_email_to="a@x"
            )
        )
    ]
    assert names == ["webhook", "email"]
    with pytest.raises(AlertConfigError, match="names no recipients"):
        channels_from_settings(Settings(smtp_url="smtp://h:25", alert_email_to=""))
    with pytest.raises(AlertConfigError, match="smtp://user:password@host:port"):
        EmailChannel("mail.example.com", "f@x", ["a@x"])
    with pytest.raises(AlertConfigError, match="http:// or https://"):
        channels_from_settings(Settings(alert_webhook_url="hooks.example.com/x"))


def test_webhook_body_is_slack_compatible() -> None:
    [alert] = detector().detect([decision(1, "BLOCK")])
    alert.id = 7
    body = webhook_body([alert])
    assert body["text"].startswith("fraudstream: block for customer:c1")
    assert body["blocks"][0]["type"] == "header"
    section = body["blocks"][1]
    assert "t0001" in section["text"]["text"]
    assert {"type": "mrkdwn", "text": "*alert id*\n7"} in section["fields"]


# -- the worker's hook ---------------------------------------------------------------------------------


def test_the_decider_hands_only_newly_stored_decisions_to_on_decided(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[list[str]] = []

    def hook(decided: DecisionColumns) -> None:
        seen.append(decided.transaction_id.tolist())
        raise RuntimeError("the hook broke")

    broker = MemoryBroker()
    decider = Decider(BlockingScorer(), StoreLedger(store), on_decided=hook)  # type: ignore[arg-type]
    worker = Worker(broker, decider, store, max_wait=0.0)
    txs = [Transaction(transaction_id=f"w{i}", timestamp=T0, customer_id="c", amount=5.0) for i in range(3)]
    broker.publish("transactions", [(t.customer_id, t.model_dump(mode="json")) for t in txs])
    worker.run(burst=True)
    store.decisions.save([decision(9, "BLOCK")])  # decided elsewhere: not handed over again below
    broker.publish("transactions", [("c", txs[0].model_dump(mode="json"))])
    worker.run(burst=True)
    assert seen == [["w0", "w1", "w2"]]
    assert worker.stats.decided == 3 and worker.stats.dead == 0
    assert "handing 3 decisions to the alerts failed" in caplog.text
