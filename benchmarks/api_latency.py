"""Benchmark: ``POST /v1/score`` latency under a fixed request rate, against a real server on loopback.

Starts ``fraudstream serve`` (one uvicorn worker, embedded defaults, its own SQLite file) in a
subprocess, sends requests at ``--rate`` per second for ``--seconds`` (open loop: requests are sent
on schedule whether or not earlier ones finished), and prints latency percentiles as seen by the
client. Needs a model bundle (``--model``, default fraudstream-data/model.fsb: run ``make demo``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body(i: int, start: datetime) -> dict[str, object]:
    rng = np.random.default_rng(i)
    return {
        "transaction_id": f"bench-{i}",
        "timestamp": (start + timedelta(seconds=i)).isoformat(),
        "customer_id": f"C{rng.integers(1, 2000):05d}",
        "merchant_id": f"M{rng.integers(1, 200):04d}",
        "device_id": f"D{rng.integers(1, 3000):05d}",
        "amount": float(np.round(rng.lognormal(3.5, 1.0), 2)),
        "channel": "online",
    }


async def load(base: str, rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    start = datetime.now(UTC)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:

        async def one(i: int) -> None:
            sent = time.perf_counter()
            response = await client.post("/v1/score", json=body(i, start))
            response.raise_for_status()
            latencies.append(time.perf_counter() - sent)

        tasks = []
        t0 = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model", type=Path, default=Path("fraudstream-data/model.fsb"))
    args = parser.parse_args()
    port = free_port()
    workdir = Path(tempfile.mkdtemp())
    env = os.environ | {"FRAUD_DATA_DIR": str(workdir), "FRAUD_MODEL_PATH": str(args.model.resolve())}
    server = subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "serve", "--port", str(port), "--no-with-worker"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        asyncio.run(load(base, 20, 2))  # warm-up
        latencies = np.array(asyncio.run(load(base, args.rate, args.seconds))) * 1e3
    finally:
        server.terminate()
        server.wait(10)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    print(f"POST /v1/score at {args.rate:g}/s for {args.seconds:g} s: {len(latencies):,} requests")
    print(f"latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {latencies.max():.1f}")


if __name__ == "__main__":
    main()
