"""The few-rows path of the scorer gives the batch path's answers bit for bit: probabilities, model
decisions, reasons and records, for every mix of models it serves."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import DECISIONS
from fraudstream.features import FeatureEngine
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.models.ensemble import calibrate, combine, model_decisions
from fraudstream.pipeline.scorer import TOP_REASONS, ScoredBatch, Scorer, _rule_reasons
from fraudstream.rules import default_known_names, parse_rules
from fraudstream.scoring._explain import _top
from fraudstream.scoring._few import FEW_ROWS, FewRows, _pick
from fraudstream.scoring.compiled import CompiledBooster
from fraudstream.state import MemoryFeatureState

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
def frame(small_frame: pd.DataFrame) -> pd.DataFrame:
    return small_frame.iloc[-1500:].reset_index(drop=True)


def _mix(bundle: ModelBundle, weights: dict[str, float] | None) -> ModelBundle:
    out = copy.copy(bundle)
    out.manifest = copy.deepcopy(bundle.manifest)
    if weights is not None:
        out.manifest.weights = weights
    return out


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


def _batch_path(s: Scorer, X: np.ndarray) -> np.ndarray:
    manifest = s.bundle.manifest
    calibrated = {n: calibrate(n, m.score(X), manifest.calibration[n]) for n, m in s.models.items()}
    return combine(calibrated, {n: w for n, w in manifest.weights.items() if n in calibrated})


def _few_rows(s: Scorer) -> FewRows:
    """The few-rows steps for the scorer's models, explainer and features, as the scorer builds them."""
    names, descriptions = s.engine.names, s.engine.feature_set.descriptions
    return FewRows(s.models, s.bundle.manifest, s.explainer, names, TOP_REASONS, descriptions)


def _same_reasons(a: list[list[dict[str, Any]]], b: list[list[dict[str, Any]]]) -> bool:
    """Equal, with keys in the same order and values of the same types (None for NaN, floats)."""
    return (
        a == b
        and repr(a) == repr(b)
        and [[type(v) for d in r for v in d.values()] for r in a]
        == [[type(v) for d in r for v in d.values()] for r in b]
    )


def _assert_same(few: ScoredBatch, ref: ScoredBatch, names: list[str]) -> None:
    assert np.array_equal(few.probability.view(np.uint64), ref.probability.view(np.uint64))
    assert few.model_decision.tolist() == ref.model_decision.tolist()
    assert few.decision.tolist() == ref.decision.tolist()
    assert _same_reasons(few.reasons, ref.reasons)
    assert few.rules == ref.rules and few.alert.tolist() == ref.alert.tolist()
    for a, b in zip(few.records(names, "v"), ref.records(names, "v"), strict=True):
        for name in ("transaction_id", "customer_id", "timestamp", "amount", "decision", "probability"):
            assert getattr(a, name) == getattr(b, name) and type(getattr(a, name)) is type(getattr(b, name))
        assert a.reasons == b.reasons and a.rules == b.rules and a.model_version == b.model_version
        assert dict(a.features) == dict(b.features) and a.latency_ms == few.timings


@pytest.mark.parametrize("mix", list(MIXES))
def test_scored_batches_equal_the_batch_path(bundle: ModelBundle, frame: pd.DataFrame, mix: str) -> None:
    mixed = _mix(bundle, MIXES[mix])
    state, rules = MemoryFeatureState(retention=60 * 86400.0), _rules()
    few = Scorer(mixed, state, lambda: rules)
    ref = Scorer(mixed, state, lambda: rules, few.engine, few_rows=0)  # the batch path, whatever the size
    whole = TransactionBatch.from_frame(frame)
    ref.score(whole.take(np.arange(1000)))  # some history, so the features are not all missing
    assert (few.few_rows, ref.few_rows) == (FEW_ROWS, 0)
    assert len(few.models) == len([w for w in mixed.manifest.weights.values() if w])
    rng = np.random.default_rng(len(mix))
    fired = 0
    for _ in range(60):
        n = int(rng.integers(1, FEW_ROWS + 1))
        batch = whole.take(rng.choice(np.arange(1000, len(frame)), size=n, replace=False))
        got, want = few.score(batch, record=False), ref.score(batch, record=False)
        _assert_same(got, want, few.engine.names)
        fired += sum(bool(r) for r in got.rules)
    assert fired  # the rules' reasons were compared too


@pytest.mark.parametrize("mix", list(MIXES))
def test_probabilities_and_reasons_equal_on_random_rows(bundle: ModelBundle, mix: str) -> None:
    s = Scorer(_mix(bundle, MIXES[mix]), MemoryFeatureState(retention=86400.0), _rules)
    few = _few_rows(s)
    names, rng = s.engine.names, np.random.default_rng(7)
    for n in [*range(1, FEW_ROWS + 1), *rng.integers(1, FEW_ROWS + 1, size=40).tolist()]:
        X = _random_rows(rng, n, len(names))
        probability, picks = few.probabilities(X)
        want = _batch_path(s, X)
        assert np.array_equal(probability.view(np.uint64), want.view(np.uint64))
        thresholds = s.bundle.manifest.thresholds
        assert model_decisions(probability, thresholds).tolist() == model_decisions(want, thresholds).tolist()
        fired = [["r1", "r2"] if i % 3 == 0 else [] for i in range(n)]
        decision = np.asarray(["APPROVE" if i % 4 == 1 else "FLAG" for i in range(n)], dtype=object)
        texts = [[f"{r}!" for r in f] for f in fired]
        outcome = type("Outcome", (), {"fired": fired, "reasons": texts, "decision": decision})()
        got = _rule_reasons(few.reasons(n, picks, decision), outcome)
        assert _same_reasons(got, _rule_reasons(s.explain(X, decision), outcome))
        assert len({id(row) for row in got}) == n


def test_rows_with_no_positive_contribution_have_no_model_reasons(bundle: ModelBundle) -> None:
    s = Scorer(_mix(bundle, MIXES["no xgboost"]), MemoryFeatureState(retention=86400.0), _rules)
    assert s.few_rows == FEW_ROWS and s.explainer == "logistic"
    few = _few_rows(s)
    lr, rng = s.models["logistic"], np.random.default_rng(2)
    m = len(s.engine.names)
    sign = np.sign(lr.coef)
    X = lr.mean - sign * np.abs(rng.normal(size=(8, m))) * lr.scale  # every contribution <= 0
    X[1] = lr.mean + sign * 1e-9 * lr.scale  # positive, but 0 once rounded to 4 places
    X[2, :5] = lr.mean[:5] + sign[:5] * 3 * lr.scale[:5]  # a few positive ones
    X[3, rng.random(m) < 0.5] = np.nan  # missing values become the median: small contributions
    flagged = np.full(8, "FLAG", dtype=object)
    outcome = type("Outcome", (), {"fired": [[]] * 8, "reasons": [[]] * 8, "decision": flagged})()
    _, picks = few.probabilities(X)
    got = _rule_reasons(few.reasons(8, picks, flagged), outcome)
    assert got == _rule_reasons(s.explain(X, flagged), outcome)
    assert got[0] == got[1] == [] and 1 <= len(got[2]) <= TOP_REASONS


def test_picks_round_and_order_as_numpy() -> None:
    rng = np.random.default_rng(11)
    n, m = 300, 40
    contrib = np.round(rng.normal(size=(n, m)), 1) * rng.choice([1e-4, 1e-3, 1.0], size=(n, 1))
    contrib[:30] += 0.00005  # halfway between four-place values
    contrib[30:40] = -1.0
    contrib[40:50, :3] = np.nan
    contrib[50:60] = 0.00004
    X = rng.normal(size=(n, m))
    X[rng.random(X.shape) < 0.3] = np.nan
    cols, c, v, count = _pick(contrib, X, TOP_REASONS)
    known = np.where(np.isnan(X), -np.inf, contrib)  # a missing value is never picked
    top = _top(known, TOP_REASONS)
    rounded = np.round(np.take_along_axis(known, top, axis=1), 4)
    for i in range(n):
        keep = rounded[i] > 0
        assert count[i] == keep.sum() and cols[i, : count[i]].tolist() == top[i, keep].tolist()
        assert c[i, : count[i]].view(np.uint64).tolist() == rounded[i, keep].view(np.uint64).tolist()
        assert np.array_equal(v[i, : count[i]], X[i, top[i, keep]]) and not np.isnan(v[i, : count[i]]).any()


def test_a_booster_served_by_xgboost_itself_equals_too(bundle: ModelBundle) -> None:
    s = Scorer(_mix(bundle, MIXES["xgboost alone"]), MemoryFeatureState(retention=86400.0), _rules)
    s.models = {"xgboost": CompiledBooster(None, s.models["xgboost"].booster)}
    few = _few_rows(s)
    rng = np.random.default_rng(5)
    for n in (1, 3, FEW_ROWS):
        X = _random_rows(rng, n, len(s.engine.names))
        probability, picks = few.probabilities(X)
        assert np.array_equal(probability.view(np.uint64), _batch_path(s, X).view(np.uint64))
        flagged = np.full(n, "FLAG", dtype=object)
        outcome = type("Outcome", (), {"fired": [[]] * n, "reasons": [[]] * n, "decision": flagged})()
        assert _same_reasons(few.reasons(n, picks, flagged), _rule_reasons(s.explain(X, flagged), outcome))


def test_the_cut_over(bundle: ModelBundle, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Scorer(bundle, MemoryFeatureState(retention=86400.0), _rules)
    calls: list[int] = []
    original = FewRows.probabilities

    def counted(self: FewRows, X: np.ndarray) -> Any:
        calls.append(len(X))
        return original(self, X)

    monkeypatch.setattr(FewRows, "probabilities", counted)
    whole = TransactionBatch.from_frame(frame)
    for n in (1, FEW_ROWS, FEW_ROWS + 1):
        scored = s.score(whole.take(np.arange(n)), record=False)
        records = scored.records(list(s.engine.names), s.version)  # another list: the general build
        assert [r.probability for r in records] == scored.probability.tolist()
    assert calls == [1, FEW_ROWS]
    calls.clear()
    state = MemoryFeatureState(retention=86400.0)
    for few_rows in (0, 5):
        chosen = Scorer(bundle, state, _rules, s.engine, few_rows=few_rows)
        assert chosen.few_rows == few_rows
        for n in (1, 5, 6):
            chosen.score(whole.take(np.arange(n)), record=False)
    assert calls == [1, 5]
    with pytest.raises(ValueError, match="few_rows must be 0 or more, got -1"):
        Scorer(bundle, state, _rules, s.engine, few_rows=-1)


@pytest.mark.parametrize("flag, block", [(0.3, 0.7), (0.5, 0.5), (0.7, 0.3)])
def test_model_decisions_equal_digitize(flag: float, block: float) -> None:
    p = np.array([0.0, 0.3, 0.5, 0.7, 1.0, np.nan, np.nextafter(0.5, 0), np.nextafter(0.7, 1), 0.4])
    levels = np.digitize(p, [flag, block])
    assert (
        np.asarray(DECISIONS, dtype=object)[levels].tolist()
        == model_decisions(p, {"flag": flag, "block": block}).tolist()
    )
