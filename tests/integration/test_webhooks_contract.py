"""The event webhooks' storage contract on SQLite and PostgreSQL alike: events stored with the fact
they report, once, only for the endpoints that subscribe; decisions followed by a cursor that misses
none committed late; deliveries claimed by one sender at a time, settled with every attempt logged,
replayed, and listed with filters."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fraudstream.events import Label
from fraudstream.events.decision import DecisionRecord
from fraudstream.events.webhook import (
    CASE_OPENED,
    CASE_UPDATED,
    CASE_VERDICT,
    DECISION_CREATED,
    LABEL_CREATED,
    WebhookEvent,
)
from fraudstream.storage import Store
from fraudstream.storage.webhooks import DELIVERED, FAILED, PENDING, Outcome, WebhookError
from tests.integration.test_storage_contract import postgres_database, record, store, tx

__all__ = ["postgres_database", "store"]  # the fixtures, over both databases

URL = "https://hooks.example.com/fraud"


def now() -> datetime:
    return datetime.now(UTC)


def decided(i: int, decision: str = "FLAG", **kw: Any) -> DecisionRecord:
    """A decision made now (after any endpoint of the test was added), ``i`` milliseconds on."""
    return record(i, decision=decision, **{"decided_at": now() + timedelta(milliseconds=i), **kw})


def save(store: Store, *records: DecisionRecord) -> None:
    txs = [tx(int(r.transaction_id[1:]), customer=r.customer_id) for r in records]
    store.decisions.save(list(records), transactions=txs)


def events(store: Store, **filters: Any) -> list[dict[str, Any]]:
    """The events of the stored deliveries, oldest first, parsed."""
    found = store.webhooks.deliveries(limit=500, **filters)
    return [json.loads(json.dumps(store.webhooks.delivery(d["id"])["event"])) for d in reversed(found)]


def test_nothing_is_stored_for_an_event_no_endpoint_wants(store: Store) -> None:
    assert store.webhooks.emit([WebhookEvent(LABEL_CREATED, "k", {"x": 1})]) == 0
    store.webhooks.add_endpoint(URL, [CASE_OPENED], "admin")
    assert store.webhooks.emit([WebhookEvent(LABEL_CREATED, "k", {"x": 1})]) == 0
    assert store.webhooks.deliveries() == []


def test_an_event_goes_once_to_each_subscribed_endpoint_and_is_stored_once(store: Store) -> None:
    a = store.webhooks.add_endpoint(URL, [LABEL_CREATED], "admin")
    b = store.webhooks.add_endpoint(URL + "/b", ["*"], "admin", description="all of them")
    store.webhooks.add_endpoint(URL + "/off", ["*"], "admin", enabled=False)
    event = WebhookEvent(
        LABEL_CREATED, "t1", {"transaction_id": "t1"}, occurred=datetime(2024, 3, 1, tzinfo=UTC)
    )
    assert store.webhooks.emit([event, event]) == 2
    assert store.webhooks.emit([event]) == 0  # the same fact again: stored already
    found = store.webhooks.deliveries()
    assert sorted(d["endpoint_id"] for d in found) == [a.id, b.id]
    assert {d["event_id"] for d in found} == {event.id} and {d["status"] for d in found} == {PENDING}
    body = store.webhooks.delivery(found[0]["id"])["event"]
    assert (
        body["id"] == event.id and body["type"] == LABEL_CREATED and body["data"] == {"transaction_id": "t1"}
    )
    assert body["created"] == "2024-03-01T00:00:00Z" and body["emitted"].endswith("Z")


def test_labels_emit_label_created_in_their_transaction_first_and_changed(store: Store) -> None:
    store.webhooks.add_endpoint(URL, [LABEL_CREATED], "admin")
    save(store, record(1), record(2))
    at = datetime(2024, 3, 2, tzinfo=UTC)
    store.labels.apply([Label(transaction_id="t0001", is_fraud=True, label_time=at)])
    store.labels.apply([Label(transaction_id="t0001", is_fraud=True, label_time=at)])  # ignored: no event
    store.labels.apply([Label(transaction_id="t0001", is_fraud=False, label_time=at + timedelta(days=1))])
    sent = events(store)
    assert [(e["data"]["transaction_id"], e["data"]["is_fraud"]) for e in sent] == [
        ("t0001", True),
        ("t0001", False),
    ]
    assert sent[0]["data"]["supersedes"] is None and sent[0]["created"] == "2024-03-02T00:00:00Z"
    assert sent[1]["data"]["supersedes"] == {"is_fraud": True, "label_time": "2024-03-02T00:00:00Z"}
    assert len({e["id"] for e in sent}) == 2


def test_stored_decisions_become_events_once_even_when_committed_behind_the_cursor(store: Store) -> None:
    endpoint = store.webhooks.add_endpoint(URL, [DECISION_CREATED], "admin")
    early = now()
    save(store, decided(1), decided(2, "BLOCK"), decided(3, "APPROVE"))
    assert store.webhooks.follow_decisions() == 2  # FLAG and BLOCK by default
    assert store.webhooks.follow_decisions() == 0
    save(store, decided(10))
    assert store.webhooks.follow_decisions() == 1
    save(store, decided(5, decided_at=early))  # stamped before t0010, stored after it was followed
    assert store.webhooks.follow_decisions() == 1
    sent = events(store, endpoint_id=endpoint.id)
    assert [e["data"]["transaction_id"] for e in sent] == ["t0001", "t0002", "t0010", "t0005"]
    first = sent[0]
    assert (
        first["type"] == DECISION_CREATED and first["created"] == "2024-03-01T12:01:00Z"
    )  # the transaction's time
    assert first["data"]["decision"] == "FLAG" and first["data"]["probability"] == 0.01
    assert first["data"]["reasons"] == [{"feature": "amount", "contribution": 0.2}]
    assert store.webhooks.follow_decisions(None) == 1  # every outcome: the APPROVE too
    assert store.webhooks.follow_decisions(None) == 0


def test_decisions_made_before_an_endpoint_subscribed_are_not_sent_to_it(store: Store) -> None:
    save(store, decided(1, decided_at=now() - timedelta(minutes=1)))
    paused = store.webhooks.add_endpoint(URL, [DECISION_CREATED], "admin", enabled=False)
    assert store.webhooks.follow_decisions() == 0
    save(store, decided(2, decided_at=now() - timedelta(milliseconds=1)))  # while it is paused
    assert store.webhooks.follow_decisions() == 0
    resumed = store.webhooks.change_endpoint(paused.id, "admin", enabled=True)
    assert resumed.subscribed_at > paused.subscribed_at
    save(store, decided(3, decided_at=now() + timedelta(seconds=1)))
    assert store.webhooks.follow_decisions() == 1
    assert [e["data"]["transaction_id"] for e in events(store)] == ["t0003"]


def test_cases_emit_opened_updated_and_verdict_with_the_labels_of_the_verdict(store: Store) -> None:
    store.webhooks.add_endpoint(URL, [CASE_OPENED, CASE_UPDATED, CASE_VERDICT, LABEL_CREATED], "admin")
    save(store, decided(1, customer_id="a"), decided(2, customer_id="a", decision="BLOCK"))
    store.cases.sync()
    (case,) = store.cases.list()
    store.cases.assign(case.id, "ana", "ana", claim=True)
    store.cases.assign(case.id, "bo", "lead")
    store.cases.verdict([case.id], "fraud", "bo", note="confirmed")
    sent = events(store)
    assert [e["type"] for e in sent] == [
        CASE_OPENED, CASE_UPDATED, CASE_UPDATED, LABEL_CREATED, LABEL_CREATED, CASE_VERDICT,
    ]  # fmt: skip
    opened, claimed, assigned, *_, verdict = sent
    assert opened["data"]["id"] == case.id and opened["data"]["status"] == "open"
    assert opened["data"]["transactions"] == 2
    assert claimed["data"]["change"] == "claim" and claimed["data"]["assignee"] == "ana"
    assert claimed["data"]["previous"] == {"status": "open", "assignee": None}
    assert assigned["data"]["actor"] == "lead" and assigned["data"]["previous"]["assignee"] == "ana"
    assert verdict["data"]["verdict"] == "fraud" and verdict["data"]["status"] == "closed"
    assert (
        sorted(verdict["data"]["transaction_ids"]) == ["t0001", "t0002"]
        and verdict["data"]["note"] == "confirmed"
    )


def test_claims_lease_settle_and_log_every_attempt(store: Store) -> None:
    endpoint = store.webhooks.add_endpoint(URL, ["*"], "admin")
    store.webhooks.emit([WebhookEvent(LABEL_CREATED, str(i), {"n": i}) for i in range(3)])
    claimed = store.webhooks.claim("a", 2, lease_seconds=60)
    assert len(claimed) == 2 and claimed[0].url == URL and claimed[0].secret == endpoint.secret
    assert claimed[0].body.startswith(b'{"id":"evt_') and claimed[0].attempts == 0
    assert [c.id for c in store.webhooks.claim("b", 10, lease_seconds=60)] == [claimed[-1].id + 1]
    assert store.webhooks.claim("c", 10, lease_seconds=60) == []  # all held
    later = now() + timedelta(seconds=120)
    assert len(store.webhooks.claim("c", 10, lease_seconds=60, now=later)) == 3  # leases ran out
    ok, retry = claimed
    t = now()
    store.webhooks.settle(
        "c",
        [
            Outcome(ok.id, DELIVERED, attempt=1, attempted_at=t, status_code=204, duration_ms=3.5),
            Outcome(retry.id, PENDING, next_attempt_at=t + timedelta(minutes=1), attempt=1, attempted_at=t,
                    status_code=500, error="HTTP 500: boom", duration_ms=2.0),
        ],
    )  # fmt: skip
    delivered = store.webhooks.delivery(ok.id)
    assert delivered["status"] == DELIVERED and delivered["finished_at"] is not None
    assert delivered["log"] == [
        {"attempt": 1, "attempted_at": delivered["log"][0]["attempted_at"], "status_code": 204, "error": None,
         "duration_ms": 3.5},
    ]  # fmt: skip
    waiting = store.webhooks.delivery(retry.id)
    assert (waiting["status"], waiting["attempts"], waiting["last_status"]) == (PENDING, 1, 500)
    assert waiting["next_attempt_at"] > t and waiting["last_error"] == "HTTP 500: boom"
    assert [c.id for c in store.webhooks.claim("d", 10, 60, now=t + timedelta(minutes=2))] == [retry.id]
    store.webhooks.settle("someone else", [Outcome(retry.id, FAILED, attempt=2, attempted_at=t)])
    assert store.webhooks.delivery(retry.id)["status"] == PENDING  # not theirs: only the log has it
    store.webhooks.settle(
        "d", [Outcome(retry.id, FAILED, attempt=2, attempted_at=t, error="HTTP 500: again")]
    )
    assert store.webhooks.delivery(retry.id)["status"] == FAILED
    assert [a["attempt"] for a in store.webhooks.delivery(retry.id)["log"]] == [1, 2, 2]


def test_concurrent_claims_never_share_a_delivery(store: Store) -> None:
    store.webhooks.add_endpoint(URL, ["*"], "admin")
    store.webhooks.emit([WebhookEvent(LABEL_CREATED, str(i), {"n": i}) for i in range(120)])
    got: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    start = threading.Barrier(len(got))

    def send(name: str) -> None:
        try:
            start.wait()
            while batch := store.webhooks.claim(name, 7, lease_seconds=3600):
                got[name].extend(c.id for c in batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(name,)) for name in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and not set(got["a"]) & set(got["b"])
    assert len(got["a"] + got["b"]) == 120


def test_replays_filters_and_deleting_an_endpoint(store: Store) -> None:
    a = store.webhooks.add_endpoint(URL, [LABEL_CREATED], "admin")
    b = store.webhooks.add_endpoint(URL + "/b", [CASE_OPENED], "admin")
    store.webhooks.emit([WebhookEvent(LABEL_CREATED, "1", {}), WebhookEvent(CASE_OPENED, "2", {})])
    (first,) = store.webhooks.deliveries(endpoint_id=a.id)
    assert [d["event_type"] for d in store.webhooks.deliveries(event_type=CASE_OPENED)] == [CASE_OPENED]
    assert store.webhooks.deliveries(status=DELIVERED) == []
    again = store.webhooks.replay(first["id"], "admin")
    assert again["replay_of"] == first["id"] and again["event_id"] == first["event_id"]
    assert again["status"] == PENDING and again["log"] == []
    assert [d["id"] for d in store.webhooks.deliveries(event_id=first["event_id"])] == [
        again["id"],
        first["id"],
    ]
    assert [d["id"] for d in store.webhooks.deliveries(before=again["id"], limit=1)] == [again["id"] - 1]
    store.webhooks.change_endpoint(a.id, "admin", enabled=False)
    with pytest.raises(WebhookError, match="disabled") as disabled:
        store.webhooks.replay(first["id"], "admin")
    assert disabled.value.status == 409
    assert store.webhooks.claim("x", 10, 60) != [] and all(
        c.endpoint_id == b.id for c in store.webhooks.claim("y", 10, 60, now=now() + timedelta(hours=1))
    )  # a disabled endpoint's deliveries wait
    store.webhooks.delete_endpoint(b.id, "admin")
    (of_b,) = store.webhooks.deliveries(endpoint_id=b.id)
    assert of_b["status"] == FAILED and of_b["last_error"] == "the endpoint was deleted"
    assert [e.id for e in store.webhooks.endpoints()] == [a.id]
    with pytest.raises(WebhookError) as gone:
        store.webhooks.delete_endpoint(b.id, "admin")
    assert gone.value.status == 409
    with pytest.raises(WebhookError) as missing:
        store.webhooks.replay(999_999, "admin")
    assert missing.value.status == 404
    audit = store.cases.audit(subject=f"webhook:{a.id}")
    assert [e["action"] for e in audit] == ["webhook_change", "webhook_replay", "webhook_add"]
    assert "secret" not in json.dumps(audit, default=str)


def test_trim_deletes_what_ended_long_ago_and_the_events_left_without_deliveries(store: Store) -> None:
    store.webhooks.add_endpoint(URL, ["*"], "admin")
    store.webhooks.emit([WebhookEvent(LABEL_CREATED, str(i), {}) for i in range(2)])
    done, waiting = store.webhooks.claim("a", 10, 60)
    store.webhooks.settle("a", [Outcome(done.id, DELIVERED, attempt=1, attempted_at=now())])
    assert store.webhooks.trim(now() - timedelta(days=1)) == 0
    assert store.webhooks.trim(now() + timedelta(seconds=1)) == 1
    assert [d["id"] for d in store.webhooks.deliveries()] == [waiting.id]
    assert store.webhooks.emit([WebhookEvent(LABEL_CREATED, "0", {})]) == 1  # its event went with it
