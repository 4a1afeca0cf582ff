"""The rules' storage on SQLite and PostgreSQL: versions, the rules version each decision records (by the
multi-row INSERT and by COPY), and the history a backtest reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fraudstream.events import Label, Transaction
from fraudstream.events.decision import DecisionColumns
from fraudstream.storage import Store

MANY = 200
"""Rows in a batch as a worker writes one."""


T0 = datetime(2024, 5, 1, tzinfo=UTC)


def batch(prefix: str, n: int, rules_version: str | None) -> DecisionColumns:
    return DecisionColumns(
        transaction_id=np.array([f"{prefix}{i:04d}" for i in range(n)], dtype=object),
        customer_id=np.array(["c1"] * n, dtype=object),
        timestamp=T0.timestamp() + np.arange(n) * 60.0,
        amount=np.arange(n, dtype=np.float64) + 1.0,
        decision=np.array(["APPROVE"] * n, dtype=object),
        probability=np.full(n, 0.1),
        reasons=[[] for _ in range(n)],
        rules=[["shadow:watch"] if i % 2 else [] for i in range(n)],
        features=np.arange(n * 2, dtype=np.float64).reshape(n, 2),
        feature_names=["f0", "f1"],
        model_version="m1",
        latency_ms={"total": 1.0},
        rules_version=rules_version,
    )


@pytest.mark.parametrize("n", [3, MANY + 3], ids=["insert", "copy"])
def test_each_decision_records_its_rules_version(store: Store, n: int) -> None:
    store.decisions.save(batch("a", n, "7"))
    store.decisions.save(batch("b", n, "0f3c2a9d1e4b").records())
    store.decisions.save(batch("c", n, None))
    got = store.decisions.get_many(["a0001", "b0001", "c0001"])
    assert [got[k].rules_version for k in ("a0001", "b0001", "c0001")] == ["7", "0f3c2a9d1e4b", None]
    assert got["a0001"].rules == ["shadow:watch"]


def test_versions_are_numbered_and_seeded_once(store: Store) -> None:
    repo = store.rules
    assert repo.seed("rules: []\n", "seed:rules.yaml") is not None
    assert repo.seed("rules: []\n") is None
    assert [repo.save(f"# {i}\nrules: []\n", "lead").version for i in range(3)] == [2, 3, 4]
    newest = repo.get()
    assert newest is not None and newest.version == 4 and newest.text.startswith("# 2")
    assert newest.created_at.tzinfo is not None


def test_a_backtest_reads_decisions_with_bodies_and_the_labels_known(store: Store) -> None:
    cols = batch("h", 4, "1")
    bodies = [
        Transaction(transaction_id=f"h{i:04d}", timestamp=T0 + timedelta(minutes=i), customer_id="c1",
                    amount=float(i) + 1.0, device_id=f"d{i}")
        for i in range(3)
    ]  # fmt: skip
    store.decisions.save(cols, bodies)
    store.labels.add([Label(transaction_id="h0001", is_fraud=True, label_time=T0 + timedelta(days=2))])
    store.labels.add([Label(transaction_id="h0002", is_fraud=False, label_time=T0 + timedelta(days=2))])
    [chunk] = list(store.rules.decided(T0, T0 + timedelta(days=1)))
    assert chunk["transaction_id"].tolist() == ["h0000", "h0001", "h0002", "h0003"]
    assert chunk["fraud"].tolist() == [False, True, False, False]
    assert chunk["labelled"].tolist() == [False, True, True, False]
    assert [p["device_id"] if p else None for p in chunk["payload"]] == ["d0", "d1", "d2", None]
    assert np.frombuffer(chunk["feature_values"][3], dtype="<f8").tolist() == [6.0, 7.0]
