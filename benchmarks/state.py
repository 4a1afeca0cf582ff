"""Benchmark: feature-state reads + record per batch, memory against Redis, on warm state.

Generated traffic is recorded up to ``--warm-days`` (in batches of 5,000), then the next
``--measure`` transactions go through what the live path asks of the state: the batch's identifier
codes and stored positions, the event columns and each entity's index, then record the batch. It
prints tx/s for each backend, plus the whole live path (``FeatureEngine.process``) for comparison, and
how many stored events a batch's keys hold on average: what the features then read.

Each process replays the Redis state's log into a replica of its own, so its first read reads the whole
log and later reads only what arrived since. ``--prime`` makes that first read before measuring
(untimed), as a long-running worker would have; without it the first measured batch includes it.

    .venv/bin/python benchmarks/state.py --url redis://127.0.0.1:6380/0 --batch 1000 10000 --prime
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid
from collections.abc import Callable

import numpy as np

from fraudstream.datasets.generator import GeneratorConfig, generate
from fraudstream.events.batch import TransactionBatch
from fraudstream.features import FeatureEngine
from fraudstream.state import FeatureState, MemoryFeatureState
from fraudstream.state.redis import RedisFeatureState


def read_record(engine: FeatureEngine, state: FeatureState, batch: TransactionBatch) -> int:
    """The state calls of one live batch; returns the stored events its keys hold."""
    rows = 0
    events = engine.feature_set.events(batch)
    with state.reading():
        codes = {f: state.codes(f, events[f]) for f in engine.schema.ids}
        state.positions(events["transaction_id"])
        state.columns()
        for group in engine.feature_set.groups:
            index = state.index(group.name)
            if index is not None:
                asked = np.unique(codes[group.column])
                asked = asked[(asked >= 0) & (asked < index.length.shape[0])]
                rows += int(index.length[asked].sum())
    state.record(events, engine.entity_columns)
    return rows


def prime(state: FeatureState) -> None:
    """Catch up with everything recorded so far, as a worker that has been running would have."""
    state.columns()


def run(
    backends: dict[str, Callable[[], FeatureState]],
    stream: TransactionBatch,
    warm: int,
    size: int,
    args: argparse.Namespace,
) -> None:
    """Each batch goes to every backend in turn, so a busy machine slows them alike."""
    engine = FeatureEngine()
    for mode in ("state", "process"):
        states = {name: make() for name, make in backends.items()}
        try:
            for state in states.values():
                for lo in range(0, warm, 5000):
                    engine.record(stream.take(np.arange(lo, min(lo + 5000, warm))), state)
                if args.prime:
                    prime(state)
            end = min(warm + args.measure, len(stream))
            elapsed, rows = dict.fromkeys(states, 0.0), 0
            for lo in range(warm, end, size):
                batch = stream.take(np.arange(lo, min(lo + size, end)))
                for name, state in states.items():
                    started = time.perf_counter()
                    if mode == "state":
                        fetched = read_record(engine, state, batch)
                    else:
                        engine.process(batch, state)
                    elapsed[name] += time.perf_counter() - started
                rows += fetched if mode == "state" else 0
        finally:
            for state in states.values():
                if isinstance(state, RedisFeatureState):
                    state.clear()
                state.close()
        n_batches = -(-(end - warm) // size)
        what = "reads + record" if mode == "state" else "engine.process"
        extra = f", {rows / n_batches:,.0f} stored events per batch's keys" if mode == "state" else ""
        for name, seconds in elapsed.items():
            print(f"{name:>6} {what}: {(end - warm) / seconds:>9,.0f} tx/s{extra}", flush=True)
        if len(elapsed) == 2:
            (base, first), (other, second) = elapsed.items()
            print(f"  {other} takes {second / first:.2f}x the time of {base}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("FRAUD_TEST_REDIS_URL", "redis://127.0.0.1:6380/0"),
        help="Redis holding the state (default: $FRAUD_TEST_REDIS_URL, else redis://127.0.0.1:6380/0)",
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1000], help="batch sizes to measure")
    parser.add_argument(
        "--customers", type=int, default=20_000, help="distinct customers (default: %(default)s)"
    )
    parser.add_argument(
        "--merchants", type=int, default=2_000, help="distinct merchants (default: %(default)s)"
    )
    parser.add_argument(
        "--days", type=float, default=10.0, help="event time generated (default: %(default)s)"
    )
    parser.add_argument("--warm-days", type=float, default=7.0, help="event time recorded before measuring")
    parser.add_argument("--measure", type=int, default=20_000, help="transactions measured")
    parser.add_argument(
        "--prime", action="store_true", help="catch up with the warm traffic before measuring"
    )
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
        f"{warm:,} warm, {args.measure:,} measured{', caught up' if args.prime else ''}"
    )
    for size in args.batch:
        print(f"batches of {size:,}:")
        backends: dict[str, Callable[[], FeatureState]] = {
            "memory": lambda: MemoryFeatureState(retention=retention),
            "redis": lambda: RedisFeatureState(args.url, retention=retention, prefix=prefix),
        }
        run(backends, stream, warm, size, args)


if __name__ == "__main__":
    main()
