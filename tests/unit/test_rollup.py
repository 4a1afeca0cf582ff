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


def test_a_large_batch_is_counted_as_row_by_row() -> None:
    rng = np.random.default_rng(3)
    probabilities = np.concatenate([EDGES, rng.uniform(0, 1, 200)])
    decisions = [("APPROVE", "FLAG", "BLOCK")[i % 3] for i in range(probabilities.shape[0])]
    for latency in (2.5, None):
        rows = batch_minute_rows(1_700_000_030.0, decisions, probabilities, latency)
        one_by_one = minute_rows(
            (1_700_000_030.0, d, p, latency) for d, p in zip(decisions, probabilities.tolist(), strict=True)
        )
        assert [r[:5] for r in rows] == [r[:5] for r in one_by_one]
        assert [r[5:] for r in rows] == [
            (math.fsum([r[6]] * r[4]) if r[6] else 0.0, r[6]) for r in one_by_one
        ]


def test_latencies_are_counted_as_they_are_stored() -> None:
    assert [stored_total({"total": v}) for v in (1.5, math.nan, math.inf, None)] == [1.5, 0.0, 0.0, 0.0]
    assert stored_total({"features": 1.0}) is None
