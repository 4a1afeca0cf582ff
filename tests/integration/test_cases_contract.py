"""The case repository's contract on SQLite and PostgreSQL alike: FLAG and BLOCK decisions grouped
into cases once, priorities, the analyst actions with their audit entries, verdicts that write labels."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from fraudstream.events.decision import DecisionRecord
from fraudstream.storage import Store
from fraudstream.storage.cases import CaseError
from tests.integration.test_storage_contract import T0, postgres_database, record, store, tx

__all__ = ["postgres_database", "store"]  # the fixtures, over both databases


def flagged(i: int, customer: str, decision: str = "FLAG", p: float = 0.5, **kw: Any) -> DecisionRecord:
    return record(i, customer_id=customer, decision=decision, probability=p, **kw)


def _save(store: Store, *records: DecisionRecord) -> None:
    txs = [
        tx(int(r.transaction_id[1:]), customer=r.customer_id, device_id=f"d-{r.customer_id[-1]}")
        for r in records
    ]
    store.decisions.save(list(records), transactions=txs)


def test_flags_and_blocks_of_a_customer_join_one_case_and_approvals_none(store: Store) -> None:
    _save(store, flagged(1, "a", p=0.5), flagged(2, "a", "BLOCK", p=0.9), flagged(3, "b", p=0.2))
    _save(store, record(4, customer_id="c"))  # APPROVE: no case
    assert store.cases.sync() == 3
    assert store.cases.sync() == 0  # each decision is grouped once, however often sync runs
    cases = store.cases.list()
    assert [(c.group_value, c.transactions) for c in cases] == [("a", 2), ("b", 1)]
    a = cases[0]
    # expected loss: 0.5 × 11 + 0.9 × 12 (the record's amount is 10 + i)
    assert a.priority == pytest.approx(0.5 * 11 + 0.9 * 12) and a.amount == 23.0 and a.max_probability == 0.9
    assert a.status == "open" and a.opened_at == T0 + timedelta(seconds=1)
    by_amount = store.cases.list(priority="amount")
    assert by_amount[0].priority == 23.0
    assert [d["transaction_id"] for d in store.cases.get(a.id).decisions] == ["t0002", "t0001"]


def test_a_later_flag_joins_the_open_case_and_after_a_verdict_opens_a_new_one(store: Store) -> None:
    _save(store, flagged(1, "a"))
    store.cases.sync()
    (case,) = store.cases.list()
    _save(store, flagged(2, "a", p=0.7, decided_at=T0 + timedelta(seconds=2)))
    store.cases.sync()
    joined = store.cases.get(case.id)
    assert joined.transactions == 2 and joined.max_probability == 0.7  # the larger of 0.5 and 0.7
    store.cases.verdict([case.id], "inconclusive", "ana")
    _save(store, flagged(3, "a", decided_at=T0 + timedelta(seconds=3)))
    store.cases.sync()
    (newer,) = store.cases.list()
    assert newer.id != case.id and newer.transactions == 1
    assert [c.id for c in store.cases.list(status=["closed"])] == [case.id]


def test_a_decision_committed_behind_the_cursor_is_still_grouped(store: Store) -> None:
    _save(store, flagged(2, "a", decided_at=T0 + timedelta(minutes=2)))
    store.cases.sync()
    _save(store, flagged(1, "b", decided_at=T0 + timedelta(minutes=1)))  # made earlier, stored later
    store.cases.sync()
    assert sorted(c.group_value for c in store.cases.list()) == ["a", "b"]


def test_cases_can_group_by_device(store: Store) -> None:
    _save(store, flagged(1, "a1"), flagged(2, "b1"), flagged(3, "c2"))  # devices d-1, d-1, d-2
    store.cases.sync(group_by="device_id")
    assert sorted((c.group_key, c.group_value, c.transactions) for c in store.cases.list()) == [
        ("device_id", "d-1", 2),
        ("device_id", "d-2", 1),
    ]


def test_claim_assign_note_and_filters_each_leave_an_audit_entry(store: Store) -> None:
    _save(store, flagged(1, "a", p=0.9), flagged(2, "b", p=0.1))
    store.cases.sync()
    a, _ = store.cases.list()
    claimed = store.cases.assign(a.id, "ana", "ana", claim=True)
    assert (claimed.status, claimed.assignee) == ("in_review", "ana")
    with pytest.raises(CaseError, match="already claimed by ana"):
        store.cases.assign(a.id, "bo", "bo", claim=True)
    store.cases.assign(a.id, "bo", "lead")  # a lead may reassign
    store.cases.note(a.id, "card used in two countries", "bo")
    assert [c.id for c in store.cases.list(assignee="bo")] == [a.id]
    assert [c.id for c in store.cases.list(min_priority=5.0)] == [a.id]
    assert store.cases.list(older_than=timedelta(days=365 * 100)) == []
    audit = store.cases.audit(subject=f"case:{a.id}")
    assert [(e["actor"], e["action"]) for e in audit] == [
        ("bo", "note"),
        ("lead", "assign"),
        ("ana", "claim"),
    ]
    assert audit[1]["before"]["assignee"] == "ana" and audit[1]["after"]["assignee"] == "bo"
    assert [n["text"] for n in store.cases.get(a.id).notes] == ["card used in two countries"]
    with pytest.raises(CaseError) as missing:
        store.cases.note(999, "x", "bo")
    assert missing.value.status == 404


def test_a_verdict_labels_every_transaction_once_and_closes_the_case(store: Store) -> None:
    _save(store, flagged(1, "a"), flagged(2, "a"), flagged(3, "b"))
    store.cases.sync()
    a, b = store.cases.list()
    closed, changes, labels = store.cases.verdict([a.id], "fraud", "ana", note="confirmed with the bank")
    assert closed[0].status == "closed" and closed[0].verdict == "fraud" and changes.accepted == 2
    assert {(lb.transaction_id, lb.is_fraud, lb.source) for lb in labels} == {
        ("t0001", True, "case"),
        ("t0002", True, "case"),
    }
    stored = store.labels.for_transactions(["t0001", "t0002", "t0003"])
    assert sorted(r["transaction_id"] for r in stored) == ["t0001", "t0002"]
    with pytest.raises(CaseError, match="already closed"):
        store.cases.verdict([a.id, b.id], "legitimate", "ana")  # all or nothing
    assert store.cases.get(b.id).status == "open"
    closed, changes, _ = store.cases.verdict([b.id], "legitimate", "bo")
    assert changes.accepted == 1 and not changes.fraud
    assert store.labels.for_transactions(["t0003"])[0]["is_fraud"] is False
    assert store.cases.audit(actor="ana")[0]["after"] == {
        "status": "closed",
        "assignee": None,
        "verdict": "fraud",
        "note": "confirmed with the bank",
    }
    with pytest.raises(CaseError) as bad:
        store.cases.verdict([b.id], "maybe", "bo")
    assert bad.value.status == 422


def test_entities_search_links_and_body_fields_on_every_database(store: Store) -> None:
    extra = {"card": "4111-x"}
    txs = [
        tx(1, customer="a", device_id="dev_1", ip_address="10.0.0.1", extra=extra),
        tx(2, customer="b", device_id="dev_1", ip_address="10.0.0.2"),
        tx(3, customer="c", device_id="dev-3", ip_address="10.0.0.2", extra=extra),
    ]
    store.decisions.save(
        [record(i, customer_id=t.customer_id) for i, t in enumerate(txs, 1)], transactions=txs
    )
    assert [e["value"] for e in store.entities.search("dev_")] == ["dev_1"]  # "_" is no wildcard
    assert [(e["field"], e["transactions"]) for e in store.entities.search("dev", ["device_id"])] == [
        ("device_id", 2),
        ("device_id", 1),
    ]
    a = store.entities.get("customer_id", "a", T0 - timedelta(days=1))
    assert a is not None and [s["customer_id"] for s in a.shared] == ["b"]
    dev = store.entities.get("device_id", "dev_1", T0 - timedelta(days=1))
    assert dev is not None and [s["customer_id"] for s in dev.shared] == ["c"]  # through b's IP
    card = store.entities.get("extra.card", "4111-x", T0 - timedelta(days=1))
    assert card is not None and sorted(t["customer_id"] for t in card.transactions) == ["a", "c"]
    assert store.entities.get("customer_id", "nobody", T0) is None
