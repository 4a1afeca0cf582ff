"""The per-row Python objects of a scored batch: reasons and records, built batch-wise, say exactly what
a row-by-row construction would; the collector pause around a batch restores what it found."""

from __future__ import annotations

import gc
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fraudstream._gc import paused_gc
from fraudstream.events.batch import TransactionBatch
from fraudstream.models.bundle import ModelBundle, load_bundle
from fraudstream.pipeline.scorer import Scorer, _rule_reasons
from fraudstream.rules import EMPTY_RULES
from fraudstream.state import MemoryFeatureState


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> ModelBundle:
    return load_bundle(bundle_path)


@pytest.fixture(scope="module")
def batch(small_frame: pd.DataFrame) -> TransactionBatch:
    return TransactionBatch.from_frame(small_frame.iloc[-500:].reset_index(drop=True))


class _Outcome:
    def __init__(self, fired: list[list[str]], reasons: list[list[str]], decision: list[str]) -> None:
        self.fired, self.reasons = fired, reasons
        self.decision = np.asarray(decision, dtype=object)


def _row_by_row(
    names: list[str], texts: list[str], source: str, contrib: np.ndarray, X: np.ndarray, outcome: _Outcome
) -> Any:
    known = np.where(np.isnan(X), -np.inf, contrib)
    top = np.argsort(np.where(np.isnan(known), np.inf, -known), axis=1, kind="stable")[:, :3]
    out = []
    for i in range(X.shape[0]):
        order = top[i].tolist() if outcome.decision[i] != "APPROVE" else []
        row: list[dict[str, Any]] = []
        for j in order:
            k = round(float(known[i, j]), 4)
            if k > 0:
                x = float(X[i, j])
                row.append(
                    {
                        "code": names[j],
                        "value": x,
                        "contribution": k,
                        "source": source,
                        "description": texts[j],
                        "direction": "raises_risk",
                    }
                )
        row += [
            {"code": r, "reason": t, "source": "rules", "direction": "raises_risk"}
            for r, t in zip(outcome.fired[i], outcome.reasons[i], strict=True)
        ]
        out.append(row)
    return out


def test_reasons_equal_a_row_by_row_build(bundle: ModelBundle) -> None:
    s = Scorer(bundle, MemoryFeatureState(retention=86400.0), lambda: EMPTY_RULES)
    explainer = s.explainer
    assert explainer is not None
    names = s.engine.names
    rng = np.random.default_rng(3)
    n = 200
    contrib = np.round(rng.normal(size=(n, len(names))), 1)
    contrib[:20] = -1.0  # no positive contribution: no model reasons
    contrib[20:40, :] = 0.0
    contrib[20:40, 5] = 0.00004  # rounds to 0: not a reason
    contrib[40:60, :2] = 7.0  # a tie, broken by column number
    X = rng.normal(size=(n, len(names)))
    X[rng.random(X.shape) < 0.3] = np.nan
    fired = [["big", "night"] if i % 7 == 0 else [] for i in range(n)]
    decision = ["APPROVE" if i % 5 == 3 else "FLAG" for i in range(n)]
    outcome = _Outcome(fired, [[f"{r} text" for r in f] for f in fired], decision)
    got = _rule_reasons(s.explain(X, outcome.decision, contrib), outcome)
    own = s.models.contributions(X)  # the explainer's own contributions: the same as given
    assert s.explain(X, outcome.decision) == s.explain(X, outcome.decision, own)
    texts = s.engine.feature_set.descriptions
    assert got == _row_by_row(names, texts, explainer, contrib, X, outcome)
    assert got[1] == [] and got[7] == [r for r in got[7] if r["source"] == "rules"] != []
    assert all(isinstance(v["value"], float) for row in got for v in row if "value" in v)
    assert any(row and decision[i] == "FLAG" for i, row in enumerate(got[60:], 60))
    assert len({id(row) for row in got}) == n  # every row its own list


def test_records_equal_a_row_by_row_build(bundle: ModelBundle, batch: TransactionBatch) -> None:
    s = Scorer(bundle, MemoryFeatureState(retention=86400.0), lambda: EMPTY_RULES)
    scored = s.score(batch)
    records = scored.records(s.engine.names, s.version)
    assert len(records) == len(batch)
    for i in range(0, len(batch), 37):
        r = records[i]
        assert r.transaction_id == batch.transaction_id[i] and r.customer_id == batch.customer_id[i]
        assert r.timestamp == datetime.fromtimestamp(float(batch.timestamp[i]), UTC)
        assert type(r.amount) is float and r.amount == float(batch.amount[i])
        assert type(r.probability) is float and r.probability == float(scored.probability[i])
        assert type(r.decision) is str and r.decision == scored.decision[i]
        assert r.reasons is scored.reasons[i] and r.rules is scored.rules[i]
        assert (r.latency_ms == scored.timings and r.latency_ms is not records[0].latency_ms) or i == 0
        assert np.array_equal(r.features.row, scored.features[i], equal_nan=True)  # type: ignore[attr-defined]


def test_paused_gc_restores_the_collector() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer batch is still running
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        raise RuntimeError("a failed batch")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


def test_paused_gc_resumes_when_the_last_thread_leaves() -> None:
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with paused_gc():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    with paused_gc():
        thread.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread's batch is still running
    leave.set()
    thread.join(10)
    assert gc.isenabled()
