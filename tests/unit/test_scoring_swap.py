"""Swapping the served model in place (Scorer.use): later batches are the new model's, wholly; a model on
another feature set is refused and the old one keeps serving."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.pipeline.scorer import ModelSwapError, Scorer
from fraudstream.rules import default_known_names, parse_rules
from fraudstream.state import MemoryFeatureState


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> ModelBundle:
    return load_bundle(bundle_path)


def _other(bundle: ModelBundle, version: str) -> ModelBundle:
    """The same models reweighted, at other thresholds, under another version."""
    out = copy.copy(bundle)
    out.manifest = copy.deepcopy(bundle.manifest)
    out.manifest.version = version
    out.manifest.weights = {"xgboost": 0.2, "logistic": 0.5, "isolation_forest": 0.3}
    out.manifest.thresholds = {"flag": 0.05, "block": 0.4}
    return out


def _rules() -> object:
    return parse_rules({"rules": []}, default_known_names(FeatureEngine().feature_set))


def test_a_swap_serves_the_new_model_from_the_next_batch(
    bundle: ModelBundle, small_frame: pd.DataFrame
) -> None:
    rules = _rules()
    whole = TransactionBatch.from_frame(small_frame.iloc[-1200:].reset_index(drop=True))
    scorer = Scorer(bundle, MemoryFeatureState(retention=60 * 86400.0), lambda: rules)
    scorer.engine.record(whole.take(np.arange(900)), scorer.state)
    batch = whole.take(np.arange(900, 940))
    before = scorer.score(batch)
    new = _other(bundle, "swapped-2")
    alone = Scorer(new, scorer.state, lambda: rules, scorer.engine)

    scorer.use(new)
    after = scorer.score(batch)

    assert before.model_version == bundle.manifest.version
    assert scorer.version == after.model_version == "swapped-2"
    assert {r.model_version for r in after.records(scorer.engine.names)} == {"swapped-2"}
    np.testing.assert_array_equal(after.probability, alone.score(batch).probability)
    assert not np.array_equal(after.probability, before.probability)


def test_a_swap_keeps_or_replaces_the_challenger(bundle: ModelBundle, small_frame: pd.DataFrame) -> None:
    rules = _rules()
    shadow = _other(bundle, "shadow-1")
    scorer = Scorer(bundle, MemoryFeatureState(retention=86400.0), lambda: rules, challenger=shadow)
    batch = TransactionBatch.from_frame(small_frame.iloc[:5])

    scorer.use(_other(bundle, "swapped-2"))
    assert scorer.score(batch).shadow_version == "shadow-1"
    scorer.use(bundle, challenger=None)
    got = scorer.score(batch)
    assert (got.model_version, got.shadow_version) == (bundle.manifest.version, None)


def test_a_model_on_another_feature_set_is_refused_and_the_old_one_serves(
    bundle: ModelBundle, small_frame: pd.DataFrame
) -> None:
    rules = _rules()
    scorer = Scorer(bundle, MemoryFeatureState(retention=86400.0), lambda: rules)
    other = _other(bundle, "narrower-3")
    spec = FeatureEngine().feature_set.to_dict()
    spec["features"] = spec["features"][:-1]
    other.manifest.feature_spec = spec

    with pytest.raises(ModelSwapError, match=r"another feature set.*restart"):
        scorer.use(other)

    got = scorer.score(TransactionBatch.from_frame(small_frame.iloc[:5]))
    assert scorer.version == got.model_version == bundle.manifest.version
