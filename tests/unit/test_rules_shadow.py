"""Shadow rules: their hits are recorded as ``shadow:<name>`` and they change no decision, reason or alert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.pipeline.scorer import Scorer
from fraudstream.rules import RulesError, default_known_names, parse_rules
from fraudstream.state.memory import MemoryFeatureState

KINDS = {"amount": "number", "customer_id": "string"}
COLUMNS = {"amount": np.array([5.0, 500.0, 50.0]), "customer_id": np.array(["a", "b", "c"], dtype=object)}


def rules(shadow: bool, alert: bool = True) -> dict[str, object]:
    return {
        "rules": [
            {"name": "mid", "when": "amount > 10", "action": "FLAG", "reason": "mid"},
            {"name": "big", "when": "amount > 100", "action": "BLOCK", "reason": "big", "alert": alert,
             "shadow": shadow},
        ]
    }  # fmt: skip


def test_a_shadow_rule_records_its_hits_and_changes_nothing_else() -> None:
    model = np.array(["APPROVE", "APPROVE", "APPROVE"], dtype=object)
    live = parse_rules(rules(shadow=False), KINDS).apply(COLUMNS, model)
    watched = parse_rules(rules(shadow=True), KINDS).apply(COLUMNS, model)
    assert live.decision.tolist() == ["APPROVE", "BLOCK", "FLAG"]
    assert watched.decision.tolist() == ["APPROVE", "FLAG", "FLAG"]  # as if "big" did not exist
    assert watched.fired == [[], ["mid"], ["mid"]] and watched.reasons == [[], ["mid"], ["mid"]]
    assert watched.alert.tolist() == [False, False, False]  # big asks for alerts, but only in shadow
    assert watched.shadow == [[], ["shadow:big"], []]
    assert watched.recorded == [[], ["mid", "shadow:big"], ["mid"]]
    assert live.shadow is None and live.recorded == live.fired


def test_shadow_must_be_true_or_false_and_the_error_names_the_rule() -> None:
    data = rules(shadow=True)
    data["rules"][1]["shadow"] = "yes"  # type: ignore[index]
    with pytest.raises(RulesError) as caught:
        parse_rules(data, KINDS, source="rules.yaml")
    assert caught.value.rule == "big" and "'shadow' must be true or false" in str(caught.value)


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> ModelBundle:
    return load_bundle(bundle_path)


def test_the_scorer_stores_shadow_hits_but_decides_reasons_and_alerts_without_them(
    bundle: ModelBundle, small_frame: pd.DataFrame
) -> None:
    batch = TransactionBatch.from_frame(small_frame.head(200))
    known = default_known_names(FeatureEngine().feature_set)
    watch = {"name": "everyone", "when": "amount >= 0", "action": "BLOCK", "reason": "all", "alert": True}

    def score(data: dict[str, object]) -> object:
        rules = parse_rules(data, known)
        return Scorer(bundle, MemoryFeatureState(retention=60 * 86400.0), lambda: rules).score(batch)

    plain = score({"rules": []})
    shadowed = score({"rules": [{**watch, "shadow": True}]})
    assert shadowed.decision.tolist() == plain.decision.tolist()
    assert shadowed.alert.tolist() == plain.alert.tolist()
    assert shadowed.reasons == plain.reasons
    assert shadowed.rules == [["shadow:everyone"]] * len(batch)
    acting = score({"rules": [watch]})
    assert set(acting.decision.tolist()) == {"BLOCK"} and acting.rules == [["everyone"]] * len(batch)
