"""``DecisionRepository.feature_vectors``: the stored feature vectors drift reports read back, on SQLite
and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from fraudstream.events.decision import DecisionRecord
from fraudstream.storage import Store

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def record(i: int, features: dict[str, Any]) -> DecisionRecord:
    return DecisionRecord(
        transaction_id=f"t{i:04d}",
        customer_id="c1",
        timestamp=T0 + timedelta(minutes=i),
        amount=10.0 + i,
        decision="APPROVE",
        probability=i / 100,
        reasons=[],
        rules=[],
        model_version="m1",
        features=features,
        latency_ms={"total": 1.0},
        decided_at=T0 + timedelta(seconds=i),
    )


def test_feature_vectors_come_back_in_chunks_by_feature_set_within_the_period(store: Store) -> None:
    old = [record(i, {"amount": 10.0 + i, "ratio": None}) for i in range(7)]
    new = [record(i, {"amount": 10.0 + i, "count": float(i), "ratio": 0.5}) for i in range(7, 10)]
    store.decisions.save(old + new)
    chunks = list(
        store.decisions.feature_vectors(T0 + timedelta(seconds=1), T0 + timedelta(seconds=9), chunk=3)
    )
    rows = sum(len(X) for _, X, _ in chunks)
    assert rows == 8  # decided at seconds 1..8
    assert all(len(X) <= 3 for _, X, _ in chunks)
    by_names: dict[tuple[str, ...], list[np.ndarray]] = {}
    probabilities: list[float] = []
    for names, X, p in chunks:
        assert X.shape == (len(p), len(names))
        by_names.setdefault(tuple(names), []).append(X)
        probabilities += p.tolist()
    assert probabilities == pytest.approx([i / 100 for i in range(1, 9)])
    first = np.vstack(by_names[("amount", "ratio")])
    assert first[:, 0].tolist() == [11.0, 12.0, 13.0, 14.0, 15.0, 16.0] and np.isnan(first[:, 1]).all()
    second = np.vstack(by_names[("amount", "count", "ratio")])
    assert second.tolist() == [[17.0, 7.0, 0.5], [18.0, 8.0, 0.5]]
    assert list(store.decisions.feature_vectors(T0 + timedelta(days=1))) == []
