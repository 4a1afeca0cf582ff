"""What the Rules page shows, from API-shaped answers, without a browser."""

from __future__ import annotations

import math

from fraudstream.dashboard.rules import current_rules, hits_line, rules_frame, stats_frame

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
