"""The scorer: the served models score as the fitted ones; decisions follow thresholds and rules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Transaction
from fraudstream.features import FeatureEngine
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.models.ensemble import model_decisions
from fraudstream.pipeline.scorer import Scorer
from fraudstream.rules import EMPTY_RULES, default_known_names, parse_rules
from fraudstream.scoring.served import ServedModels
from fraudstream.state import MemoryFeatureState
from fraudstream.training.models import raw_score


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> ModelBundle:
    return load_bundle(bundle_path)


@pytest.fixture(scope="module")
def batch(small_frame: pd.DataFrame) -> TransactionBatch:
    return TransactionBatch.from_frame(small_frame.iloc[-3000:].reset_index(drop=True))


def scorer(bundle: ModelBundle, rules: object = EMPTY_RULES) -> Scorer:
    return Scorer(bundle, MemoryFeatureState(retention=60 * 86400.0), lambda: rules)


def test_served_models_score_as_the_fitted_ones(bundle: ModelBundle, trained_bundle: ModelBundle) -> None:
    """Served from the bundle's file, as training fitted them: XGBoost bit for bit; the forest within
    rounding (its last power is ``exp2``, numpy's ``pow``); the logistic model within rounding (its
    dot product is summed in another order than BLAS's)."""
    fitted = trained_bundle.fitted
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, len(bundle.manifest.feature_names))) * 100
    X[rng.random(X.shape) < 0.3] = np.nan
    served = ServedModels(bundle)
    assert served.names == ["xgboost", "logistic", "isolation_forest"]
    raw = dict(zip(served.names, served.score(X).raw, strict=True))
    np.testing.assert_array_equal(raw["xgboost"], raw_score("xgboost", fitted["xgboost"], X))
    forest = raw_score("isolation_forest", fitted["isolation_forest"], X)
    np.testing.assert_allclose(raw["isolation_forest"], forest, rtol=1e-13, atol=0)
    logistic = raw_score("logistic", fitted["logistic"], X)
    np.testing.assert_allclose(raw["logistic"], logistic, rtol=0, atol=1e-12)


def test_thresholds_map_to_decisions() -> None:
    p = np.array([0.0, 0.29, 0.3, 0.69, 0.7, 1.0])
    assert model_decisions(p, {"flag": 0.3, "block": 0.7}).tolist() == [
        "APPROVE", "APPROVE", "FLAG", "FLAG", "BLOCK", "BLOCK",
    ]  # fmt: skip


def test_batch_and_single_transaction_paths_agree(bundle: ModelBundle, batch: TransactionBatch) -> None:
    whole = scorer(bundle).score(batch)
    one_by_one = scorer(bundle)
    one_by_one.engine.record(batch, one_by_one.state)  # the state now holds the history the batch saw
    for i in range(0, len(batch), 997):
        single = one_by_one.score(batch.take(np.array([i])))
        assert single.probability[0] == whole.probability[i]  # one path: the same bits
    assert set(whole.decision.tolist()) <= {"APPROVE", "FLAG", "BLOCK"}
    assert ((whole.probability >= 0) & (whole.probability <= 1)).all()
    assert set(whole.timings) == {"features", "model", "rules", "explain", "total"}


def test_reasons_are_top_positive_contributions(bundle: ModelBundle, batch: TransactionBatch) -> None:
    scored = scorer(bundle).score(batch)
    risky = int(np.argmax(scored.probability))
    reasons = scored.reasons[risky]
    assert 1 <= len(reasons) <= 3
    contributions = [r["contribution"] for r in reasons]
    assert contributions == sorted(contributions, reverse=True) and contributions[0] > 0
    assert all(r["code"] in bundle.manifest.feature_names and r["source"] == "xgboost" for r in reasons)


def test_rules_override_the_model_both_ways(bundle: ModelBundle, batch: TransactionBatch) -> None:
    plain = scorer(bundle).score(batch)
    risky = int(np.argmax(plain.probability))
    assert plain.decision[risky] in ("FLAG", "BLOCK")
    customer = batch.customer_id[risky]
    rules = parse_rules(
        {
            "rules": [
                {"name": "huge", "when": "amount > 0 and amount >= 0", "action": "FLAG", "reason": "any"}
            ],
            "allow": {"customer_id": [customer]},
        },
        default_known_names(FeatureEngine().feature_set),
    )
    ruled = scorer(bundle, rules).score(batch)
    assert ruled.decision[risky] == "APPROVE"  # allow-listed beats the model
    others = np.flatnonzero(batch.customer_id != customer)
    assert (ruled.decision[others] != "APPROVE").all()  # the FLAG rule lifts everyone else
    assert any(r["code"] == "huge" and r["source"] == "rules" for r in ruled.reasons[others[0]])


def test_scoring_records_nothing_and_a_recorded_transaction_scores_the_same(bundle: ModelBundle) -> None:
    s = scorer(bundle)
    tx = Transaction(
        transaction_id="t1", timestamp=datetime(2025, 3, 1, tzinfo=UTC), customer_id="C1", amount=10.0
    )
    one = TransactionBatch.from_transactions([tx])
    first = s.score(one)
    assert s.state.recorded(one.transaction_id).tolist() == [False]  # type: ignore[union-attr]
    assert s.engine.record(one, s.state).tolist() == [True]
    assert s.engine.record(one, s.state).tolist() == [False]  # once per transaction
    again = s.score(one)  # answered by its recorded event, not counting itself
    assert first.probability[0] == again.probability[0]
    records = first.records(s.engine.names, s.version)
    assert records[0].transaction_id == "t1" and records[0].model_version == s.version
    assert records[0].features["amount"] == 10.0 and records[0].features["customer_secs_since_last"] is None


def test_top_reasons_match_a_full_stable_sort(bundle: ModelBundle) -> None:
    served = ServedModels(bundle)
    rng = np.random.default_rng(5)
    m = len(served.feature_names)
    values = np.round(rng.normal(size=(500, m)), 1)  # rounding makes ties, broken by column number
    X = rng.normal(size=(500, m))
    reasons = served.reasons(X, np.full(500, "BLOCK", dtype=object), values)
    expected = np.argsort(-values, axis=1, kind="stable")[:, :3]
    for i, row in enumerate(reasons):
        wanted = [served.feature_names[j] for j in expected[i] if values[i, j] > 0]
        assert [r["code"] for r in row] == wanted
