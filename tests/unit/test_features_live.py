"""The live path, in batches of every size, gives exactly the values of the offline batch, and what the
brute-force reference gives for the events the state had seen: redeliveries, a row twice, late events,
ties, missing times, amounts and keys, labels from the state and from the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.datasets.generator import GeneratorConfig, generate
from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine
from fraudstream.state import MemoryFeatureState
from tests.specs import reference
from tests.unit.test_feature_specs import assert_close


def assert_same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    differ = got.view(np.int64) != expected.view(np.int64)
    assert not differ.any(), f"{int(differ.sum())} values differ, first at {np.argwhere(differ)[0]}"


@pytest.fixture(scope="module")
def engine() -> FeatureEngine:
    return FeatureEngine()


@pytest.fixture(scope="module")
def batch() -> TransactionBatch:
    # Few merchants, so their histories outgrow the list path while customers' stay short.
    config = GeneratorConfig(n_customers=40, n_merchants=8, days=6, seed=3, label_delay_days=1.0)
    return TransactionBatch.from_frame(generate(config))


@pytest.fixture(scope="module")
def offline(engine: FeatureEngine, batch: TransactionBatch) -> np.ndarray:
    return engine.compute(batch)


def live(engine: FeatureEngine, batch: TransactionBatch, sizes: Sequence[int]) -> np.ndarray:
    """The batch fed through a memory state in consecutive parts of ``sizes`` (cycled), each part
    answered with its own labels too, then recorded, then all its labels delivered."""
    state = MemoryFeatureState(retention=engine.feature_set.retention)
    out = np.full((len(batch), len(engine.names)), np.nan)
    start, turn = 0, 0
    while start < len(batch):
        index = np.arange(start, min(start + sizes[turn % len(sizes)], len(batch)))
        part = batch.take(index)
        out[index] = engine.compute(part, state, labels_from_batch=True)
        assert engine.record(part, state).all()
        state.record_labels(part.transaction_id, part.label_time, part.is_fraud == 1)
        start, turn = int(index[-1]) + 1, turn + 1
    return out


def random_sizes(seed: int) -> list[int]:
    return np.random.default_rng(seed).choice([1, 2, 3, 4, 5, 8, 13, 40], 60).tolist()


@pytest.mark.parametrize("sizes", [[1], [2], [3], random_sizes(1), random_sizes(2), [500]], ids=str)
def test_live_batches_match_offline(
    engine: FeatureEngine, batch: TransactionBatch, offline: np.ndarray, sizes: list[int]
) -> None:
    assert_same_bits(live(engine, batch, sizes), offline)


def test_process_one_at_a_time_matches_offline(
    engine: FeatureEngine, batch: TransactionBatch, offline: np.ndarray
) -> None:
    """The API's path: one transaction per batch, labels only from the state once they arrive."""
    state = MemoryFeatureState(retention=engine.feature_set.retention)
    rows = []
    for i in range(len(batch)):
        one = batch.take(np.array([i]))
        values, new = engine.process(one, state)
        assert new.tolist() == [True]
        rows.append(values[0])
        state.record_labels(one.transaction_id, one.label_time, one.is_fraud == 1)
    assert_same_bits(np.array(rows), offline)


def test_redelivered_and_repeated_transactions(
    engine: FeatureEngine, batch: TransactionBatch, offline: np.ndarray
) -> None:
    """Each part arrives with one earlier (recorded) row again and one of its own rows twice."""
    state = MemoryFeatureState(retention=engine.feature_set.retention)
    rng = np.random.default_rng(7)
    for start in range(0, len(batch), 3):
        fresh = np.arange(start, min(start + 3, len(batch)))
        again = rng.integers(0, start, 1) if start else fresh[:0]
        index = np.concatenate([again, fresh, fresh[-1:]])
        part = batch.take(index)
        values = engine.compute(part, state, labels_from_batch=True)
        new = engine.record(part, state)
        assert_same_bits(values, offline[index])
        assert new.tolist() == [False] * len(again) + [True] * len(fresh) + [False]
        state.record_labels(part.transaction_id, part.label_time, part.is_fraud == 1)


def test_live_matches_offline_across_pruning(engine: FeatureEngine) -> None:
    """Four months of traffic: the state drops what is past the retention as it goes."""
    config = GeneratorConfig(n_customers=6, n_merchants=3, days=120, seed=5, label_delay_days=2.0)
    batch = TransactionBatch.from_frame(generate(config))
    assert_same_bits(live(engine, batch, random_sizes(3)), engine.compute(batch))


def tricky_batch(
    rng: np.random.Generator, n: int, *, reused: bool = True, timeless: bool = True, days: float = 150
) -> TransactionBatch:
    """Ties, NaN amounts, missing keys (None or NaN), labels over ``days``; NaN times when
    ``timeless``, ids reused with other contents when ``reused``."""

    def objects(pool: list[str], missing: float) -> np.ndarray:
        out = np.empty(n, dtype=object)
        gaps = [None, float("nan")]  # a key column may hold NaN where a frame had it
        out[:] = [
            gaps[int(rng.integers(2))] if rng.random() < missing else pool[int(rng.integers(len(pool)))]
            for _ in range(n)
        ]
        return out

    ts = np.round(rng.uniform(0, days * 86400, n) / 3600) * 3600  # 150 days: the state prunes
    if timeless:
        ts[rng.random(n) < 0.05] = np.nan
    amount = np.round(rng.lognormal(3, 1, n), 2)
    amount[rng.random(n) < 0.05] = np.nan
    lat = np.where(rng.random(n) < 0.5, rng.uniform(40, 50, n), np.nan)
    label_time = ts + rng.uniform(0, 10 * 86400, n)
    label_time[rng.random(n) < 0.2] = np.nan
    return TransactionBatch(
        transaction_id=objects([f"t{i}" for i in range(max(2, int(n * 0.8)))], 0.0)
        if reused
        else np.array([f"t{i}" for i in range(n)], dtype=object),
        timestamp=ts,
        amount=amount,
        customer_id=objects(["c1", "c2", "c3", "c4", "c5"], 0.05),
        merchant_id=objects(["m1", "m2"], 0.2),
        device_id=objects(["d1", "d2", "d3"], 0.3),
        ip_address=objects(["i1", "i2"], 0.3),
        country=objects(["FR", "DE"], 0.1),
        latitude=lat,
        longitude=np.where(np.isnan(lat), np.nan, rng.uniform(0, 10, n)),
        account_created_at=ts - 30 * 86400,
        is_fraud=(rng.random(n) < 0.3).astype(np.float64),
        label_time=label_time,
    )


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 120), in_order=st.booleans())
def test_tricky_live_sequences_match_the_reference(seed: int, n: int, in_order: bool) -> None:
    """Parts of every size, some redelivered, some with a row twice, late events when out of order,
    answered with the state's labels and the part's own: each part's values are what the brute-force
    reference gives over the events recorded before it and the part itself."""
    engine = FeatureEngine()
    rng = np.random.default_rng(seed)
    whole = tricky_batch(rng, n, reused=False, timeless=False, days=50)  # nothing pruned
    if in_order:
        whole = whole.take(np.argsort(whole.timestamp, kind="stable"))
    state = MemoryFeatureState(retention=engine.feature_set.retention)
    seen: list[int] = []  # rows recorded, in arrival order
    start = 0
    while start < n:
        fresh = np.arange(start, min(n, start + int(rng.choice([1, 1, 2, 3, 4, 8, 30, 70]))))
        start = int(fresh[-1]) + 1
        again = rng.choice(seen, size=min(len(seen), int(rng.integers(0, 3))), replace=False) if seen else []
        index = np.concatenate([np.asarray(again, dtype=np.int64), fresh])
        if rng.random() < 0.2:
            index = np.concatenate([index, index[:1]])
        part = whole.take(index)
        values = engine.compute(part, state, labels_from_batch=True)
        new = engine.record(part, state)
        assert new.tolist() == [
            int(i) not in seen and int(i) not in index[:k].tolist() for k, i in enumerate(index)
        ]
        visible = seen + [int(i) for i in fresh]
        want = reference(whole.take(np.array(visible)), engine.feature_set)
        where = {row: k for k, row in enumerate(visible)}
        assert_close(values, want[[where[int(i)] for i in index]], engine.names)
        seen += [int(i) for i in fresh]
        state.record_labels(part.transaction_id, part.label_time, part.is_fraud == 1)


def test_equal_times_order_stored_events_first_then_the_batch(engine: FeatureEngine) -> None:
    """One customer's events at three times only, each at its own place with its own amount: among
    equal times the stored events come first, then the batch's rows in batch order, as the whole
    stream at once orders them; the sums and the previous location depend on it."""
    rng = np.random.default_rng(4)
    n = 24
    ts = 1_700_000_000.0 + 3600.0 * (np.arange(n) >= n // 2) + 7200.0 * (np.arange(n) >= n - 4)
    ids = np.empty(n, dtype=object)
    ids[:] = [f"t{i}" for i in range(n)]
    same = np.empty(n, dtype=object)
    same[:] = ["c1"] * n
    whole = TransactionBatch(
        transaction_id=ids,
        timestamp=ts,
        amount=rng.uniform(1, 1000, n),
        customer_id=same,
        merchant_id=same,
        device_id=same,
        ip_address=same,
        country=same,
        latitude=rng.uniform(40, 50, n),
        longitude=rng.uniform(0, 10, n),
        account_created_at=ts - 86400.0,
        is_fraud=np.zeros(n),
        label_time=np.full(n, np.nan),
    )
    parts = [np.arange(0, 8), np.arange(8, 10), np.arange(10, 16), np.arange(16, 20), np.arange(20, n)]
    state = MemoryFeatureState(retention=engine.feature_set.retention)
    rows = []
    for index in parts:
        part = whole.take(index)
        rows.append(engine.compute(part, state))
        engine.record(part, state)
    assert_same_bits(np.vstack(rows), engine.compute(whole))
    assert_close(np.vstack(rows), reference(whole, engine.feature_set), engine.names)


def test_a_row_without_a_time_reads_no_stored_history_for_its_batch(engine: FeatureEngine) -> None:
    """A kept quirk: the window of a batch starts ``retention`` before its earliest time, and a row
    without a time leaves no start, so its key entries read no stored events for that batch."""
    rng = np.random.default_rng(5)
    whole = tricky_batch(rng, 40, reused=False, timeless=False)
    whole = whole.take(np.argsort(whole.timestamp, kind="stable"))
    state = MemoryFeatureState(retention=engine.feature_set.retention)
    engine.record(whole.take(np.arange(30)), state)
    last = whole.take(np.arange(30, 40))
    with_history = engine.compute(last, state)
    times = last.timestamp.copy()
    times[0] = np.nan
    last = dataclasses.replace(last, timestamp=times)
    blind = engine.compute(last, state)
    alone = engine.compute(
        last, MemoryFeatureState(retention=engine.feature_set.retention), labels_from_batch=False
    )
    assert_same_bits(blind, alone)
    assert not np.array_equal(with_history[1:], blind[1:], equal_nan=True)
