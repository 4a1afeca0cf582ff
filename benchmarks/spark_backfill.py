"""Benchmark: `fraudstream features` on the Handbook sample with the local engine and with Spark in
local mode, alternating, each as the command a user runs (a fresh process, Spark's start-up included).

Run with ``.venv/bin/python benchmarks/spark_backfill.py`` (needs Java 17+ and the datasets folder in
FRAUD_DATASETS_DIR). It prints each run's wall time and the rows per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def run(engine: str, args: argparse.Namespace, out: Path) -> tuple[float, int]:
    command = [str(Path(sys.executable).parent / "fraudstream"), "features", "--dataset", args.dataset]
    command += ["--engine", engine, "--out", str(out), "--json"]
    if engine == "spark":
        command += ["--master", args.master]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{done.stderr[-2000:]}")
    return seconds, int(json.loads(done.stdout)["rows"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="handbook", help="dataset by name (default: %(default)s)")
    parser.add_argument("--master", default="local[2]", help="Spark master (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each engine (default: %(default)s)")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d}, commit: {commit.stdout.strip() or '?'}")
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.repeat):
            for engine, out in (("local", "local.parquet"), ("spark", "spark.parquet")):
                seconds, rows = run(engine, args, Path(folder) / f"{round_}-{out}")
                rate = rows / seconds
                print(f"{engine:<6} run {round_ + 1}: {seconds:6.1f} s, {rate:,.0f} rows/s ({rows:,} rows)")


if __name__ == "__main__":
    main()
