"""Rules backtests against a small stored history whose figures are worked out by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fraudstream.events import Label, Transaction
from fraudstream.events.decision import DecisionRecord
from fraudstream.rules import RulesError, RuleSet
from fraudstream.rules.loader import rules_from_bytes
from fraudstream.storage import Store, open_store
from fraudstream.training.rule_backtest import backtest_names, run_backtest

BASE = datetime(2024, 3, 1, 12, tzinfo=UTC)
THRESHOLDS = {"flag": 0.5, "block": 0.9}

CANDIDATE = """
rules:
  - name: big
    when: amount > 100
    action: FLAG
    reason: big amount
  - name: burst
    when: customer_count_1h >= 5
    action: BLOCK
    reason: burst of payments
  - name: trusted_device
    when: device_id == "d-good"
    action: APPROVE
    reason: a device we know
"""

#: id, minutes after BASE, amount, probability, live decision, logged features, device (None: no body
#: stored), label (True fraud, False legitimate, None unlabelled), model version
OLD = -40 * 24 * 60  # minutes: 40 days before BASE
HISTORY = [
    ("t0", OLD, 999.0, 0.2, "APPROVE", {"customer_count_1h": 9.0, "new_device": 0.0}, "d0", True, "m1"),
    ("t1", 1, 50.0, 0.1, "APPROVE", {"customer_count_1h": 0.0, "new_device": 0.0}, "d1", True, "m1"),
    ("t2", 2, 500.0, 0.2, "APPROVE", {"customer_count_1h": 1.0, "new_device": 1.0}, "d2", True, "m1"),
    ("t3", 3, 200.0, 0.6, "FLAG", {"customer_count_1h": 6.0, "new_device": 0.0}, "d3", False, "m1"),
    ("t4", 4, 20.0, 0.95, "BLOCK", {"customer_count_1h": 7.0}, "d4", None, "m0"),
    ("t5", 5, 300.0, 0.7, "FLAG", {"customer_count_1h": 0.0, "new_device": 0.0}, "d-good", True, "m1"),
    ("t6", 6, 1000.0, 0.3, "APPROVE", {"customer_count_1h": 2.0, "new_device": 0.0}, None, True, "m1"),
]  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'history.db'}") as store:
        store.migrate()
        for tid, minutes, amount, probability, decision, features, device, label, version in HISTORY:
            at = BASE + timedelta(minutes=minutes)
            record = DecisionRecord(
                transaction_id=tid, customer_id="c1", timestamp=at, amount=amount, decision=decision,
                probability=probability, reasons=[], rules=[], model_version=version, features=features,
                latency_ms={"total": 1.0},
            )  # fmt: skip
            body = Transaction(
                transaction_id=tid, timestamp=at, customer_id="c1", amount=amount, device_id=device
            )
            store.decisions.save([record], [body] if device is not None else None)
            if label is not None:
                store.labels.add(
                    [Label(transaction_id=tid, is_fraud=label, label_time=at + timedelta(days=1))]
                )
        yield store


def candidate(store: Store, text: str = CANDIDATE) -> RuleSet:
    return rules_from_bytes(text, backtest_names(store.history.feature_names()), "candidate.yaml")


def test_a_backtest_reports_each_rules_hits_precision_recall_and_fraud_amount(store: Store) -> None:
    report = run_backtest(store, candidate(store), THRESHOLDS, "m1", timedelta(days=30)).to_dict()
    assert report["rows"] == 6  # t0 is older than 30 days before the newest decision
    assert (report["labelled"], report["fraud"], report["fraud_amount"]) == (5, 4, 1850.0)
    assert report["other_model_rows"] == 1  # t4, by m0
    by_name = {r["name"]: r for r in report["rules"]}
    assert list(by_name) == ["big", "burst", "trusted_device"]
    assert by_name["big"] == {
        "name": "big", "action": "FLAG", "shadow": False, "hits": 4, "fraud_hits": 3, "unlabelled_hits": 0,
        "precision": 0.75, "recall": 0.75, "fraud_amount": 1800.0,
    }  # fmt: skip
    assert by_name["burst"] == {
        "name": "burst", "action": "BLOCK", "shadow": False, "hits": 2, "fraud_hits": 0, "unlabelled_hits": 1,
        "precision": 0.0, "recall": 0.0, "fraud_amount": 0.0,
    }  # fmt: skip
    assert by_name["trusted_device"] == {
        "name": "trusted_device", "action": "APPROVE", "shadow": False, "hits": 1, "fraud_hits": 1,
        "unlabelled_hits": 0, "precision": 1.0, "recall": 0.25, "fraud_amount": 300.0,
    }  # fmt: skip


def test_a_backtest_lists_the_decisions_that_would_change_against_the_live_ones(store: Store) -> None:
    report = run_backtest(store, candidate(store), THRESHOLDS, "m1", timedelta(days=30)).to_dict()
    assert report["changes"] == [
        {"from": "APPROVE", "to": "FLAG", "count": 2, "examples": ["t2", "t6"]},
        {"from": "FLAG", "to": "APPROVE", "count": 1, "examples": ["t5"]},
        {"from": "FLAG", "to": "BLOCK", "count": 1, "examples": ["t3"]},
    ]
    none = {"CHALLENGE": 0, "HOLD": 0}
    assert report["live"] == {"APPROVE": 3, "FLAG": 2, "BLOCK": 1} | none
    assert report["candidate"] == {"APPROVE": 2, "FLAG": 2, "BLOCK": 2} | none


def test_the_model_decision_under_the_rules_comes_from_the_stored_probability_and_thresholds(
    store: Store,
) -> None:
    # No rules: each row gets its model decision alone; with these thresholds t3 (0.6) is APPROVE.
    report = run_backtest(
        store, candidate(store, "rules: []"), {"flag": 0.65, "block": 0.9}, "m1", timedelta(days=30)
    )
    assert [c.to_dict() for c in report.changes] == [
        {"from": "FLAG", "to": "APPROVE", "count": 1, "examples": ["t3"]}
    ]
    assert report.rules == []


def test_lists_are_reported_beside_the_rules_and_a_longer_window_reads_older_decisions(store: Store) -> None:
    rules = candidate(store, 'rules: []\ndeny:\n  customer_id: ["c1"]\n')
    report = run_backtest(store, rules, THRESHOLDS, "m1", timedelta(days=60)).to_dict()
    assert report["rows"] == 7
    assert report["rules"] == [
        {"name": "deny_list:customer_id", "action": "BLOCK", "shadow": False, "hits": 7, "fraud_hits": 5,
         "unlabelled_hits": 1, "precision": 5 / 7, "recall": 1.0, "fraud_amount": 2849.0}
    ]  # fmt: skip


def test_a_window_with_no_decisions_reports_nothing_rather_than_failing(store: Store) -> None:
    until = BASE - timedelta(days=100)
    report = run_backtest(store, candidate(store), THRESHOLDS, "m1", timedelta(days=1), until).to_dict()
    assert (report["rows"], report["fraud"], report["changes"]) == (0, 0, [])
    assert [(r["hits"], r["precision"], r["recall"]) for r in report["rules"]] == [(0, None, None)] * 3


@pytest.mark.parametrize(
    ("text", "rule", "problem"),
    [
        (
            "rules:\n  - {name: typo, when: amout > 1, action: FLAG, reason: r}",
            "typo",
            "did you mean 'amount'",
        ),
        ("rules:\n  - {name: odd, when: amount > 1, action: REVIEW, reason: r}", "odd", "not one of"),
        ("rules:\n  - {name: label, when: is_fraud == 1, action: FLAG, reason: r}", "label", "unknown name"),
    ],
)
def test_an_invalid_candidate_is_refused_naming_the_rule(
    store: Store, text: str, rule: str, problem: str
) -> None:
    with pytest.raises(RulesError) as caught:
        candidate(store, text)
    assert caught.value.rule == rule
    assert problem in str(caught.value)


def test_a_backtest_reports_a_shadow_rule_s_hits_and_changes_no_decision(store: Store) -> None:
    text = "rules:\n  - {name: big, when: amount > 100, action: BLOCK, reason: big, shadow: true}\n"
    report = run_backtest(store, candidate(store, text), THRESHOLDS, "m1", timedelta(days=30)).to_dict()
    assert report["rules"] == [
        {"name": "big", "action": "BLOCK", "shadow": True, "hits": 4, "fraud_hits": 3, "unlabelled_hits": 0,
         "precision": 0.75, "recall": 0.75, "fraud_amount": 1800.0}
    ]  # fmt: skip
    assert report["changes"] == []  # the live decisions were made by no rules, as the model's thresholds say
