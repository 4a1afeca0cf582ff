"""Reasons a reviewer can read: each feature has a human description, generated from its spec entry or
given by it; reasons carry it with their direction; an APPROVE lists no model reasons, and a missing
value is never one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.reasons import reason_text
from fraudstream.features import FeatureEngine, FeatureSet
from fraudstream.features.spec import PRESETS, SpecError
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.pipeline.scorer import ScoredBatch, Scorer
from fraudstream.rules import default_known_names, parse_rules
from fraudstream.state import MemoryFeatureState


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> ModelBundle:
    return load_bundle(bundle_path)


@pytest.fixture(scope="module")
def scored(bundle: ModelBundle, small_frame: pd.DataFrame) -> ScoredBatch:
    """The last 3,000 transactions scored on an empty state, so many features are missing, with one rule
    of each direction."""
    rules = parse_rules(
        {
            "rules": [
                {"name": "big", "when": "amount > 300", "action": "FLAG", "reason": "a big payment"},
                {"name": "tiny", "when": "amount < 10", "action": "APPROVE", "reason": "a tiny payment"},
            ]
        },
        default_known_names(FeatureEngine().feature_set),
    )
    scorer = Scorer(bundle, MemoryFeatureState(retention=60 * 86400.0), lambda: rules)
    batch = TransactionBatch.from_frame(small_frame.iloc[-3000:].reset_index(drop=True))
    return scorer.score(batch)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_feature_has_a_description(preset: str) -> None:
    features = FeatureSet.load(preset)
    assert len(features.descriptions) == len(features.names)
    assert all(text.strip() and "{" not in text for text in features.descriptions)
    assert len(set(features.descriptions)) > len(features.names) * 0.9  # told apart, not one per kind


def test_descriptions_are_generated_from_the_spec() -> None:
    described = dict(
        zip(FeatureSet.load("handbook").names, FeatureSet.load("handbook").descriptions, strict=True)
    )
    assert described["ip_secs_since_first"] == "IP address: seconds since first seen"
    assert described["customer_count_1h"] == "customer: number of transactions in the last hour"
    assert (
        described["customer_distinct_ip_30d"]
        == "customer: number of distinct IP addresses in the last 30 days"
    )
    assert described["customer_amount_ratio_30d"] == (
        "customer: amount as a multiple of the average amount in the last 30 days"
    )
    assert described["new_device"] == "customer: device not seen before"
    assert described["merchant_known_fraud_14d"] == "merchant: known frauds in the last 14 days"
    assert described["log_amount"] == "amount, on a log scale"  # the preset's own description


def _spec(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "v", "fields": {"extra.refund": "number"}, "features": features}


def test_an_entry_may_describe_its_features_itself() -> None:
    features = FeatureSet.from_dict(
        _spec(
            [
                {"row": "extra.refund", "description": "refunded so far"},
                {
                    "key": "merchant_id",
                    "description": "shop",
                    "aggregates": [
                        {"stats": ["count"], "windows": ["1h"]},
                        {"stats": ["sum"], "windows": ["1d", "7d"], "of": "extra.refund",
                         "name": "{key}_refunds_{window}", "description": "{key}: refunds, last {window}"},
                    ],
                },
            ]
        )
    )  # fmt: skip
    assert features.descriptions == [
        "refunded so far",
        "shop: number of transactions in the last hour",  # the key's own name for what it is
        "merchant: refunds, last 24h",
        "merchant: refunds, last 7d",
    ]


def test_a_description_with_an_unknown_placeholder_names_the_entry() -> None:
    bad = _spec(
        [
            {
                "key": "customer_id",
                "aggregates": [{"stats": ["count"], "windows": ["1h"], "description": "{nope}"}],
            }
        ]
    )
    with pytest.raises(SpecError, match=r"features\[0\].*description '\{nope\}'.*\{window\}"):
        FeatureSet.from_dict(bad)


def test_an_approve_lists_no_model_reasons(scored: ScoredBatch) -> None:
    decisions = scored.decision.tolist()
    assert "APPROVE" in decisions and {"FLAG", "BLOCK"} & set(decisions)
    for decision, reasons in zip(decisions, scored.reasons, strict=True):
        if decision == "APPROVE":
            assert all(r["source"] == "rules" for r in reasons), reasons
    assert any(
        r["source"] != "rules"
        for d, rs in zip(decisions, scored.reasons, strict=True)
        if d != "APPROVE"
        for r in rs
    )


def test_model_reasons_carry_their_description_and_direction_and_never_a_missing_value(
    scored: ScoredBatch, bundle: ModelBundle
) -> None:
    features = FeatureEngine(bundle.feature_set()).feature_set
    described = dict(zip(features.names, features.descriptions, strict=True))
    risky = np.flatnonzero(scored.decision != "APPROVE")
    assert np.isnan(scored.features[risky]).any()  # the case exists: flagged rows with unknown features
    model = [r for i in risky.tolist() for r in scored.reasons[i] if r["source"] != "rules"]
    assert model
    for reason in model:
        assert reason["description"] == described[reason["code"]]
        assert reason["direction"] == "raises_risk" and reason["contribution"] > 0
        assert isinstance(reason["value"], float) and reason["value"] == reason["value"]


def test_rule_reasons_say_which_way_they_push(scored: ScoredBatch) -> None:
    rules = {r["code"]: r["direction"] for rs in scored.reasons for r in rs if r["source"] == "rules"}
    assert rules == {"big": "raises_risk", "tiny": "lowers_risk"}


def test_a_reason_reads_as_a_line() -> None:
    model = {
        "code": "ip_secs_since_first", "value": 31047.0, "contribution": 0.8, "source": "xgboost",
        "description": "IP address: seconds since first seen", "direction": "raises_risk",
    }  # fmt: skip
    assert reason_text(model) == "IP address: seconds since first seen = 31,047 (raises risk)"
    rule = {"code": "vip", "reason": "a known customer", "source": "rules", "direction": "lowers_risk"}
    assert reason_text(rule) == "rule vip: a known customer (lowers risk)"
    stored_before = {"code": "amount_z", "value": 4.25, "contribution": 1.2, "source": "xgboost"}
    assert reason_text(stored_before) == "amount_z = 4.25 (raises risk)"


def test_a_handful_of_rows_gets_reasons_of_the_same_kind(
    bundle: ModelBundle, small_frame: pd.DataFrame
) -> None:
    """What the API scores (a handful of rows) follows the same rules as a large batch."""
    scorer = Scorer(
        bundle, MemoryFeatureState(retention=60 * 86400.0), lambda: parse_rules({"rules": []}, [])
    )
    batch = TransactionBatch.from_frame(small_frame.iloc[-3000:].reset_index(drop=True))
    whole = scorer.score(batch)
    risky = np.flatnonzero(whole.decision != "APPROVE")[:8]
    calm = np.flatnonzero(whole.decision == "APPROVE")[:8]
    few = scorer.score(batch.take(np.concatenate([risky, calm])))
    assert len(few) <= 16 and "APPROVE" in few.decision.tolist()
    for decision, reasons in zip(few.decision.tolist(), few.reasons, strict=True):
        assert decision != "APPROVE" or reasons == []
        for reason in reasons:
            assert reason["direction"] == "raises_risk" and reason["description"]
            assert isinstance(reason["value"], float) and reason["value"] == reason["value"]
    assert any(few.reasons)
