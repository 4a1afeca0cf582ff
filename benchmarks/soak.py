"""Benchmark: a long soak of ``POST /v1/score`` at a fixed rate, the server's memory and tail over time.

Starts ``fraudstream serve`` (one process, no embedded worker) on the database ``--database`` (default:
its own SQLite file), sends the demo generator's transactions at ``--rate`` per second for
``--minutes`` open loop (``loadgen.c``, as ``api_latency.py`` does), and prints, for every 30-second
window of the run, the latency percentiles of the requests due in it and the server's resident memory
at its end; then the whole run's p50, p99, p99.9 and maximum, the server's CPU per request, how much
its memory grew per decision, and the requests refused or not sent (an overloaded server).

    .venv/bin/python benchmarks/soak.py --rate 300 --minutes 10 \\
        --database postgresql://fraudstream:fraudstream@127.0.0.1:5433/fraudstream
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from api_latency import (  # the same machinery as the latency benchmark
    WARM_UP,
    cpu_seconds,
    free_port,
    generated,
    load,
    loadgen,
    request_bytes,
    wait_ready,
)

WINDOW = 30.0
"""Seconds per line of the report."""


def rss_mb(pid: int) -> float | None:
    """A process's resident memory in MB (Linux), else None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate", type=float, default=300.0, help="requests per second (default: %(default)s)"
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="length of the soak (default: %(default)s)"
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=Path("fraudstream-data/model.fsb"),
        help="model bundle (default: %(default)s)",
    )
    parser.add_argument("--database", help="FRAUD_DATABASE_URL (default: a SQLite file of the run's own)")
    args = parser.parse_args()
    binary = loadgen()
    total = int(args.rate * args.minutes * 60)
    rows = generated(WARM_UP + total)
    port = free_port()
    workdir = Path(tempfile.mkdtemp())
    env = os.environ | {"FRAUD_DATA_DIR": str(workdir), "FRAUD_MODEL_PATH": str(args.model.resolve())}
    if args.database:
        env["FRAUD_DATABASE_URL"] = args.database
    server = subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "serve", "--port", str(port), "--no-with-worker"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    memory: list[tuple[float, float | None]] = []
    try:
        wait_ready(f"http://127.0.0.1:{port}/ready")
        load(binary, port, 20, rows[:WARM_UP], workdir)
        requests = workdir / "soak.bin"
        with requests.open("wb") as out:
            for payload in rows[WARM_UP:]:
                request = request_bytes("127.0.0.1", payload)
                out.write(struct.pack("<I", len(request)) + request)
        started, cpu0, rss0 = time.monotonic(), cpu_seconds(server.pid), rss_mb(server.pid)
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(WINDOW):
                memory.append((time.monotonic() - started, rss_mb(server.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run = subprocess.run(
            [str(binary), "127.0.0.1", str(port), str(args.rate), str(requests)],
            capture_output=True,
            text=True,
        )
        stop.set()
        cpu1, rss1 = cpu_seconds(server.pid), rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    answered = np.array(run.stdout.split(), dtype=float).reshape(-1, 2)
    due, latency = answered[:, 0], answered[:, 1] / 1e3
    print(f"POST /v1/score at {args.rate:g}/s for {args.minutes:g} min: {run.stderr.strip()}")
    print(f"{'window':>9} {'p50':>7} {'p99':>7} {'p99.9':>7} {'max':>8} {'RSS MB':>8}")
    for k, (at, rss) in enumerate(memory):
        lat = latency[(due >= k * WINDOW) & (due < (k + 1) * WINDOW)]
        if lat.size:
            p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
            shown = "-" if rss is None else f"{rss:.0f}"
            print(f"{at:>8.0f}s {p50:>7.1f} {p99:>7.1f} {p999:>7.1f} {lat.max():>8.1f} {shown:>8}")
    p50, p99, p999 = np.percentile(latency, [50, 99, 99.9])
    print(f"whole run, ms: p50 {p50:.1f}  p99 {p99:.1f}  p99.9 {p999:.1f}  max {latency.max():.1f}")
    if cpu0 is not None and cpu1 is not None:
        print(f"server CPU {(cpu1 - cpu0) / len(latency) * 1e3:.2f} ms per request")
    if rss0 is not None and rss1 is not None:
        grown = (rss1 - rss0) * 1024 / len(latency)
        print(f"server memory {rss0:.0f} -> {rss1:.0f} MB: {grown:.2f} KB per decision")


if __name__ == "__main__":
    main()
