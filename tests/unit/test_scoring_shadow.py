"""A challenger in shadow: the scorer's shadow fields are what scoring with the challenger alone gives,
and the champion's answer does not change."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.rules import default_known_names, parse_rules
from fraudstream.scoring.scorer import ChallengerError, Scorer
from fraudstream.state import MemoryFeatureState


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> ModelBundle:
    return load_bundle(bundle_path)


def _challenger(bundle: ModelBundle) -> ModelBundle:
    """The same models reweighted, at other thresholds, under another version."""
    out = copy.copy(bundle)
    out.manifest = copy.deepcopy(bundle.manifest)
    out.manifest.version = "challenger-1"
    out.manifest.weights = {"xgboost": 0.2, "logistic": 0.5, "isolation_forest": 0.3}
    out.manifest.thresholds = {"flag": 0.05, "block": 0.4}
    return out


def _rules() -> object:
    return parse_rules(
        {"rules": [{"name": "big", "when": "amount > 150", "action": "FLAG", "reason": "big"}]},
        default_known_names(FeatureEngine().feature_set),
    )


@pytest.mark.parametrize("few_rows", [64, 0], ids=["few-rows path", "batch path"])
@pytest.mark.parametrize("size", [1, 3, 40, 500])
def test_shadow_fields_equal_scoring_with_the_challenger_alone(
    bundle: ModelBundle, small_frame: pd.DataFrame, few_rows: int, size: int
) -> None:
    frame = small_frame.iloc[-1500:].reset_index(drop=True)
    whole = TransactionBatch.from_frame(frame)
    rules = _rules()
    challenger = _challenger(bundle)
    state = MemoryFeatureState(retention=60 * 86400.0)
    shadowed = Scorer(bundle, state, lambda: rules, few_rows=few_rows, challenger=challenger)
    champion = Scorer(bundle, state, lambda: rules, shadowed.engine, few_rows=few_rows)
    alone = Scorer(challenger, state, lambda: rules, shadowed.engine, few_rows=few_rows)
    shadowed.score(whole.take(np.arange(900)))  # history, so that features are not all missing
    batch = whole.take(np.arange(900, 900 + size))

    got = shadowed.score(batch, record=False)
    want = alone.score(batch, record=False)
    served = champion.score(batch, record=False)

    assert got.shadow_version == "challenger-1" and shadowed.challenger is challenger
    assert got.shadow_probability is not None and got.shadow_decision is not None
    assert np.array_equal(got.shadow_probability.view(np.uint64), want.probability.view(np.uint64))
    assert got.shadow_decision.tolist() == want.decision.tolist()
    # the champion's answer is untouched by the shadow
    assert np.array_equal(got.probability.view(np.uint64), served.probability.view(np.uint64))
    assert got.decision.tolist() == served.decision.tolist() and got.alert.tolist() == served.alert.tolist()
    assert "shadow" in got.timings
    records = got.records(shadowed.engine.names, bundle.manifest.version)
    assert [r.shadow_probability for r in records] == want.probability.tolist()
    assert [r.shadow_decision for r in records] == want.decision.tolist()
    assert {r.shadow_version for r in records} == {"challenger-1"}


def test_without_a_challenger_the_shadow_fields_are_empty(
    bundle: ModelBundle, small_frame: pd.DataFrame
) -> None:
    rules = _rules()
    scorer = Scorer(bundle, MemoryFeatureState(retention=86400.0), lambda: rules)
    got = scorer.score(TransactionBatch.from_frame(small_frame.iloc[:5]), record=False)
    assert scorer.challenger is None and got.shadow_version is None and got.shadow_probability is None
    assert {r.shadow_decision for r in got.records(scorer.engine.names, "v")} == {None}


def test_a_challenger_on_another_feature_set_is_refused(bundle: ModelBundle) -> None:
    other = _challenger(bundle)
    spec = FeatureEngine().feature_set.to_dict()
    spec["features"] = spec["features"][:-1]
    other.manifest.feature_spec = spec
    with pytest.raises(ChallengerError, match="another feature set"):
        Scorer(bundle, MemoryFeatureState(retention=86400.0), _rules, challenger=other)
