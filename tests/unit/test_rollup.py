"""The per-minute chart counts: score bins and latencies as stored decisions and migration 0005 have them."""

from __future__ import annotations

import math

import numpy as np

from fraudstream.storage.rollup import SCORE_BINS, batch_minute_rows, minute_rows, score_bin
from fraudstream.storage.rows import stored_total

EDGES = [0.0, 0.0499, 0.05, 0.5, 0.95, 0.9999, 1.0, 1.5, -0.2, math.nan, math.inf, -math.inf]


def test_score_bins_are_clamped_and_nan_goes_to_the_top() -> None:
    bins = [score_bin(p) for p in EDGES]
    assert bins == [0, 0, 1, 10, 19, 19, 19, 19, 0, 19, 19, 0]
    assert all(0 <= b < SCORE_BINS for b in bins)


def test_a_batch_of_any_size_is_counted_as_row_by_row() -> None:
    rng = np.random.default_rng(3)
    everything = np.concatenate([EDGES, rng.uniform(0, 1, 200)])
    for size in (1, 2, len(EDGES), len(everything)):
        probabilities = everything[:size]
        decisions = [("APPROVE", "FLAG", "BLOCK")[i % 3] for i in range(size)]
        for latency in (2.5, 0.1, None):  # 0.1 added up in turn is not 0.1 times the count
            rows = batch_minute_rows(1_700_000_030.0, decisions, probabilities, latency)
            one_by_one = minute_rows(
                (1_700_000_030.0, d, p, latency)
                for d, p in zip(decisions, probabilities.tolist(), strict=True)
            )
            assert rows == one_by_one


def test_latencies_are_counted_as_they_are_stored() -> None:
    assert [stored_total({"total": v}) for v in (1.5, math.nan, math.inf, None)] == [1.5, 0.0, 0.0, 0.0]
    assert stored_total({"features": 1.0}) is None
