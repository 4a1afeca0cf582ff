"""CHALLENGE and HOLD: their place in the severity order and the rules' precedence, the score bands that
make them from the model's probability, and where outcomes are counted (drift, alerts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from fraudstream.alerts.detect import AlertDetector
from fraudstream.config import Settings
from fraudstream.events.decision import DecisionRecord, may_alert
from fraudstream.events.transaction import DECISIONS, FLAGGED, MODEL_DECISIONS
from fraudstream.models.bands import NO_BANDS, ScoreBands, parse_band
from fraudstream.models.reference import build_reference
from fraudstream.monitoring.drift import DriftMonitor
from fraudstream.rules import parse_rules
from tests.unit.test_drift import NAMES, THRESHOLDS, training_like

KINDS = {"amount": "number", "country": "string", "customer_id": "string", "device_id": "string"}


def test_the_outcomes_in_severity_order_and_those_the_model_knows() -> None:
    assert DECISIONS == ("APPROVE", "FLAG", "CHALLENGE", "HOLD", "BLOCK")
    assert MODEL_DECISIONS == ("APPROVE", "FLAG", "BLOCK")
    assert FLAGGED == ("FLAG", "CHALLENGE", "HOLD", "BLOCK")
    assert all(may_alert(d, []) for d in FLAGGED) and not may_alert("APPROVE", [])


RULES = {
    "rules": [
        {"name": "step_up", "when": "amount > 100", "action": "challenge", "reason": "step up"},
        {"name": "review", "when": "amount > 500", "action": "HOLD", "reason": "review first"},
        {"name": "watch", "when": "amount > 50", "action": "FLAG", "reason": "watch"},
        {"name": "huge", "when": "amount > 5000", "action": "BLOCK", "reason": "huge"},
        {"name": "home", "when": "country == 'NZ'", "action": "APPROVE", "reason": "home"},
    ],
    "allow": {"customer_id": ["C-good"]},
    "deny": {"device_id": ["D-bad"]},
}


def _apply(rows: list[tuple[str, str, str, float, str]]) -> list[str]:
    rules = parse_rules(RULES, KINDS)
    columns: dict[str, Any] = {
        name: np.array([r[i] for r in rows], dtype=object)
        for i, name in enumerate(("customer_id", "device_id", "country"))
    }
    columns["amount"] = np.array([r[3] for r in rows])
    return rules.apply(columns, np.array([r[4] for r in rows], dtype=object)).decision.tolist()


def test_rules_raise_a_decision_to_the_most_severe_of_model_and_rules_and_lists_still_win() -> None:
    rows = [
        # customer, device, country, amount, model
        ("C1", "D1", "FR", 60.0, "APPROVE"),  # FLAG rule
        ("C1", "D1", "FR", 200.0, "APPROVE"),  # FLAG and CHALLENGE rules: CHALLENGE
        ("C1", "D1", "FR", 200.0, "HOLD"),  # a CHALLENGE rule never lowers a HOLD of the model
        ("C1", "D1", "FR", 600.0, "CHALLENGE"),  # FLAG, CHALLENGE and HOLD rules: HOLD
        ("C1", "D1", "FR", 600.0, "BLOCK"),  # ... below the model's BLOCK
        ("C1", "D1", "FR", 6000.0, "APPROVE"),  # a BLOCK rule outranks them all
        ("C1", "D1", "NZ", 600.0, "HOLD"),  # an APPROVE rule overrides HOLD rules and the model
        ("C-good", "D1", "FR", 600.0, "APPROVE"),  # the allow list still approves
        ("C1", "D-bad", "NZ", 10.0, "APPROVE"),  # the deny list still blocks
        ("C1", "D1", "FR", 10.0, "CHALLENGE"),  # no rule: the model's (a score band's) decision
    ]
    assert _apply(rows) == [
        "FLAG",
        "CHALLENGE",
        "HOLD",
        "HOLD",
        "BLOCK",
        "BLOCK",
        "APPROVE",
        "APPROVE",
        "BLOCK",
        "CHALLENGE",
    ]


def test_an_unknown_action_names_every_outcome() -> None:
    bad = {"rules": [{"name": "r", "when": "amount > 1", "action": "STEP_UP", "reason": "r"}]}
    with pytest.raises(ValueError, match="not one of APPROVE, FLAG, CHALLENGE, HOLD, BLOCK"):
        parse_rules(bad, KINDS)


def test_bands_make_the_model_decisions_in_them_challenges_and_holds() -> None:
    bands = ScoreBands.parse("0.5,0.8", "0.8,1")
    p = np.array([0.1, 0.49, 0.5, 0.79, 0.8, 0.95, 1.0, np.nan])
    model = np.array(["APPROVE", "APPROVE", "FLAG", "FLAG", "BLOCK", "BLOCK", "BLOCK", "BLOCK"], dtype=object)
    assert bands.apply(p, model).tolist() == [
        "APPROVE",
        "APPROVE",
        "CHALLENGE",
        "CHALLENGE",
        "HOLD",
        "HOLD",
        "HOLD",  # a band up to 1 takes in 1
        "BLOCK",  # a missing probability is in no band
    ]
    assert model[2] == "FLAG"  # the model's own decisions are left as they were
    assert NO_BANDS.apply(p, model) is model and not NO_BANDS
    assert (
        ScoreBands.parse("0.2,0.4", None).apply(np.array([0.4]), np.array(["FLAG"], dtype=object))[0]
        == "FLAG"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0.5", "expected LOW,HIGH"),
        ("0.5,0.8,0.9", "expected LOW,HIGH"),
        ("low,high", "two numbers"),
        ("0.8,0.5", "0 <= LOW < HIGH <= 1"),
        ("0.5,1.5", "0 <= LOW < HIGH <= 1"),
        ("nan,0.5", "0 <= LOW < HIGH <= 1"),
    ],
)
def test_a_bad_band_is_refused_naming_the_setting(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_band(text, "challenge band")
    with pytest.raises(ValidationError, match="FRAUD_CHALLENGE_BAND"):
        Settings(challenge_band=text)


def test_bands_are_off_by_default_and_may_not_overlap() -> None:
    settings = Settings()
    assert (settings.challenge_band, settings.hold_band) == (None, None)
    assert not ScoreBands.parse(settings.challenge_band, settings.hold_band)
    assert Settings(challenge_band=" ", hold_band="0.9,1").challenge_band is None
    with pytest.raises(ValidationError, match="overlap"):
        Settings(challenge_band="0.5,0.8", hold_band="0.7,0.9")
    assert Settings(challenge_band="0.5,0.8", hold_band="0.8,0.9").hold_band == "0.8,0.9"  # adjacent


def test_drift_compares_the_models_decisions_with_training_and_shows_every_outcome_decided() -> None:
    X, probability = training_like(np.random.default_rng(0), 2000)
    reference = build_reference(X, NAMES, probability, THRESHOLDS)
    monitor = DriftMonitor(reference, model_version="m", min_count=1, clock=lambda: 1000.0)
    monitor.observe(X, probability)
    rates = monitor.report(np.array([50, 0, 25, 25, 0])).decision_rates  # in DECISIONS' order
    assert set(rates["reference"]) == set(rates["window"]) == set(MODEL_DECISIONS)  # training knows 3
    assert rates["decided"] == {"APPROVE": 0.5, "FLAG": 0.0, "CHALLENGE": 0.25, "HOLD": 0.25, "BLOCK": 0.0}
    assert "decided" not in monitor.report(np.zeros(len(DECISIONS), dtype=np.int64)).decision_rates
    assert "decided" not in monitor.report().decision_rates
    few = DriftMonitor(reference, model_version="m", min_count=10_000, clock=lambda: 1000.0)
    few.observe(X, probability)  # too few for a PSI: the decided rates all the same
    assert few.report(np.array([1, 0, 1, 0, 0])).decision_rates == {
        "decided": {"APPROVE": 0.5, "FLAG": 0.0, "CHALLENGE": 0.5, "HOLD": 0.0, "BLOCK": 0.0}
    }


def _record(i: int, decision: str) -> DecisionRecord:
    at = datetime(2024, 3, 1, tzinfo=UTC)
    return DecisionRecord(
        transaction_id=f"t{i}", customer_id=f"c{i}", timestamp=at, amount=10.0, decision=decision,
        probability=0.7, reasons=[], rules=[], model_version="m", features={}, latency_ms={},
    )  # fmt: skip


def test_a_hold_pages_someone_and_a_challenge_does_not() -> None:
    alerts = AlertDetector().detect([_record(1, "HOLD"), _record(2, "CHALLENGE"), _record(3, "BLOCK")])
    assert [(a.kind, a.transaction_id) for a in alerts] == [("hold", "t1"), ("block", "t3")]
    assert alerts[0].message.startswith("HOLD of transaction t1")
