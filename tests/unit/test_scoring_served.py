"""The served models, for every mix of models: probabilities as the plain formulas give them from the
fitted estimators, decisions at the thresholds, reasons as a row-by-row build picks them, and a row
decided the same alone as in any batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import MODEL_DECISIONS
from fraudstream.features import FeatureEngine
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.models.ensemble import model_decisions
from fraudstream.pipeline.scorer import TOP_REASONS, Scorer
from fraudstream.rules import default_known_names, parse_rules
from fraudstream.scoring.served import ServedModels
from fraudstream.state import MemoryFeatureState
from fraudstream.training.models import raw_score
from tests.unit.model_bundles import reweighted

MIXES = {
    "all three": None,
    "no xgboost": {"xgboost": 0.0, "logistic": 0.7, "isolation_forest": 0.3},
    "no logistic": {"xgboost": 0.5, "logistic": 0.0, "isolation_forest": 0.5},
    "xgboost alone": {"xgboost": 1.0},
    "integer weights": {"logistic": 1, "isolation_forest": 2, "xgboost": 3},
    "no forest": {"isolation_forest": 0.0, "xgboost": 0.4, "logistic": 0.6},
}


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> ModelBundle:
    return load_bundle(bundle_path)


@pytest.fixture(scope="module")
def fitted(trained_bundle: ModelBundle) -> dict[str, Any]:
    """The estimators training fitted for :func:`bundle`, before they were stored."""
    return trained_bundle.fitted


@pytest.fixture(scope="module")
def frame(small_frame: pd.DataFrame) -> pd.DataFrame:
    return small_frame.iloc[-1500:].reset_index(drop=True)


def _rules() -> Any:
    return parse_rules(
        {
            "rules": [
                {"name": "big", "when": "amount > 150", "action": "FLAG", "reason": "big"},
                {"name": "tiny", "when": "amount < 5", "action": "APPROVE", "reason": "tiny"},
                {"name": "huge", "when": "amount > 900", "action": "BLOCK", "reason": "huge", "alert": True},
            ]
        },
        default_known_names(FeatureEngine().feature_set),
    )


def _random_rows(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    X = rng.normal(size=(n, m)) * rng.choice([0.1, 1.0, 100.0, 1e6], size=(n, 1))
    X[rng.random(X.shape) < 0.3] = np.nan
    return X


def _plain_probability(bundle: ModelBundle, fitted: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """The ensemble as its definition reads, in plain numpy over the fitted estimators' scores."""
    m = bundle.manifest
    total, out = 0.0, np.zeros(len(X))
    for name, weight in m.weights.items():
        total += weight
        if not weight:
            continue
        raw = raw_score(name, fitted[name], X)
        if name != "isolation_forest":
            p = np.clip(raw, 1e-7, 1 - 1e-7)
            raw = np.log(p / (1 - p))
        slope, intercept = m.calibration[name]
        out += weight / (1 + np.exp(-np.clip(slope * raw + intercept, -50, 50)))
    return out / (total or 1.0)


def _plain_contributions(fitted: dict[str, Any], explainer: str, X: np.ndarray) -> np.ndarray:
    model = fitted[explainer]
    if explainer == "xgboost":
        contribs = model.get_booster().predict(xgb.DMatrix(X), pred_contribs=True, approx_contribs=True)
        return np.asarray(contribs[:, :-1], dtype=np.float64)
    steps = model.named_steps
    scaled = steps["scale"].transform(steps["impute"].transform(X))
    return np.asarray(scaled * steps["model"].coef_[0], dtype=np.float64)


def _row_by_row(served: ServedModels, contributions: np.ndarray, X: np.ndarray, decisions: Any) -> Any:
    out = []
    for i, decision in enumerate(decisions):
        known = np.where(np.isnan(X[i]), -np.inf, contributions[i])
        top = np.argsort(-known, kind="stable")[:TOP_REASONS] if decision != "APPROVE" else []
        row = []
        for j in top:
            c = round(float(known[j]), 4)
            if c > 0:
                row.append(
                    {
                        "code": served.feature_names[j],
                        "value": float(X[i, j]),
                        "contribution": c,
                        "source": served.explainer,
                        "description": served.descriptions[j],
                        "direction": "raises_risk",
                    }
                )
        out.append(row)
    return out


@pytest.mark.parametrize("mix", list(MIXES))
def test_probabilities_decisions_and_reasons_follow_their_definitions(
    bundle: ModelBundle, fitted: dict[str, Any], mix: str
) -> None:
    mixed = reweighted(bundle, MIXES[mix])
    served = ServedModels(mixed, [f"about {n}" for n in mixed.manifest.feature_names])
    assert served.names == [n for n, w in mixed.manifest.weights.items() if w]
    rng = np.random.default_rng(len(mix))
    X = _random_rows(rng, 2000, len(served.feature_names))
    scores = served.score(X)
    np.testing.assert_allclose(scores.probability, _plain_probability(mixed, fitted, X), rtol=0, atol=1e-12)
    levels = np.digitize(scores.probability, [mixed.manifest.thresholds[k] for k in ("flag", "block")])
    assert scores.decision.tolist() == np.asarray(MODEL_DECISIONS, dtype=object)[levels].tolist()
    assert served.explainer is not None
    decisions = np.where(rng.random(len(X)) < 0.7, "FLAG", "APPROVE").astype(object)
    reasons = served.reasons(X, decisions)
    contributions = _plain_contributions(fitted, served.explainer, X)
    assert reasons == _row_by_row(served, contributions, X, decisions)
    assert sum(map(len, reasons)) > len(X)  # most flagged rows have reasons
    assert len({id(row) for row in reasons}) == len(X)  # every row its own list


def test_without_an_explainer_there_are_no_model_reasons(bundle: ModelBundle) -> None:
    served = ServedModels(reweighted(bundle, {"isolation_forest": 1.0}))
    X = _random_rows(np.random.default_rng(1), 5, len(served.feature_names))
    assert served.explainer is None
    assert served.reasons(X, np.full(5, "BLOCK", dtype=object)) == [[]] * 5
    with pytest.raises(ValueError, match="explains"):
        served.contributions(X)


def test_rows_with_no_positive_contribution_have_no_model_reasons(
    bundle: ModelBundle, fitted: dict[str, Any]
) -> None:
    served = ServedModels(reweighted(bundle, MIXES["no xgboost"]))
    assert served.explainer == "logistic"
    steps = fitted["logistic"].named_steps
    mean, scale, coef = steps["scale"].mean_, steps["scale"].scale_, steps["model"].coef_[0]
    rng = np.random.default_rng(2)
    m = len(served.feature_names)
    sign = np.sign(coef)
    X = mean - sign * np.abs(rng.normal(size=(8, m))) * scale  # every contribution <= 0
    X[1] = mean + sign * 1e-9 * scale  # positive, but 0 once rounded to 4 places
    X[2, :5] = mean[:5] + sign[:5] * 3 * scale[:5]  # a few positive ones
    X[3, rng.random(m) < 0.5] = np.nan  # missing values become the median: small contributions
    flagged = np.full(8, "FLAG", dtype=object)
    got = served.reasons(X, flagged)
    assert got == _row_by_row(served, _plain_contributions(fitted, "logistic", X), X, flagged)
    assert got[0] == got[1] == [] and 1 <= len(got[2]) <= TOP_REASONS


def test_reasons_round_and_order_as_numpy(bundle: ModelBundle) -> None:
    served = ServedModels(bundle)
    rng = np.random.default_rng(11)
    n, m = 300, len(served.feature_names)
    contrib = np.round(rng.normal(size=(n, m)), 1) * rng.choice([1e-4, 1e-3, 1.0], size=(n, 1))
    contrib[:30] += 0.00005  # halfway between four-place values
    contrib[30:40] = -1.0
    contrib[40:50, :3] = np.nan
    contrib[50:60] = 0.00004
    X = rng.normal(size=(n, m))
    X[rng.random(X.shape) < 0.3] = np.nan
    decisions = np.full(n, "BLOCK", dtype=object)
    got = served.reasons(X, decisions, contrib)
    known = np.where(np.isnan(X), -np.inf, contrib)  # a missing value is never picked
    top = np.argsort(np.where(np.isnan(known), np.inf, -known), axis=1, kind="stable")[:, :TOP_REASONS]
    rounded = np.round(np.take_along_axis(known, top, axis=1), 4)
    for i in range(n):
        keep = rounded[i] > 0
        assert [r["code"] for r in got[i]] == [served.feature_names[j] for j in top[i, keep]]
        assert [r["contribution"] for r in got[i]] == rounded[i, keep].tolist()
        assert [r["value"] for r in got[i]] == X[i, top[i, keep]].tolist()


@pytest.mark.parametrize("mix", ["all three", "no xgboost", "xgboost alone"])
def test_a_batch_is_decided_row_by_row_as_each_row_alone(
    bundle: ModelBundle, frame: pd.DataFrame, mix: str
) -> None:
    """The scorer's probabilities, model decisions and model reasons of a batch are the served models'
    of each of its feature rows taken alone, to the bit, whatever the batch's size."""
    rules = _rules()
    scorer = Scorer(reweighted(bundle, MIXES[mix]), MemoryFeatureState(retention=60 * 86400.0), lambda: rules)
    whole = TransactionBatch.from_frame(frame)
    scorer.score(whole.take(np.arange(1000)))  # some history, so the features are not all missing
    rng = np.random.default_rng(3)
    explained = 0
    for size in (1, 2, 5, 33, 64, 65, 400):
        batch = whole.take(rng.choice(np.arange(1000, len(frame)), size=size, replace=False))
        got = scorer.score(batch)
        for i in range(size):
            X = got.features[i : i + 1]
            alone = scorer.models.score(X)
            assert alone.probability.view(np.uint64)[0] == got.probability[i : i + 1].view(np.uint64)[0]
            assert alone.decision[0] == got.model_decision[i]
            model = [r for r in got.reasons[i] if r["source"] != "rules"]
            assert scorer.models.reasons(X, got.decision[i : i + 1]) == [model]
            explained += len(model)
    assert explained


@pytest.mark.parametrize("flag, block", [(0.3, 0.7), (0.5, 0.5), (0.7, 0.3)])
def test_model_decisions_equal_digitize(flag: float, block: float) -> None:
    p = np.array([0.0, 0.3, 0.5, 0.7, 1.0, np.nan, np.nextafter(0.5, 0), np.nextafter(0.7, 1), 0.4])
    levels = np.digitize(p, [flag, block])
    assert (
        np.asarray(MODEL_DECISIONS, dtype=object)[levels].tolist()
        == model_decisions(p, {"flag": flag, "block": block}).tolist()
    )
