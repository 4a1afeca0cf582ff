"""Benchmark: feature-state fetch + record per batch, memory against Redis, on warm state.

Generated traffic is recorded up to ``--warm-days`` (in batches of 5,000), then the next
``--measure`` transactions go through what the live path asks of the state: for each entity of the
feature set, fetch the batch's keys back to the retention, then record the batch. It prints tx/s for
each backend, plus the whole live path (``FeatureEngine.process``) for comparison, and how many history
rows a batch fetched on average: that, not the number of transactions, is what a fetch costs.

    .venv/bin/python benchmarks/state.py --url redis://127.0.0.1:6380/0 --batch 1000
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid

import numpy as np
import pandas as pd

from fraudstream.datasets.generator import GeneratorConfig, generate
from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine
from fraudstream.state import FeatureState, MemoryFeatureState
from fraudstream.state.redis import RedisFeatureState


def fetch_record(engine: FeatureEngine, state: FeatureState, batch: TransactionBatch) -> int:
    """The state calls of one live batch; returns the history rows fetched."""
    rows = 0
    for spec in engine.feature_set.entities:
        keys = getattr(batch, spec.column)
        present = pd.notna(keys)
        if present.any():
            since = float(np.min(batch.timestamp[present])) - engine.feature_set.retention
            rows += len(state.fetch(spec.name, pd.unique(keys[present]), since))
    state.record(batch, engine.entity_columns)
    return rows


def run(
    name: str,
    make: type[FeatureState] | object,
    stream: TransactionBatch,
    warm: int,
    args: argparse.Namespace,
) -> None:
    engine = FeatureEngine()
    for mode in ("state", "process"):
        state: FeatureState = make()  # type: ignore[operator]
        try:
            for lo in range(0, warm, 5000):
                state.record(stream.take(np.arange(lo, min(lo + 5000, warm))), engine.entity_columns)
            end = min(warm + args.measure, len(stream))
            rows, started = 0, time.perf_counter()
            for lo in range(warm, end, args.batch):
                batch = stream.take(np.arange(lo, min(lo + args.batch, end)))
                if mode == "state":
                    rows += fetch_record(engine, state, batch)
                else:
                    engine.process(batch, state)
            elapsed = time.perf_counter() - started
        finally:
            if isinstance(state, RedisFeatureState):
                state.clear()
            state.close()
        n_batches = -(-(end - warm) // args.batch)
        what = "fetch + record" if mode == "state" else "engine.process"
        extra = f", {rows / n_batches:,.0f} history rows per batch" if mode == "state" else ""
        print(f"{name:>6} {what}: {(end - warm) / elapsed:>9,.0f} tx/s{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("FRAUD_TEST_REDIS_URL", "redis://127.0.0.1:6380/0"))
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--merchants", type=int, default=2_000)
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--warm-days", type=float, default=7.0, help="event time recorded before measuring")
    parser.add_argument("--measure", type=int, default=20_000, help="transactions measured")
    args = parser.parse_args()

    frame = generate(GeneratorConfig(n_customers=args.customers, n_merchants=args.merchants, days=args.days))
    stream = TransactionBatch.from_frame(frame)
    warm = int(np.searchsorted(stream.timestamp, stream.timestamp[0] + args.warm_days * 86400.0))
    retention = FeatureEngine().feature_set.retention
    prefix = f"fraudstream:bench:{uuid.uuid4().hex[:8]}:"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"{len(stream):,} generated transactions "
        f"({args.customers:,} customers, {args.merchants:,} merchants), "
        f"{warm:,} warm, {args.measure:,} measured in batches of {args.batch:,}"
    )
    run("memory", lambda: MemoryFeatureState(retention=retention), stream, warm, args)
    run("redis", lambda: RedisFeatureState(args.url, retention=retention, prefix=prefix), stream, warm, args)


if __name__ == "__main__":
    main()
