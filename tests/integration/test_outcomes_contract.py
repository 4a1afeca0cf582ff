"""Holds and challenges on SQLite and PostgreSQL alike: a HOLD decision opens its hold in the transaction
that stores it, a case's verdict or the timeout (the sweep of serve and worker processes) resolves each
hold once, whichever process comes first, the waits are counted for /metrics, and a challenge keeps
its first result."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from alembic import command
from sqlalchemy import LargeBinary, bindparam, inspect, text

from fraudstream.config import Settings
from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.storage import Store, open_store
from fraudstream.storage.challenges import ChallengeError
from fraudstream.storage.holds import PENDING, WAIT_BUCKETS, Hold
from fraudstream.storage.migrate import alembic_config
from fraudstream.storage.tables import FLAG_INDEX, UTCDateTime
from fraudstream.worker.holds import HoldSweep
from tests.integration.test_storage_contract import (
    T0,
    empty_url,
    postgres_database,
    record,
    store,
    tx,
)

__all__ = ["empty_url", "postgres_database", "store"]  # the fixtures, over both databases

DAY = timedelta(days=1)


def decided(i: int, decision: str, customer: str = "c1", **kw: Any) -> DecisionRecord:
    return record(i, customer_id=customer, decision=decision, probability=0.6, **kw)


def _save(store: Store, *records: DecisionRecord) -> list[str]:
    txs = [tx(int(r.transaction_id[1:]), customer=r.customer_id) for r in records]
    return store.decisions.save(list(records), transactions=txs)


def test_a_hold_is_opened_with_its_hold_decision_and_no_other(store: Store) -> None:
    _save(store, decided(1, "HOLD"), decided(2, "CHALLENGE"), decided(3, "BLOCK"), decided(4, "HOLD", "c2"))
    holds = store.holds.get_many(["t0001", "t0002", "t0003", "t0004"])
    assert sorted(holds) == ["t0001", "t0004"]
    first = holds["t0001"]
    assert (first.status, first.outcome, first.resolution, first.customer_id) == (PENDING, None, None, "c1")
    assert first.held_at == T0 + timedelta(seconds=1) and first.amount == 11.0  # its decision's time
    assert store.holds.pending() == 2
    # the decision is stored once, and so is its hold: a replayed batch opens nothing new
    assert _save(store, decided(1, "HOLD")) == [] and store.holds.pending() == 2
    stored = store.decisions.get_many(["t0002", "t0004"])
    assert (stored["t0002"].decision, stored["t0004"].decision) == ("CHALLENGE", "HOLD")  # 9 characters fit


def test_a_scored_batchs_columns_open_holds_too(store: Store) -> None:
    n = 6
    columns = DecisionColumns(
        transaction_id=np.array([f"t{i:04d}" for i in range(n)], dtype=object),
        customer_id=np.array(["c1", "c2"] * 3, dtype=object),
        timestamp=np.array([(T0 + timedelta(minutes=i)).timestamp() for i in range(n)]),
        amount=np.arange(n, dtype=np.float64) + 10,
        decision=np.array(["APPROVE", "HOLD", "FLAG", "HOLD", "CHALLENGE", "BLOCK"], dtype=object),
        probability=np.full(n, 0.5),
        reasons=[[] for _ in range(n)],
        rules=[[] for _ in range(n)],
        features=np.zeros((n, 2)),
        feature_names=["a", "b"],
        model_version="m1",
        latency_ms={"total": 1.0},
        decided_at=T0,
    )
    assert len(store.decisions.save(columns)) == n
    holds = store.holds.list()
    assert [(h.transaction_id, h.customer_id, h.amount, h.held_at) for h in holds] == [
        ("t0001", "c2", 11.0, T0),
        ("t0003", "c2", 13.0, T0),
    ]


def test_a_verdict_resolves_the_holds_of_its_case_once(store: Store) -> None:
    _save(store, decided(1, "HOLD", "a"), decided(2, "FLAG", "a"), decided(3, "HOLD", "b"))
    _save(store, decided(4, "HOLD", "c"), decided(5, "CHALLENGE", "d"))
    assert store.cases.sync() == 4  # the HOLDs and the FLAG; a CHALLENGE opens no case
    by_customer = {c.group_value: c for c in store.cases.list()}
    assert sorted(by_customer) == ["a", "b", "c"]

    closed, _, labels = store.cases.verdict([by_customer["a"].id], "fraud", "ana")
    (rejected,) = closed[0].holds
    assert (rejected.transaction_id, rejected.status, rejected.outcome) == ("t0001", "rejected", "BLOCK")
    assert (rejected.resolution, rejected.resolved_by) == ("verdict", "ana")
    other = store.holds.get("t0003")  # another case's hold waits for its own verdict
    assert len(labels) == 2 and other is not None and other.status == PENDING
    closed, _, _ = store.cases.verdict([by_customer["b"].id], "legitimate", "bo")
    assert [(h.transaction_id, h.status, h.outcome) for h in closed[0].holds] == [
        ("t0003", "released", "APPROVE")
    ]
    closed, _, labels = store.cases.verdict(
        [by_customer["c"].id], "inconclusive", "bo", hold_default="APPROVE"
    )
    assert [h.outcome for h in closed[0].holds] == ["APPROVE"] and labels == []
    assert store.holds.pending() == 0

    # resolved holds stay as they were resolved: the timeout finds nothing to do
    assert store.holds.expire(DAY, "BLOCK", now=T0 + 30 * DAY) == []
    assert store.holds.get("t0001") == rejected
    assert store.holds.get("t0001").case_id == by_customer["a"].id  # type: ignore[union-attr]
    audit = store.cases.audit(subject=f"case:{by_customer['a'].id}")
    assert audit[0]["after"]["holds"] == {"t0001": "BLOCK"}


def test_the_timeout_gives_the_default_to_holds_pending_that_long_and_counts_their_waits(
    store: Store,
) -> None:
    _save(store, decided(1, "HOLD"), decided(2, "HOLD"), decided(3, "HOLD", decided_at=T0 + DAY))
    assert store.holds.expire(DAY, "BLOCK", now=T0 + DAY) == []  # held a second too late
    done = store.holds.expire(DAY, "BLOCK", now=T0 + DAY + timedelta(seconds=1))
    assert [(h.transaction_id, h.status, h.outcome, h.resolution) for h in done] == [
        ("t0001", "rejected", "BLOCK", "timeout"),
    ]
    assert done[0].waited_seconds == DAY.total_seconds()
    done = store.holds.expire(timedelta(minutes=1), "APPROVE", now=T0 + DAY + timedelta(minutes=5))
    assert [(h.transaction_id, h.status) for h in done] == [("t0002", "released"), ("t0003", "released")]
    assert store.holds.pending() == 0
    waits = store.holds.waits()  # per resolution, outcome and bucket: a wait of a day, of a day and
    # 298 seconds (t0002, held at T0 + 2 s), and of 5 minutes (t0003)
    assert [(r, o, b, n) for r, o, b, n, _ in waits] == [
        ("timeout", "APPROVE", 300, 1),
        ("timeout", "APPROVE", 172800, 1),
        ("timeout", "BLOCK", 86400, 1),
    ]
    assert {86400, 172800, 300} <= set(WAIT_BUCKETS)
    assert sum(s for *_, s in waits) == pytest.approx(DAY.total_seconds() * 2 + 298 + 300)


def test_holds_list_pending_first_the_longest_waiting_first(store: Store) -> None:
    _save(store, *(decided(i, "HOLD", f"c{i % 2}") for i in range(1, 6)))
    store.holds.expire(timedelta(seconds=0), "APPROVE", now=T0 + timedelta(seconds=2))  # t0001, t0002
    listed = store.holds.list()
    assert [(h.transaction_id, h.status) for h in listed] == [
        ("t0003", "pending"),
        ("t0004", "pending"),
        ("t0005", "pending"),
        ("t0001", "released"),
        ("t0002", "released"),
    ]
    assert [h.transaction_id for h in store.holds.list(status=["released"], customer_id="c0")] == ["t0002"]
    assert [h.transaction_id for h in store.holds.list(limit=2, offset=1)] == ["t0004", "t0005"]


def test_every_timed_out_hold_is_resolved_by_exactly_one_of_many_sweepers(store: Store) -> None:
    n, sweepers = 120, 4
    _save(store, *(decided(i, "HOLD", f"c{i % 7}") for i in range(n)))
    url = store.url.render_as_string(hide_password=False)
    won: list[list[Hold]] = [[] for _ in range(sweepers)]
    start = threading.Barrier(sweepers)

    def sweep(k: int) -> None:
        with open_store(url) as mine:
            start.wait()
            while True:
                done = mine.holds.expire(timedelta(hours=1), "BLOCK", now=T0 + DAY, limit=10)
                won[k] += done
                if not done and mine.holds.pending() == 0:
                    return

    threads = [threading.Thread(target=sweep, args=(k,)) for k in range(sweepers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    resolved = [h.transaction_id for batch in won for h in batch]
    assert len(resolved) == n and len(set(resolved)) == n  # each once, by one of them
    assert sum(count for _, _, _, count, _ in store.holds.waits()) == n  # and counted once


def test_a_challenge_keeps_its_first_result(store: Store) -> None:
    _save(store, decided(1, "CHALLENGE"))
    at = T0 + timedelta(minutes=3)
    first, new = store.challenges.answer("t0001", "failed", at, "payments")
    assert new and (first.result, first.completed_at, first.answered_by) == ("failed", at, "payments")
    again, new = store.challenges.answer("t0001", "failed", at + DAY, "payments")
    assert not new and again == store.challenges.get("t0001") and again.completed_at == at
    with pytest.raises(ChallengeError, match="already answered 'failed'"):
        store.challenges.answer("t0001", "passed", at, "payments")
    assert store.challenges.get("t0002") is None
    with pytest.raises(ValueError, match="result: expected one of passed, failed, abandoned"):
        store.challenges.answer("t0001", "maybe", at, "payments")


def test_migration_0018_widens_the_decisions_and_keeps_rows_and_the_flag_index(empty_url: str) -> None:
    config = alembic_config()
    row = (
        "INSERT INTO decisions (transaction_id, decided_at, timestamp, customer_id, amount, decision,"
        " probability, reasons, rules, model_version, feature_set, feature_values, latency_ms)"
        " VALUES (:id, :at, :at, 'c1', 1, :decision, 0.5, '[]', '[]', 'm0', 'none', :blob, '{}')"
    )
    insert = text(row).bindparams(
        bindparam("at", type_=UTCDateTime()), bindparam("blob", type_=LargeBinary())
    )
    with open_store(empty_url) as s:
        with s.db.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0017")
            conn.execute(text("INSERT INTO feature_sets VALUES ('none', '[]')"))
            conn.execute(insert, {"id": "old", "at": T0, "decision": "FLAG", "blob": b""})
        s.migrate()
        assert s.decisions.get("old").decision == "FLAG"  # type: ignore[union-attr]
        with s.db.engine.begin() as conn:
            conn.execute(insert, {"id": "new", "at": T0, "decision": "CHALLENGE", "blob": b""})
        (index,) = [i for i in inspect(s.db.engine).get_indexes("decisions") if i["name"] == FLAG_INDEX]
        where = index["dialect_options"].get(f"{s.dialect}_where")
        assert where is not None and "FLAG" in str(where)  # still the FLAG decisions only
        with s.db.engine.begin() as conn:
            conn.execute(text("DELETE FROM decisions WHERE transaction_id = 'new'"))
            config.attributes["connection"] = conn
            command.downgrade(config, "0017")
        assert "holds" not in inspect(s.db.engine).get_table_names()


def test_the_sweep_groups_new_holds_into_cases_then_times_out_the_old_ones(store: Store) -> None:
    now = datetime.now(UTC)
    _save(store, decided(1, "HOLD", "old"), decided(2, "HOLD", "new", decided_at=now))
    settings = Settings(hold_timeout_seconds=3600, hold_default="APPROVE")
    (done,) = HoldSweep(store, settings).sweep()
    assert (done.transaction_id, done.outcome, done.resolution) == ("t0001", "APPROVE", "timeout")
    assert done.case_id is not None  # grouped into its customer's case before it timed out
    waiting = store.holds.get("t0002")
    assert waiting is not None and waiting.status == PENDING and waiting.case_id is not None
    assert HoldSweep(store, settings).sweep() == []  # nothing left that waited an hour


def test_a_resolved_hold_and_a_challenge_result_are_webhook_events_committed_with_them(store: Store) -> None:
    from fraudstream.events.webhook import CHALLENGE_RESULT, HOLD_RESOLVED

    endpoint = store.webhooks.add_endpoint(
        "https://hooks.example.com/h", [HOLD_RESOLVED, CHALLENGE_RESULT], "a"
    )
    _save(store, decided(1, "HOLD"), decided(2, "CHALLENGE"))
    (hold,) = store.holds.expire(timedelta(0), "BLOCK")
    at = T0 + timedelta(minutes=3)
    store.challenges.answer("t0002", "failed", at, "payments")
    store.challenges.answer("t0002", "failed", at, "payments")  # a retry is no second event
    store.holds.expire(timedelta(0), "APPROVE")  # nothing pending: no event either
    found = store.webhooks.deliveries(endpoint_id=endpoint.id)
    bodies = {d["event_type"]: store.webhooks.delivery(d["id"])["event"] for d in found}
    assert len(found) == 2 and set(bodies) == {HOLD_RESOLVED, CHALLENGE_RESULT}
    held = bodies[HOLD_RESOLVED]["data"]
    assert (held["transaction_id"], held["outcome"], held["resolution"]) == ("t0001", "BLOCK", "timeout")
    assert held["waited_seconds"] == hold.waited_seconds
    challenge = bodies[CHALLENGE_RESULT]
    assert challenge["data"]["result"] == "failed" and challenge["created"] == "2024-03-01T12:03:00Z"
