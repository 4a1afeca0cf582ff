"""Benchmark: the models step of a decision (models, calibration, ensemble, model decision and model
reasons), for one transaction at a time as the API sees them and for batches of 10,000 as a worker
does.

    python benchmarks/models.py --model fraudstream-data/model.fsb
    python benchmarks/models.py --model fraudstream-data/model.fsb --n 10000 --repeat 20

It runs the scorer on generated traffic (the feature state primed with the first days, in batches of
10,000), deciding without recording, with no rules, and reports the scorer's own timings per call,
``model`` plus ``explain``, as median and 90th percentile. One transaction at a time, it sleeps
``--every`` seconds between calls, as a server at about 500 requests a second would, so the models
meet their trees and the interpreter its code out of the caches as they do in service; ``--evict``
also writes that many MiB between calls. ``--weights`` reweights the bundle (for instance to serve an
Isolation Forest its training left out), and ``--threads`` sets the compiled kernels' threads, one by
default as in a worker. Run it on two versions of the code, alternating, to compare them.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from fraudstream._kernels import limit_kernel_threads
from fraudstream.datasets.generator import GeneratorConfig, generate
from fraudstream.events.batch import TransactionBatch
from fraudstream.models.bundle import load_bundle
from fraudstream.pipeline.scorer import Scorer
from fraudstream.rules import EMPTY_RULES
from fraudstream.state import MemoryFeatureState


def weights(text: str) -> dict[str, float]:
    pairs = [item.split("=") for item in text.split(",") if item]
    return {name.strip(): float(value) for name, value in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model bundle (.fsb)")
    parser.add_argument("--n", type=int, default=1, help="transactions per call (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=2000, help="timed calls (default: %(default)s)")
    parser.add_argument(
        "--every", type=float, default=0.0015, help="seconds slept between calls (default: %(default)s)"
    )
    parser.add_argument("--evict", type=int, default=0, help="MiB written between calls (default: 0)")
    parser.add_argument("--weights", type=weights, default=None, help="e.g. xgboost=0.6,logistic=0.4")
    parser.add_argument("--threads", type=int, default=1, help="kernel threads (default: %(default)s)")
    parser.add_argument("--days", type=float, default=20.0, help="days of traffic (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="traffic's random seed (default: %(default)s)")
    args = parser.parse_args()

    threads = limit_kernel_threads(args.threads)
    bundle = load_bundle(args.model)
    if args.weights is not None:
        bundle.manifest.weights = args.weights
    batch = TransactionBatch.from_frame(generate(GeneratorConfig(days=args.days, seed=args.seed)))
    scorer = Scorer(bundle, MemoryFeatureState(retention=60 * 86400.0), lambda: EMPTY_RULES)
    history = int(len(batch) * 0.8)
    for lo in range(0, history, 10_000):
        scorer.score(batch.take(np.arange(lo, min(history, lo + 10_000))))
    rng = np.random.default_rng(args.seed)
    pool = np.arange(history, len(batch))
    if args.n > len(pool):
        raise SystemExit(f"--n {args.n} is more than the {len(pool)} transactions left to score")
    buffer = np.zeros(args.evict * 2**20 // 8)
    for _ in range(3):  # compiled and loaded
        scorer.score(batch.take(rng.choice(pool, size=args.n, replace=False)))

    model, explain, flagged = [], [], 0
    for _ in range(args.repeat):
        rows = batch.take(np.sort(rng.choice(pool, size=args.n, replace=False)))
        if args.every:
            time.sleep(args.every)
        if buffer.size:
            buffer[::8] += 1.0
        scored = scorer.score(rows)
        model.append(scored.timings["model"])
        explain.append(scored.timings["explain"])
        flagged += int((scored.decision != "APPROVE").sum())

    step = np.add(model, explain) * 1e3
    print(
        f"{platform.processor() or platform.machine()}, {threads} kernel thread(s), bundle "
        f"{bundle.manifest.version}, served {sorted(n for n, w in bundle.manifest.weights.items() if w)}"
    )
    print(
        f"{args.repeat} calls of {args.n} transaction(s), {flagged / (args.repeat * args.n):.1%} not approved"
    )
    for name, values in (
        ("model", np.array(model) * 1e3),
        ("explain", np.array(explain) * 1e3),
        ("step", step),
    ):
        median, p90 = np.median(values), np.percentile(values, 90)
        each = f"  ({median / args.n:.2f} µs per transaction)" if args.n > 1 else ""
        print(f"{name:8s} median {median:10.1f} µs  p90 {p90:10.1f} µs{each}")


if __name__ == "__main__":
    main()
