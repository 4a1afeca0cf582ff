"""The memory state's two ways of gathering a fetch, key by key and by one scan of the log's codes,
give the same history: same runs, same rows in the same order, same labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudstream.events.batch import TransactionBatch
from fraudstream.state import MemoryFeatureState
from fraudstream.state import memory as memory_module
from fraudstream.state.base import CODE, CODED_FIELDS, EVENT_FIELDS, History

DAY = 86400.0
ENTITIES = {"customer": "customer_id", "device": "device_id"}


def random_batch(rng: np.random.Generator, start: int, n: int, t0: float) -> TransactionBatch:
    """Times mostly rising with jitter (so some arrive out of order), a few NaN; devices often missing."""
    times = t0 + np.sort(rng.uniform(0, DAY, n)) + rng.normal(0, 3600, n)
    times[rng.random(n) < 0.02] = np.nan
    devices = np.array([f"d{k}" if k % 4 else None for k in rng.integers(0, 60, n)], dtype=object)
    return TransactionBatch(
        transaction_id=np.array([f"t{start + i}" for i in range(n)], dtype=object),
        timestamp=times,
        amount=rng.uniform(1, 500, n),
        customer_id=np.array([f"c{k}" for k in rng.integers(0, 40, n)], dtype=object),
        merchant_id=np.array([f"m{k}" for k in rng.integers(0, 9, n)], dtype=object),
        device_id=devices,
        ip_address=np.full(n, None, dtype=object),
        country=np.full(n, "FR", dtype=object),
        latitude=np.full(n, np.nan),
        longitude=np.full(n, np.nan),
        account_created_at=np.full(n, t0 - 100 * DAY),
        is_fraud=(rng.random(n) < 0.1).astype(np.float64),
        label_time=times + DAY,
    )


def fetched(state: MemoryFeatureState, entity: str, asked: np.ndarray, since: float) -> History:
    history = state.fetch(entity, asked, since)
    return History(
        runs=list(history.runs),
        events={f: np.asarray(history.events[f]) for f in (*EVENT_FIELDS, *(CODE + f for f in CODED_FIELDS))},
        label_key=history.label_key,
        label_tx_time=history.label_tx_time,
        label_time=history.label_time,
    )


def same(a: History, b: History) -> None:
    assert a.runs == b.runs
    for field, column in a.events.items():
        np.testing.assert_array_equal(column, b.events[field], err_msg=field)
    np.testing.assert_array_equal(a.label_key, b.label_key)
    np.testing.assert_array_equal(a.label_tx_time, b.label_tx_time)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_scan_of_the_codes_gathers_what_the_key_lists_gather(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    state = MemoryFeatureState(retention=3 * DAY, grace=DAY)
    t0 = 1.7e9
    for day in range(8):  # long enough to prune and renumber the codes on the way
        b = random_batch(rng, day * 400, 400, t0 + day * DAY)
        state.record({f: getattr(b, f) for f in EVENT_FIELDS}, ENTITIES)
        state.record_labels(b.transaction_id, b.label_time, b.is_fraud)
        for entity, field in ENTITIES.items():
            values = [*{v for v in getattr(b, field).tolist() if v is not None}, "never-seen"]
            asked = np.array(rng.permutation(values)[: rng.integers(1, len(values) + 1)], dtype=object)
            for since in (-math.inf, t0 + (day - 1) * DAY, math.nan):
                monkeypatch.setattr(memory_module, "ROWS_PER_KEY", 0)
                by_key = fetched(state, entity, asked, since)
                monkeypatch.setattr(memory_module, "ROWS_PER_KEY", 10**9)
                scanned = fetched(state, entity, asked, since)
                same(scanned, by_key)
                assert len(by_key) > 0 or math.isnan(since)
