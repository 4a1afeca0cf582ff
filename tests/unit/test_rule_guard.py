"""The rule guard's trip logic: a rule trips at the stated multiple of its backtested rate over the
minimum count of hits, never without a baseline; a guarded rule is a shadow rule of the same version;
a running process follows the stored guards; the checker trips once, audits, and raises one alert."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from fraudstream.events.alert import Alert
from fraudstream.monitoring.rule_guard import RULE_GUARD, RuleGuard
from fraudstream.rules import parse_rules
from fraudstream.rules.guard import (
    EXEMPT,
    GUARDED,
    NO_BASELINE,
    SHADOW,
    TRIPPED,
    WATCHED,
    GuardedRules,
    Limits,
    Live,
    LiveGuards,
    count_hits,
    expected_rate,
    guarded,
    judge,
)
from fraudstream.storage.guard import Guard, Window

KNOWN = {"amount": "number", "customer_id": "string"}
RULES = parse_rules(
    {
        "rules": [
            {"name": "big", "when": "amount > 100", "action": "BLOCK", "reason": "big", "alert": True},
            {"name": "mid", "when": "amount > 50", "action": "FLAG", "reason": "mid"},
            {"name": "watch", "when": "amount > 10", "action": "FLAG", "reason": "w", "shadow": True},
        ]
    },
    KNOWN,
    version="7",
)
LIMITS = Limits(multiple=5.0, min_hits=50, window=10_000)
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Base:
    hits: int
    decisions: int
    note: str | None = None


def state_of(
    live: Live, base: Base | None, limits: Limits = LIMITS, guards: frozenset[str] = frozenset()
) -> str:
    expected = {} if base is None else {"big": base}
    verdicts = judge(RULES, expected, {"big": live}, guards, limits)
    return next(v.state for v in verdicts if v.rule == "big")


@pytest.mark.parametrize(
    ("live", "state"),
    [
        (Live(49, 60), WATCHED),  # far above the rate, but under the minimum count of hits
        (Live(50, 60), TRIPPED),
        (Live(50, 5_000), TRIPPED),  # 1 %: exactly 5x the expected 0.2 %
        (Live(50, 5_001), WATCHED),  # just under 5x
        (Live(400, 100_000), WATCHED),  # many hits, at twice the rate
    ],
)
def test_a_rule_trips_at_the_multiple_of_its_backtested_rate_over_the_minimum_count(
    live: Live, state: str
) -> None:
    assert state_of(live, Base(hits=20, decisions=10_000)) == state


def test_the_multiple_and_the_minimum_are_settings() -> None:
    live, base = Live(12, 1_000), Base(hits=10, decisions=10_000)  # 1.2 %, 12x the expected 0.1 %
    assert state_of(live, base) == WATCHED  # 12 hits < 50
    assert state_of(live, base, Limits(multiple=5.0, min_hits=10)) == TRIPPED
    assert state_of(live, base, Limits(multiple=15.0, min_hits=10)) == WATCHED


def test_a_rule_its_backtest_never_saw_fire_counts_as_firing_once() -> None:
    base = Base(hits=0, decisions=10_000)
    assert expected_rate(base) == pytest.approx(1e-4)
    assert state_of(Live(50, 100_000), base) == TRIPPED  # 0.05 %: 5x one hit in 10,000
    assert state_of(Live(50, 100_001), base) == WATCHED
    tiny = Base(hits=0, decisions=3)  # a history of three decisions: any rate is below 5 x 1/3
    assert state_of(Live(1_000, 1_000), tiny) == WATCHED


@pytest.mark.parametrize(
    ("base", "says"),
    [
        (None, "rules version 7 was not backtested"),
        (
            Base(hits=0, decisions=0, note="its backtest found no stored decisions"),
            "found no stored decisions",
        ),
        (Base(hits=0, decisions=0), "found no stored decisions"),
        (
            Base(hits=0, decisions=5_000, note="it reads card_count, which no stored decision logged"),
            "card_count",
        ),
    ],
)
def test_a_rule_without_a_usable_baseline_never_trips_and_says_why(base: Base | None, says: str) -> None:
    verdicts = judge(RULES, {} if base is None else {"big": base}, {"big": Live(10_000, 10_000)}, (), LIMITS)
    big = verdicts[0]
    assert (big.rule, big.state, big.expected_rate) == ("big", NO_BASELINE, None)
    assert says in big.says and big.says.startswith("no baseline")


def test_guarded_shadow_and_exempt_rules_are_never_tripped() -> None:
    base = Base(hits=1, decisions=10_000)
    everything = Live(10_000, 10_000)
    assert state_of(everything, base, guards=frozenset({"big"})) == GUARDED
    assert state_of(everything, base, Limits(exempt=frozenset({"big"}))) == EXEMPT
    verdicts = judge(RULES, {"watch": base}, {"watch": everything}, (), LIMITS)
    assert [(v.rule, v.state) for v in verdicts] == [
        ("big", NO_BASELINE),
        ("mid", NO_BASELINE),
        ("watch", SHADOW),
    ]


def test_the_says_sentence_gives_the_figures() -> None:
    verdict = judge(RULES, {"big": Base(20, 10_000)}, {"big": Live(812, 1_000)}, (), LIMITS)[0]
    assert verdict.says == (
        "fired on 812 of the 1,000 decisions counted (81.20%, 406.0x its backtested rate of 0.20%: "
        "20 hits in 10,000 decisions)"
    )
    quiet = judge(RULES, {"big": Base(20, 10_000)}, {}, (), LIMITS)[0]
    assert (quiet.state, quiet.says) == (
        WATCHED,
        "has no decision counted yet (its backtested rate is 0.20%: 20 hits in 10,000 decisions)",
    )


def test_hits_are_counted_whatever_the_rule_did_and_from_its_re_enabling_on() -> None:
    fired = [
        (T0, ["big", "mid"]),
        (T0 + timedelta(seconds=1), ["snoozed:big"]),
        (T0 + timedelta(seconds=2), ["shadow:big", "deny_list:customer_id"]),
        (T0 + timedelta(seconds=4), ["big"]),
    ]
    window = Window(decisions=5, after={}, fired=fired)  # and one decision nothing fired on
    counted = count_hits(window, ["big", "mid", "customer_id"])
    assert counted == {"big": Live(4, 5), "mid": Live(1, 5), "customer_id": Live(0, 5)}
    since = {"big": T0 + timedelta(seconds=2)}  # re-enabled then: only what came after counts
    later = Window(decisions=5, after={"big": 2}, fired=fired[::-1])
    assert count_hits(later, ["big", "mid"], since) == {"big": Live(1, 2), "mid": Live(1, 5)}


def batch(*amounts: float) -> dict[str, np.ndarray]:
    n = len(amounts)
    return {"amount": np.array(amounts, dtype=np.float64), "customer_id": np.array(["c"] * n, dtype=object)}


def test_a_guarded_rule_is_a_shadow_rule_of_the_same_version() -> None:
    model = np.array(["APPROVE"] * 2, dtype=object)
    before = RULES.apply(batch(500.0, 60.0), model)
    assert before.decision.tolist() == ["BLOCK", "FLAG"]

    rules = guarded(RULES, frozenset({"big", "gone"}))  # a guard on a rule this version lacks changes nothing
    assert rules.version == RULES.version and [r.shadow for r in rules.rules] == [True, False, True]
    after = rules.apply(batch(500.0, 60.0), model)
    assert after.decision.tolist() == ["FLAG", "FLAG"]  # mid still acts; big decides nothing
    assert after.recorded == [["mid", "shadow:big", "shadow:watch"], ["mid", "shadow:watch"]]
    assert not after.alert.any()  # big's alert: true raises nothing in shadow
    assert guarded(RULES, frozenset({"watch", "gone"})) is RULES


class Source:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.reads = 0

    def stamp(self) -> object:
        return tuple(self.names)

    def in_force(self) -> list[Any]:
        self.reads += 1
        return [Guard(i, n, "7", T0, 60, 100, 1, 1000, 5.0) for i, n in enumerate(self.names)]


def test_a_process_follows_the_stored_guards_and_builds_the_rules_again_only_when_they_change() -> None:
    now = [0.0]
    source = Source()
    live = LiveGuards(source, check_interval=5.0, clock=lambda: now[0], background=False)
    rules = GuardedRules(lambda: RULES, live.current)
    first = rules()
    assert first is RULES and live.current() == frozenset()

    source.names.append("big")
    assert rules() is first  # not looked at before the interval
    now[0] = 5.0
    second = rules()
    assert second is not RULES and second.rules[0].shadow and second is rules()
    reads = source.reads
    now[0] = 10.0
    assert rules() is second and source.reads == reads  # the stamp did not change: nothing read
    source.names.clear()
    assert live.refresh() == frozenset() and rules() is RULES


@dataclass
class Repository:
    """The guard's storage in memory: one guard per rule in force, as the database's index holds."""

    baselines_: dict[str, Base] = field(default_factory=dict)
    fired: list[tuple[datetime, list[str]]] = field(default_factory=list)
    decisions: int = 100
    guards: list[Guard] = field(default_factory=list)
    won: bool = True

    def baselines(self, rules_version: str) -> dict[str, Base]:
        return self.baselines_ if rules_version == "7" else {}

    def in_force(self) -> list[Guard]:
        return [g for g in self.guards if g.in_force]

    def released(self) -> dict[str, datetime]:
        return {}

    def window(self, size: int, rules_version: str, since: dict[str, datetime]) -> Window:
        return Window(self.decisions, {}, self.fired)

    def trip(self, rule: str, rules_version: str, **figures: Any) -> Guard | None:
        if not self.won or any(g.rule == rule for g in self.in_force()):
            return None
        guard = Guard(len(self.guards) + 1, rule, rules_version, T0, **figures)
        self.guards.append(guard)
        return guard


def checker(repository: Repository, alerts: list[Alert], tripped: list[int], **options: Any) -> RuleGuard:
    return RuleGuard(
        repository,  # type: ignore[arg-type]
        lambda: RULES,
        Limits(multiple=5.0, min_hits=10, window=100),
        on_alerts=alerts.extend,
        on_trip=lambda: tripped.append(1),
        background=False,
        **options,
    )


def test_the_checker_trips_a_misfiring_rule_once_and_an_alert_names_it() -> None:
    repository = Repository(baselines_={"big": Base(5, 1_000), "mid": Base(300, 1_000)})
    repository.fired = [(T0 + timedelta(seconds=i), ["big", "mid"] if i % 2 else ["mid"]) for i in range(100)]
    alerts: list[Alert] = []
    tripped: list[int] = []
    guard = checker(repository, alerts, tripped)

    made = guard.check()
    assert [(g.rule, g.hits, g.decisions, g.expected_hits, g.expected_decisions) for g in made] == [
        ("big", 50, 100, 5, 1_000)
    ]  # big: 50 % against 0.5 %; mid: 100 % against 30 %, under 5x
    assert tripped == [1] and len(alerts) == 1
    alert = alerts[0]
    assert (alert.kind, alert.entity, alert.transaction_id) == (RULE_GUARD, "rule:big", None)
    assert "Rule big moved to shadow" in alert.message and "re-enables" in alert.message
    assert alert.details["rule"] == "big" and alert.details["expected_rate"] == pytest.approx(0.005)

    assert guard.check() == [] and len(alerts) == 1  # guarded already: no second trip, no second alert
    assert [v.state for v in guard.status().verdicts] == [GUARDED, WATCHED, SHADOW]


def test_a_process_that_loses_the_race_raises_no_alert_and_a_disabled_guard_trips_nothing() -> None:
    repository = Repository(baselines_={"big": Base(5, 1_000)}, won=False)
    repository.fired = [(T0, ["big"])] * 100
    alerts: list[Alert] = []
    tripped: list[int] = []
    assert checker(repository, alerts, tripped).check() == []
    assert alerts == [] and tripped == []

    repository.won = True
    off = checker(repository, alerts, tripped, enabled=False)
    assert off.check() == [] and alerts == [] and repository.guards == []
    assert off.status().verdicts[0].state == TRIPPED  # it still reports


def test_the_checker_runs_after_batches_at_most_every_interval() -> None:
    repository = Repository(baselines_={"big": Base(5, 1_000)})
    repository.fired = [(T0, ["big"])] * 100
    now = [0.0]
    alerts: list[Alert] = []
    guard = checker(repository, alerts, [], check_interval=5.0, clock=lambda: now[0])
    guard.observe(None)  # type: ignore[arg-type]
    assert repository.guards == []  # not before the interval
    now[0] = 5.0
    guard.observe(None)  # type: ignore[arg-type]
    assert [g.rule for g in repository.guards] == ["big"] and len(alerts) == 1


def test_a_rule_over_a_runtime_aggregate_of_its_version_is_not_unlogged() -> None:
    from fraudstream.training.rule_baseline import unlogged

    version = parse_rules(
        {
            "aggregates": {
                "features": [
                    {
                        "key": "customer_id",
                        "name": "cust",
                        "aggregates": [{"stats": ["count"], "windows": ["1h"], "name": "cust_count_1h"}],
                    }
                ]
            },
            "rules": [
                {"name": "burst", "when": "cust_count_1h >= 5", "action": "FLAG", "reason": "burst"},
                {"name": "new", "when": "card_count > 1", "action": "FLAG", "reason": "newer model"},
            ],
        },
        {**KNOWN, "card_count": "number"},
        version="8",
    )
    # the backtest computes the version's own aggregates; a feature no stored decision logged it cannot
    assert unlogged(version, {"fs1": ["amount_ratio"]}) == {"new": ["card_count"]}
