"""Benchmark: point-in-time features for a whole dataset (by default the Handbook sample, 872,795
transactions, with its default spec).

Run with ``make bench`` (or ``.venv/bin/python benchmarks/features.py --dataset paysim``). It reports the
best of ``--repeat`` runs of the offline path (one batch, no state), after a warm-up run that compiles
the kernels, and the live path's throughput over ``--live`` transactions in batches of ``--batch``
(1,000; 1 gives the cost of one transaction at a time, as ``POST /v1/score`` sees it): the first ones,
or with ``--warm N`` those after the first N, recorded untimed so that the windows are full.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from fraudstream.datasets.registry import load_dataset
from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine, FeatureSet
from fraudstream.state import MemoryFeatureState


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = os.environ.get(
        "FRAUD_DATASETS_DIR", str(Path(__file__).resolve().parents[1] / "../shared/datasets")
    )
    parser.add_argument(
        "--datasets-dir",
        type=Path,
        default=Path(default_dir),
        help="public datasets folder (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs; the best is kept (default: %(default)s)"
    )
    parser.add_argument("--live", type=int, default=100_000, help="transactions for the live-path figure")
    parser.add_argument(
        "--warm", type=int, default=0, help="transactions recorded untimed before the live figure"
    )
    parser.add_argument("--batch", type=int, default=1000, help="live-path batch size (default: %(default)s)")
    parser.add_argument("--dataset", default="handbook", help="dataset by name (default: %(default)s)")
    parser.add_argument(
        "--features", default=None, help="feature spec: a preset or a YAML file (default: the dataset's)"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    frame = load_dataset(args.dataset, args.datasets_dir)
    batch = TransactionBatch.from_frame(frame)
    load = time.perf_counter() - started
    feature_set = FeatureSet.load(args.features or args.dataset).fit(batch)
    engine = FeatureEngine(feature_set)
    engine.compute(batch.take(np.arange(1000)))

    timings = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        values = engine.compute(batch)
        timings.append(time.perf_counter() - started)
    best = min(timings)

    state = MemoryFeatureState(retention=engine.feature_set.retention, schema=engine.schema)
    warm = min(args.warm, len(batch))
    for lo in range(0, warm, 10_000):
        engine.record(batch.take(np.arange(lo, min(lo + 10_000, warm))), state)
    end = min(warm + args.live, len(batch))
    n_live = end - warm
    started = time.perf_counter()
    for lo in range(warm, end, args.batch):
        engine.process(batch.take(np.arange(lo, min(lo + args.batch, end))), state)
    live = time.perf_counter() - started

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.dataset}, {feature_set.describe()}")
    print(f"load + convert: {load:.1f} s for {len(batch):,} transactions")
    print(
        f"offline features: {values.shape[1]} features × {len(batch):,} rows in {best:.1f} s "
        f"(best of {args.repeat}: {', '.join(f'{t:.1f}' for t in timings)}) = {len(batch) / best:,.0f} tx/s"
    )
    print(
        f"live path (memory state, batches of {args.batch:,}, after {warm:,}): {n_live:,} in {live:.1f} s = "
        f"{n_live / live:,.0f} tx/s, {live / n_live * 1e6:.1f} µs a transaction"
    )


if __name__ == "__main__":
    main()
