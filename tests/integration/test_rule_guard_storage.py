"""The rule guard's storage on SQLite and PostgreSQL: baselines per rules version, one guard in force per
rule however many processes trip it at once, re-enabling with its audit trail, the window of decisions
the guard counts, and a version's baseline backtested over the newest stored decisions."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np

from fraudstream.events.decision import DecisionColumns
from fraudstream.rules import parse_rules
from fraudstream.storage import Store
from fraudstream.storage.guard import GUARD_ACTOR, Baseline, GuardError, Window
from fraudstream.training.rule_baseline import backtest_baseline

T0 = datetime(2024, 5, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
FIGURES = {"hits": 60, "decisions": 100, "expected_hits": 2, "expected_decisions": 1_000, "multiple": 5.0}


def batch(
    prefix: str, n: int, *, rules_version: str = "2", decided_at: datetime = NOW, start: int = 0
) -> DecisionColumns:
    return DecisionColumns(
        transaction_id=np.array([f"{prefix}{i:04d}" for i in range(n)], dtype=object),
        customer_id=np.array(["c1"] * n, dtype=object),
        timestamp=T0.timestamp() + (np.arange(n) + start) * 60.0,
        amount=np.where(np.arange(n) % 4 == 0, 5_000.0, 10.0),
        decision=np.array(["APPROVE"] * n, dtype=object),
        probability=np.full(n, 0.1),
        reasons=[[] for _ in range(n)],
        rules=[["big", "shadow:watch"] if i % 4 == 0 else [] for i in range(n)],
        features=np.arange(n * 2, dtype=np.float64).reshape(n, 2),
        feature_names=["f0", "f1"],
        model_version="m1",
        latency_ms={"total": 1.0},
        rules_version=rules_version,
        decided_at=decided_at,
    )


def test_a_version_s_baselines_are_replaced_by_its_newer_backtest_alone(store: Store) -> None:
    repo = store.rule_guard
    old = [
        Baseline("2", "big", 3, 1_000, NOW, "lead", T0, T0 + timedelta(days=1)),
        Baseline("3", "big", 9, 90, NOW, "x"),
    ]
    repo.save_baselines("2", old[:1])
    repo.save_baselines("3", old[1:])
    got = repo.baselines("2")["big"]
    assert (got.hits, got.decisions, got.computed_by, got.note) == (3, 1_000, "lead", None)
    assert got.period_start == T0 and got.computed_at.tzinfo is not None

    repo.save_baselines(
        "2", [Baseline("2", "mid", 0, 0, NOW, "lead", note="its backtest found no stored decisions")]
    )
    assert list(repo.baselines("2")) == ["mid"] and repo.baselines("2")["mid"].note is not None
    assert repo.baselines("3")["big"].hits == 9 and repo.baselines("4") == {}


def test_of_processes_tripping_a_rule_at_once_one_does_and_it_is_audited(store: Store) -> None:
    repo = store.rule_guard
    before = repo.stamp()
    won: list[object] = []
    start = threading.Barrier(6)

    def trip() -> None:
        start.wait()
        won.append(repo.trip("big", "2", **FIGURES))

    threads = [threading.Thread(target=trip) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    guards = [g for g in won if g is not None]
    assert len(guards) == 1
    assert [(g.rule, g.rules_version, g.hits, g.in_force) for g in repo.in_force()] == [
        ("big", "2", 60, True)
    ]
    assert repo.trip("big", "3", **FIGURES) is None
    assert repo.stamp() != before
    audit = store.cases.audit(subject="rule:big")
    assert [(a["action"], a["actor"]) for a in audit] == [("guard", GUARD_ACTOR)]
    assert audit[0]["before"] is None and audit[0]["after"]["hits"] == 60


def test_re_enabling_releases_the_guard_once_audited_and_the_rule_may_trip_again(store: Store) -> None:
    repo = store.rule_guard
    first = repo.trip("big", "2", **FIGURES)
    assert first is not None and repo.trip("mid", "2", **FIGURES) is not None
    stamp = repo.stamp()

    released = repo.reenable("big", "lead", "fixed the feed")
    assert (released.id, released.released_by, released.release_reason) == (
        first.id,
        "lead",
        "fixed the feed",
    )
    assert released.released_at is not None and not released.in_force
    assert [g.rule for g in repo.in_force()] == ["mid"] and repo.stamp() != stamp
    assert repo.released() == {"big": released.released_at}
    try:
        repo.reenable("big", "lead", "again")
    except GuardError as error:
        assert error.status == 404 and "not guarded" in str(error)
    else:
        raise AssertionError("a rule not guarded was re-enabled")

    audit = store.cases.audit(subject="rule:big")
    assert [(a["action"], a["actor"]) for a in audit] == [("reenable", "lead"), ("guard", GUARD_ACTOR)]
    assert (
        audit[0]["before"]["released_at"] is None and audit[0]["after"]["release_reason"] == "fixed the feed"
    )

    again = repo.trip("big", "3", **FIGURES)
    assert again is not None and again.id != first.id
    assert [g.id for g in repo.history("big")] == [again.id, first.id]


def test_the_window_is_the_newest_decisions_stored_of_the_version_in_use(store: Store) -> None:
    store.decisions.save(batch("old", 8, decided_at=NOW - timedelta(minutes=5)))
    store.decisions.save(
        batch("other", 4, rules_version="1", decided_at=NOW - timedelta(minutes=1), start=100)
    )
    store.decisions.save(batch("new", 8, decided_at=NOW, start=200))
    window = store.rule_guard.window(10, "2")  # the newest ten: eight new, two of version 1's four
    assert (window.decisions, window.after) == (8, {})
    assert [(at, hits) for at, hits in window.fired] == [(NOW, ["big", "shadow:watch"])] * 2  # rows 0 and 4

    since = {"big": NOW - timedelta(minutes=2), "mid": NOW + timedelta(minutes=1)}
    everything = store.rule_guard.window(100, "2", since)
    assert (everything.decisions, everything.after) == (16, {"big": 8, "mid": 0})
    assert sorted(at for at, _ in everything.fired) == [NOW - timedelta(minutes=5)] * 2 + [NOW] * 2
    assert store.rule_guard.window(100, "9") == Window(0, {}, [])


def test_a_version_s_baseline_is_backtested_over_the_newest_stored_decisions(store: Store) -> None:
    assert store.rule_guard.newest_span(10) is None
    store.decisions.save(batch("a", 40))
    start, end = store.rule_guard.newest_span(20) or (None, None)
    assert start == T0 + timedelta(minutes=20) and end == T0 + timedelta(minutes=39, microseconds=1)
    assert store.rule_guard.newest_span(1_000) == (T0, end)

    known = {"amount": "number", "card_count": "number"}
    rules = parse_rules(
        {
            "rules": [
                {"name": "big", "when": "amount > 1000", "action": "BLOCK", "reason": "big"},
                {"name": "cards", "when": "card_count > 3", "action": "FLAG", "reason": "cards"},
            ]
        },
        known,
        version="2",
    )
    kept = backtest_baseline(store, rules, {"flag": 0.5, "block": 0.9}, "m1", decisions=20, by="lead")
    got = store.rule_guard.baselines("2")
    assert [(b.rule, b.hits, b.decisions) for b in kept] == [("big", 5, 20), ("cards", 0, 20)]
    assert (got["big"].hits, got["big"].decisions, got["big"].note, got["big"].computed_by) == (
        5,
        20,
        None,
        "lead",
    )
    assert got["big"].period_start == start
    assert got["cards"].note is not None and "card_count" in got["cards"].note
