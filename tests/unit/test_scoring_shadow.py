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
from fraudstream.pipeline._routing import customer_bucket, routed_rows
from fraudstream.pipeline.scorer import ChallengerError, Scorer
from fraudstream.rules import default_known_names, parse_rules
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


def _three_scorers(
    bundle: ModelBundle, small_frame: pd.DataFrame, share: float
) -> tuple[TransactionBatch, Scorer, Scorer, Scorer]:
    """The last 1,500 transactions, the first 900 of them scored as history into one state, and three
    scorers on it: the champion with the challenger (at ``share``), the champion alone, the
    challenger alone."""
    whole = TransactionBatch.from_frame(small_frame.iloc[-1500:].reset_index(drop=True))
    rules = _rules()
    challenger = _challenger(bundle)
    state = MemoryFeatureState(retention=60 * 86400.0)
    both = Scorer(bundle, state, lambda: rules, challenger=challenger, challenger_share=share)
    champion = Scorer(bundle, state, lambda: rules, both.engine)
    alone = Scorer(challenger, state, lambda: rules, both.engine)
    both.score(whole.take(np.arange(900)))  # history, so that features are not all missing
    return whole, both, champion, alone


@pytest.mark.parametrize("size", [1, 3, 40, 500])
def test_shadow_fields_equal_scoring_with_the_challenger_alone(
    bundle: ModelBundle, small_frame: pd.DataFrame, size: int
) -> None:
    whole, shadowed, champion, alone = _three_scorers(bundle, small_frame, 0.0)
    challenger = alone.bundle
    batch = whole.take(np.arange(900, 900 + size))

    got = shadowed.score(batch)
    want = alone.score(batch)
    served = champion.score(batch)

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
    got = scorer.score(TransactionBatch.from_frame(small_frame.iloc[:5]))
    assert scorer.challenger is None and got.shadow_version is None and got.shadow_probability is None
    assert {r.shadow_decision for r in got.records(scorer.engine.names, "v")} == {None}


def test_a_challenger_on_another_feature_set_is_refused(bundle: ModelBundle) -> None:
    other = _challenger(bundle)
    spec = FeatureEngine().feature_set.to_dict()
    spec["features"] = spec["features"][:-1]
    other.manifest.feature_spec = spec
    with pytest.raises(ChallengerError, match="another feature set"):
        Scorer(bundle, MemoryFeatureState(retention=86400.0), _rules, challenger=other)


@pytest.mark.parametrize("size", [1, 40, 500])
def test_ab_routed_customers_get_the_challengers_whole_answer_and_the_rest_the_champions(
    bundle: ModelBundle, small_frame: pd.DataFrame, size: int
) -> None:
    whole, ab, champion, alone = _three_scorers(bundle, small_frame, 0.5)
    batch = whole.take(np.arange(900, 900 + size))
    if size == 1:  # one row of a customer in the challenger's half
        inside = [i for i, c in enumerate(whole.customer_id.tolist()) if customer_bucket(str(c)) < 0.5]
        batch = whole.take(np.array([i for i in inside if i >= 900][:1]))

    got = ab.score(batch)
    theirs, ours = alone.score(batch), champion.score(batch)

    routed = routed_rows(batch.customer_id, 0.5)
    assert routed.any() and (size == 1 or not routed.all())
    for i in range(len(batch)):
        acting, other = (theirs, ours) if routed[i] else (ours, theirs)
        assert got.probability[i] == acting.probability[i] and got.decision[i] == acting.decision[i]
        assert got.reasons[i] == acting.reasons[i] and got.rules[i] == acting.rules[i]
        assert got.alert[i] == acting.alert[i]
        assert got.shadow_probability is not None and got.shadow_decision is not None
        assert got.shadow_probability[i] == other.probability[i]
        assert got.shadow_decision[i] == other.decision[i]
    assert np.array_equal(got.champion_probability, ours.probability)
    records = got.records(ab.engine.names)
    served, shadow = bundle.manifest.version, "challenger-1"
    assert [r.model_version for r in records] == [shadow if r else served for r in routed.tolist()]
    assert [r.shadow_version for r in records] == [served if r else shadow for r in routed.tolist()]
    kept = got.columns(ab.engine.names).take([len(batch) - 1])
    assert kept.records()[0].model_version == records[-1].model_version


def test_routing_is_stable_and_a_larger_share_only_adds_customers() -> None:
    customers = np.asarray([f"customer-{i}" for i in range(4000)], dtype=object)
    tenth, fifth = routed_rows(customers, 0.1), routed_rows(customers, 0.2)
    assert np.array_equal(tenth, routed_rows(customers[::-1], 0.1)[::-1])  # the row, not its place
    assert not (tenth & ~fifth).any()  # nobody in the 10 % leaves when the share grows to 20 %
    assert 0.08 < tenth.mean() < 0.12 and 0.17 < fifth.mean() < 0.23
    assert not routed_rows(customers, 0.0).any() and routed_rows(customers, 1.0).all()
    assert customer_bucket("customer-7") == customer_bucket("customer-7")


def test_a_share_needs_a_challenger_and_lies_between_0_and_1(bundle: ModelBundle) -> None:
    from pydantic import ValidationError

    from fraudstream.config import Settings

    with pytest.raises(ValueError, match="between 0 and 1"):
        Scorer(bundle, MemoryFeatureState(retention=86400.0), _rules, challenger_share=1.5)
    with pytest.raises(ValidationError, match="set FRAUD_CHALLENGER_URI"):
        Settings(challenger_share=0.2)
