"""Benchmark: ``POST /v1/score`` latency under a fixed request rate, against a real server on loopback.

Starts ``fraudstream serve`` (one uvicorn worker, embedded defaults, its own SQLite file) in a
subprocess, sends requests at ``--rate`` per second for ``--seconds`` (open loop: requests are sent
on schedule whether or not earlier ones finished), and prints latency percentiles as seen by the
client. Needs a model bundle (``--model``, default fraudstream-data/model.fsb: run ``make demo``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


RUN = os.urandom(3).hex()


def body(i: int, start: datetime) -> dict[str, object]:
    rng = np.random.default_rng(i)
    return {
        "transaction_id": f"bench-{RUN}-{i}",
        "timestamp": (start + timedelta(seconds=i)).isoformat(),
        "customer_id": f"C{rng.integers(1, 2000):05d}",
        "merchant_id": f"M{rng.integers(1, 200):04d}",
        "device_id": f"D{rng.integers(1, 3000):05d}",
        "amount": float(np.round(rng.lognormal(3.5, 1.0), 2)),
        "channel": "online",
    }


def request_bytes(host: str, i: int, start: datetime) -> bytes:
    payload = json.dumps(body(i, start)).encode()
    head = (
        f"POST /v1/score HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)


async def load(host: str, port: int, rate: float, seconds: float, first: int = 0) -> list[float]:
    """Open loop: request ``i`` is due at ``i / rate`` and its latency counts from then, so a slow
    server cannot hide its queueing by slowing the client down (no coordinated omission). Requests
    are encoded beforehand and sent over keep-alive connections, so the client costs little CPU."""
    start = datetime.now(UTC)
    n = int(rate * seconds)
    requests = [request_bytes(host, first + i, start) for i in range(n)]
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []

    async def one(i: int, due: float) -> None:
        conn = idle.pop() if idle else await asyncio.open_connection(host, port)
        try:
            await _exchange(*conn, requests[i])
        except (asyncio.IncompleteReadError, ConnectionError):  # the server closed an idle keep-alive
            conn = await asyncio.open_connection(host, port)
            await _exchange(*conn, requests[i])
        latencies.append(time.perf_counter() - due)
        idle.append(conn)

    tasks = []
    t0 = time.perf_counter()
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model", type=Path, default=Path("fraudstream-data/model.fsb"))
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs against the same server; tails vary a lot between runs"
    )
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
        asyncio.run(load("127.0.0.1", port, 20, 2, first=10**9))  # warm-up, with ids of its own
        p99s = []
        for run in range(args.repeat):
            first = run * int(args.rate * args.seconds + 1)
            latencies = np.array(asyncio.run(load("127.0.0.1", port, args.rate, args.seconds, first))) * 1e3
            p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
            p99s.append(p99)
            print(f"POST /v1/score at {args.rate:g}/s for {args.seconds:g} s: {len(latencies):,} requests")
            print(f"latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {latencies.max():.1f}")
    finally:
        server.terminate()
        server.wait(10)
    if args.repeat > 1:
        low, high = min(p99s), max(p99s)
        print(f"p99 over {args.repeat} runs: median {np.median(p99s):.1f} ms, range {low:.1f}-{high:.1f}")


if __name__ == "__main__":
    main()
