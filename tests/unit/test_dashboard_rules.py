"""What the Rules page shows, from API-shaped answers, without a browser."""

from __future__ import annotations

import math

from fraudstream.dashboard.rules import (
    current_rules,
    guard_frame,
    guard_line,
    hits_line,
    rules_frame,
    stats_frame,
)

RULES = {
    "source": "file",
    "version": "ab12cd34",
    "rules": [{"name": "big", "when": "amount > 1000", "action": "FLAG", "reason": "big", "alert": False,
               "shadow": False}],
    "allow": {},
    "deny": {"device_id": ["d-1"]},
    "text": None,
}  # fmt: skip
REPORT = {
    "rows": 200,
    "rules": [
        {"name": "big", "action": "FLAG", "shadow": False, "hits": 10, "fraud_hits": 4, "unlabelled_hits": 2,
         "precision": 0.4, "recall": 0.5, "fraud_amount": 9000.0},
    ],
}  # fmt: skip


def test_the_rules_in_use_are_backtested_as_the_api_reads_them() -> None:
    assert current_rules(RULES) == {"rules": RULES["rules"], "allow": {}, "deny": {"device_id": ["d-1"]}}
    assert current_rules({**RULES, "text": "rules: []\\n"}) == "rules: []\\n"
    assert rules_frame(RULES)["name"].tolist() == ["big"]


def test_each_rule_gets_its_hit_rate_among_the_periods_decisions() -> None:
    frame = stats_frame(REPORT)
    assert frame["hit_rate"].tolist() == [0.05] and frame["precision"].tolist() == [0.4]
    assert math.isnan(stats_frame({**REPORT, "rows": 0})["hit_rate"].iloc[0])
    assert hits_line(REPORT) == "big: 10 hits, precision 40%"


GUARD = {
    "enabled": True, "multiple": 5.0, "min_hits": 50, "window": 10_000, "exempt": [], "rules_version": "3",
    "decisions": 1_000,
    "rules": [
        {"name": "big", "action": "BLOCK", "state": "guarded", "says": "moved to shadow", "hits": 812,
         "decisions": 1_000, "rate": 0.812, "expected_rate": 0.002, "baseline": None},
        {"name": "mid", "action": "FLAG", "state": "no_baseline", "says": "no baseline", "hits": 3,
         "decisions": 1_000, "rate": 0.003, "expected_rate": None, "baseline": None},
    ],
    "in_force": [{"rule": "big"}],
}  # fmt: skip


def test_the_guard_shows_each_rule_s_state_and_names_the_rules_in_shadow() -> None:
    frame = guard_frame(GUARD)
    assert frame["state"].tolist() == ["guarded", "no_baseline"] and frame["rate"].tolist() == [0.812, 0.003]
    assert guard_line(GUARD) == (
        "In shadow by the guard: big; a rule trips with at least 50 hits among the newest 10,000 decisions, "
        "at 5x its backtested rate or more"
    )
    off = {**GUARD, "enabled": False, "in_force": []}
    assert (
        guard_line(off)
        == "In shadow by the guard: none; the guard is off (FRAUD_RULE_GUARD=false): it trips no rule"
    )
