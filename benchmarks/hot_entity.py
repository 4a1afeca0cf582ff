"""Benchmark: the features of one transaction against an entity with a long history (a busy merchant).

Every feature looks back over its entity's events within the retention, so the cost of scoring one
transaction grows with the history of the busiest entity it names. This records ``--history`` events for
one merchant (spread over 19 days, in time order, customers and devices drawn at random), then times
``FeatureEngine.compute`` for a batch of one naming that merchant: the live path of ``POST /v1/score``.
``--late`` makes that share of the recorded events arrive out of time order, as from several producers.

    .venv/bin/python benchmarks/hot_entity.py --history 0 1000 10000 50000 --late 0.001
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from fraudstream.events import normalize_frame
from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine
from fraudstream.state import FeatureState, MemoryFeatureState
from fraudstream.state.redis import RedisFeatureState

T0 = 1.7e9
SPAN = 19 * 86_400.0


def batch(times: np.ndarray, start: int, rng: np.random.Generator) -> TransactionBatch:
    n = times.shape[0]
    frame = pd.DataFrame(
        {
            "transaction_id": [f"h{start + i}" for i in range(n)],
            "timestamp": pd.to_datetime(times, unit="s", utc=True),
            "customer_id": [f"C{c}" for c in rng.integers(0, 5_000, n)],
            "merchant_id": ["HOT"] * n,
            "device_id": [f"D{d}" for d in rng.integers(0, 8_000, n)],
            "amount": np.round(rng.lognormal(3.5, 1.0, n), 2),
        }
    )
    return TransactionBatch.from_frame(normalize_frame(frame))


def measure(engine: FeatureEngine, state: FeatureState, histories: list[int], late: float, n: int) -> None:
    rng = np.random.default_rng(0)
    have = 0
    for target in histories:
        times = T0 + np.linspace(have, target, target - have, endpoint=False) * (SPAN / max(histories))
        swap = rng.random(times.shape[0]) < late
        times[swap] = times[swap] - rng.uniform(0, SPAN / 10, int(swap.sum()))
        for lo in range(0, times.shape[0], 2_000):
            engine.record(batch(times[lo : lo + 2_000], have + lo, rng), state)
        have = target
        costs = []
        for i in range(n):
            one = batch(np.array([T0 + SPAN + i]), 10**9 + i, rng)
            started = time.perf_counter()
            engine.compute(one, state)
            costs.append(time.perf_counter() - started)
        p50, p90 = np.percentile(costs, [50, 90]) * 1e3
        print(
            f"merchant history {target:>7,}: features of one transaction p50 {p50:.2f} ms, p90 {p90:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=int, nargs="+", default=[0, 1_000, 10_000, 50_000])
    parser.add_argument("--late", type=float, default=0.001, help="share of events arriving out of order")
    parser.add_argument("--n", type=int, default=500, help="transactions timed per history length")
    parser.add_argument("--url", default="memory://", help="feature state: memory:// or redis://…")
    args = parser.parse_args()
    engine = FeatureEngine()
    retention = engine.feature_set.retention
    if args.url.startswith("redis"):
        state: FeatureState = RedisFeatureState(args.url, retention=retention, schema=engine.schema)
    else:
        state = MemoryFeatureState(retention, schema=engine.schema)
    try:
        measure(engine, state, sorted(args.history), args.late, args.n)
    finally:
        state.close()


if __name__ == "__main__":
    main()
