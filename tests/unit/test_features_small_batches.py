"""The live path in small batches gives exactly the values of the offline batch and of the general path.

The engine prepares a few rows with a short history on plain Python lists and everything else with
numpy, and the memory state gathers and records a few events likewise. Both ways must hand the kernel
the same inputs, so every value here is compared bit for bit, never with a tolerance.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fraudstream.features.engine as engine_module
import fraudstream.state.base as base_module
import fraudstream.state.memory as memory_module
from fraudstream.datasets.generator import GeneratorConfig, generate
from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine
from fraudstream.state import MemoryFeatureState

PATHS = ("default", "lists", "numpy")


@contextmanager
def only(path: str) -> Iterator[None]:
    """Force one preparation for every size ("lists" or "numpy"), or keep the default split, where a
    few new transactions take the compiled path ("timelines": every key's rows lent in time order)."""
    with pytest.MonkeyPatch.context() as mp:
        if path == "timelines":
            mp.setattr(memory_module, "_LONG", 0)
        elif path != "default":
            mp.setattr(engine_module, "few_transactions", lambda *args: False)
            limit = 10**9 if path == "lists" else 0
            for module, name in (
                (engine_module, "FEW"),
                (engine_module, "SHORT"),
                (base_module, "_FEW"),
                (memory_module, "_FEW"),
                (memory_module, "_LONG"),
            ):
                mp.setattr(module, name, limit)
        yield


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


def live(
    engine: FeatureEngine, batch: TransactionBatch, sizes: Sequence[int], path: str = "default"
) -> np.ndarray:
    """The batch fed through a memory state in consecutive parts of ``sizes`` (cycled), each part
    answered with its own labels too, then recorded, then all its labels delivered."""
    state = MemoryFeatureState(retention=engine.feature_set.retention)
    out = np.full((len(batch), len(engine.names)), np.nan)
    start, turn = 0, 0
    while start < len(batch):
        index = np.arange(start, min(start + sizes[turn % len(sizes)], len(batch)))
        part = batch.take(index)
        with only(path):
            out[index] = engine.compute(part, state, labels_from_batch=True)
            assert engine.record(part, state).all()
        state.record_labels(part.transaction_id, part.label_time, part.is_fraud == 1)
        start, turn = int(index[-1]) + 1, turn + 1
    return out


def random_sizes(seed: int) -> list[int]:
    return np.random.default_rng(seed).choice([1, 2, 3, 4, 5, 8, 13, 40], 60).tolist()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sizes", [[1], [2], [3], random_sizes(1), random_sizes(2)], ids=str)
def test_live_batches_match_offline(
    engine: FeatureEngine, batch: TransactionBatch, offline: np.ndarray, sizes: list[int], path: str
) -> None:
    assert_same_bits(live(engine, batch, sizes, path), offline)


@pytest.mark.parametrize("labels_from_batch", [True, False])
def test_offline_batch_same_on_every_path(
    engine: FeatureEngine, batch: TransactionBatch, labels_from_batch: bool
) -> None:
    values = {}
    for path in PATHS:
        with only(path):
            values[path] = engine.compute(batch, labels_from_batch=labels_from_batch)
    assert_same_bits(values["lists"], values["default"])
    assert_same_bits(values["numpy"], values["default"])


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


@pytest.mark.parametrize("path", PATHS)
def test_redelivered_and_repeated_transactions(
    engine: FeatureEngine, batch: TransactionBatch, offline: np.ndarray, path: str
) -> None:
    """Each part arrives with one earlier (recorded) row again and one of its own rows twice."""
    state = MemoryFeatureState(retention=engine.feature_set.retention)
    rng = np.random.default_rng(7)
    for start in range(0, len(batch), 3):
        fresh = np.arange(start, min(start + 3, len(batch)))
        again = rng.integers(0, start, 1) if start else fresh[:0]
        index = np.concatenate([again, fresh, fresh[-1:]])
        part = batch.take(index)
        with only(path):
            values = engine.compute(part, state, labels_from_batch=True)
            new = engine.record(part, state)
        assert_same_bits(values, offline[index])
        assert new.tolist() == [False] * len(again) + [True] * len(fresh) + [False]
        state.record_labels(part.transaction_id, part.label_time, part.is_fraud == 1)


@pytest.mark.parametrize("path", PATHS)
def test_live_matches_offline_across_pruning(engine: FeatureEngine, path: str) -> None:
    """Four months of traffic: the state drops what is past the retention as it goes."""
    config = GeneratorConfig(n_customers=6, n_merchants=3, days=120, seed=5, label_delay_days=2.0)
    batch = TransactionBatch.from_frame(generate(config))
    assert_same_bits(live(engine, batch, random_sizes(3), path), engine.compute(batch))


def tricky_batch(rng: np.random.Generator, n: int) -> TransactionBatch:
    """Ties, NaN times and amounts, missing keys (None or NaN), ids reused with other contents, labels."""

    def objects(pool: list[str], missing: float) -> np.ndarray:
        out = np.empty(n, dtype=object)
        gaps = [None, float("nan")]  # a key column may hold NaN where a frame had it
        out[:] = [
            gaps[int(rng.integers(2))] if rng.random() < missing else pool[int(rng.integers(len(pool)))]
            for _ in range(n)
        ]
        return out

    ts = np.round(rng.uniform(0, 150 * 86400, n) / 3600) * 3600  # long enough for the state to prune
    ts[rng.random(n) < 0.05] = np.nan
    amount = np.round(rng.lognormal(3, 1, n), 2)
    amount[rng.random(n) < 0.05] = np.nan
    lat = np.where(rng.random(n) < 0.5, rng.uniform(40, 50, n), np.nan)
    label_time = ts + rng.uniform(0, 10 * 86400, n)
    label_time[rng.random(n) < 0.2] = np.nan
    return TransactionBatch(
        transaction_id=objects([f"t{i}" for i in range(max(2, int(n * 0.8)))], 0.0),
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


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), in_order=st.booleans())
def test_tricky_live_sequences_agree_on_both_paths(seed: int, n: int, in_order: bool) -> None:
    """Lists and numpy, each with its own state, through the same sequence of parts: some redelivered,
    some with a row twice, some answered with the batch's labels; every value and every record equal."""
    engine = FeatureEngine()
    rng = np.random.default_rng(seed)
    batch = tricky_batch(rng, n)
    if in_order:
        batch = batch.take(np.argsort(batch.timestamp, kind="stable"))
    paths = ("lists", "numpy", "default", "timelines")
    states = {p: MemoryFeatureState(retention=engine.feature_set.retention) for p in paths}
    parts: list[np.ndarray] = []
    start = 0
    while start < n:
        index = np.arange(start, min(n, start + int(rng.choice([1, 1, 2, 3, 4, 8, 30]))))
        start = int(index[-1]) + 1
        if parts and rng.random() < 0.2:
            index = np.concatenate([parts[int(rng.integers(len(parts)))], index])
        if rng.random() < 0.1:
            index = np.concatenate([index, index[:1]])
        parts.append(index)
        part = batch.take(index)
        labels_from_batch = bool(rng.random() < 0.3)
        values, new = {}, {}
        for path, state in states.items():
            with only(path):
                values[path] = engine.compute(part, state, labels_from_batch=labels_from_batch)
                new[path] = engine.record(part, state)
            state.record_labels(part.transaction_id, part.label_time, part.is_fraud == 1)
        for path in paths[1:]:
            assert_same_bits(values[path], values["lists"])
            assert new[path].tolist() == new["lists"].tolist()
    with only("lists"):
        lists = engine.compute(batch)
    with only("numpy"):
        assert_same_bits(lists, engine.compute(batch))


@pytest.mark.parametrize("path", ["default", "timelines"])
def test_equal_times_in_a_few_rows_order_like_the_batch_path(engine: FeatureEngine, path: str) -> None:
    """One customer's events at two times only, each at its own place with its own amount: the few-row
    path must order equal times as the batch path does (held events first, then batch order), or the
    sums and the previous location differ."""
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
    values = {}
    for way in ("lists", path):
        state = MemoryFeatureState(retention=engine.feature_set.retention)
        rows = []
        for index in parts:
            part = whole.take(index)
            with only(way):
                rows.append(engine.compute(part, state))
                engine.record(part, state)
        values[way] = np.vstack(rows)
    assert_same_bits(values[path], values["lists"])
    assert not np.isnan(values["lists"][-1]).all()
