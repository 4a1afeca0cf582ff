"""Benchmark: ``POST /v1/score`` latency under a fixed request rate, against a real server on loopback.

Starts ``fraudstream serve`` (one uvicorn worker, embedded defaults, its own SQLite file) in a
subprocess and sends requests at ``--rate`` per second for ``--seconds``, open loop: each request is
due at a fixed time and its latency counts from then, so a slow server cannot hide its queueing by
slowing the client down (no coordinated omission). The client is ``loadgen.c``, compiled on first use
with the system C compiler (``CC``, default ``cc``): a Python client on the same cores added pauses of
its own (p99 4-16 ms against a server answering a canned response in 0.4 ms).

Prints latency percentiles as seen by the client and, on Linux, the server's CPU time per request
and the CPU time the hypervisor took from this machine meanwhile ("steal"), which on a shared
virtual machine explains much of the run-to-run spread. With ``--floor`` each run is followed by the
same load against a uvicorn app that answers a canned body and does nothing else: the latency this
machine gives a server at that moment, to read the real figures against. Needs a model bundle
(``--model``, default fraudstream-data/model.fsb: run ``make demo``).

The requests are the demo generator's transactions by default (``--traffic generator``: customers with
their own devices, about 1 % fraud); ``--traffic uniform`` sends the random ids of the earlier figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
RUN = os.urandom(3).hex()
WARM_UP = 40
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body(i: int, start: datetime) -> dict[str, object]:
    """``--traffic uniform``: customers, merchants and devices drawn uniformly at random. Any device
    soon serves dozens of customers, so after some 10,000 requests the ``device_farm`` rule fires on
    nearly every one and 85-95 % are FLAGged or BLOCKed: an attack, not a day's traffic."""
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


def uniform(first: int, count: int) -> list[dict[str, object]]:
    start = datetime.now(UTC)
    return [body(first + i, start) for i in range(count)]


def generated(count: int) -> list[dict[str, object]]:
    """``--traffic generator``: ``count`` transactions of the project's own generator, the traffic
    ``fraudstream demo`` trains and simulates on (another seed, so none was trained on), in event-time
    order and without their ground truth: customers keep their devices, about 1 % is fraud."""
    from fraudstream.datasets.generator import GeneratorConfig, generate
    from fraudstream.datasets.simulate import GROUND_TRUTH
    from fraudstream.events.frame import iter_records

    frame = generate(GeneratorConfig(days=max(30.0, count / 2500), seed=11))  # about 3,000 a day
    out = []
    for record in iter_records(frame.sort_values("timestamp", kind="stable").head(count)):
        row = {k: v for k, v in record.items() if k not in GROUND_TRUTH}
        row["transaction_id"] = f"bench-{RUN}-{row['transaction_id']}"
        out.append(row)
    if len(out) < count:
        sys.exit(f"the generator made {len(out):,} transactions, fewer than the {count:,} needed")
    return out


def request_bytes(host: str, payload: dict[str, object], key: str | None = None) -> bytes:
    data = json.dumps(payload, default=datetime.isoformat).encode()
    auth = f"X-API-Key: {key}\r\n" if key else ""
    head = (
        f"POST /v1/score HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def loadgen() -> Path:
    """The compiled load generator, built once per version of its source."""
    source = HERE / "loadgen.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    binary = Path(tempfile.gettempdir()) / f"fraudstream-loadgen-{digest}"
    if not binary.exists():
        compiler = os.environ.get("CC", "cc")
        built = binary.with_suffix(f".{os.getpid()}")
        try:
            subprocess.run([compiler, "-O2", "-o", str(built), str(source)], check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            sys.exit(f"cannot compile {source} with {compiler!r} ({error}); set CC to a C compiler")
        built.replace(binary)
    return binary


def load(
    binary: Path,
    port: int,
    rate: float,
    payloads: list[dict[str, object]],
    workdir: Path,
    key: str | None = None,
) -> np.ndarray:
    """Latencies in ms of ``payloads`` sent on schedule, ``rate`` per second (with ``key``, if any)."""
    requests = workdir / "requests.bin"
    with requests.open("wb") as out:
        for payload in payloads:
            request = request_bytes("127.0.0.1", payload, key)
            out.write(struct.pack("<I", len(request)) + request)
    done = subprocess.run(
        [str(binary), "127.0.0.1", str(port), str(rate), str(requests)], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"load generator failed: {done.stderr.strip()}")
    return np.array(done.stdout.split(), dtype=float).reshape(-1, 2)[:, 1] / 1e3


CANNED = b"""
BODY = b'{"transaction_id":"x","decision":"APPROVE","probability":0.1,"reasons":[],"model_version":"v"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
"""


def wait_ready(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"{url} did not answer within 30 s")


def floor(binary: Path, rate: float, payloads: list[dict[str, object]], workdir: Path) -> np.ndarray:
    """Latencies of the same load against a canned answer, served by uvicorn as ``serve`` serves."""
    (workdir / "canned.py").write_bytes(CANNED)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "canned:app", "--app-dir", str(workdir), "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/")
        return load(binary, port, rate, payloads, workdir)
    finally:
        server.terminate()
        server.wait(10)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def children_cpu_seconds(pid: int) -> float:
    """CPU time so far of a process's running children, Linux: the server's work is counted whole even
    if a version of it hands some to a child process."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    return sum(cpu_seconds(int(child)) or 0.0 for child in children)


def steal_seconds() -> float | None:
    """CPU time the hypervisor has taken from this machine so far, all cores (Linux), else None."""
    try:
        return int(Path("/proc/stat").read_text().split()[8]) / TICK
    except (OSError, IndexError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate", type=float, default=500.0, help="requests per second (default: %(default)s)"
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of each run (default: %(default)s)"
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=Path("fraudstream-data/model.fsb"),
        help="model bundle (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs against the same server; tails vary a lot between runs"
    )
    parser.add_argument(
        "--floor", action="store_true", help="after each run, the same load against a canned answer"
    )
    parser.add_argument(
        "--traffic",
        choices=("generator", "uniform"),
        default="generator",
        help="generator: the demo's generated traffic (default); uniform: random ids, soon all suspicious",
    )
    parser.add_argument(
        "--key",
        choices=("none", "env", "stored"),
        default="none",
        help="none: no keys (default); env: a key of FRAUD_API_KEYS; stored: an ingest key made by "
        "`fraudstream keys create` (checked through the server's key cache)",
    )
    args = parser.parse_args()
    binary = loadgen()
    per_run = int(args.rate * args.seconds)
    if args.traffic == "generator":
        rows = generated(WARM_UP + per_run * args.repeat)
        warm_up = rows[:WARM_UP]
        runs = [rows[WARM_UP + k * per_run :][:per_run] for k in range(args.repeat)]
    else:
        warm_up = uniform(10**9, WARM_UP)
        runs = [uniform(k * (per_run + 1), per_run) for k in range(args.repeat)]
    port = free_port()
    workdir = Path(tempfile.mkdtemp())
    env = os.environ | {"FRAUD_DATA_DIR": str(workdir), "FRAUD_MODEL_PATH": str(args.model.resolve())}
    key = None
    if args.key == "env":
        key = env["FRAUD_API_KEYS"] = f"bench-{RUN}"
    elif args.key == "stored":
        made = subprocess.run(
            [sys.executable, "-m", "fraudstream", "keys", "create", "bench", "--role", "ingest", "--json"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        key = json.loads(made.stdout)["token"]
    server = subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "serve", "--port", str(port), "--no-with-worker"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/ready")
        load(binary, port, 20, warm_up, workdir, key)
        p99s = []
        for payloads in runs:
            cpu0, steal0, kids0 = cpu_seconds(server.pid), steal_seconds(), children_cpu_seconds(server.pid)
            latencies = load(binary, port, args.rate, payloads, workdir, key)
            cpu1, steal1, kids1 = cpu_seconds(server.pid), steal_seconds(), children_cpu_seconds(server.pid)
            p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
            p99s.append(p99)
            keyed = "" if key is None else f", {args.key} key"
            run = f"POST /v1/score at {args.rate:g}/s for {args.seconds:g} s{keyed}"
            print(f"{run}: {len(latencies):,} requests")
            print(f"latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {latencies.max():.1f}")
            if cpu0 is not None and cpu1 is not None and steal0 is not None and steal1 is not None:
                kids = (kids1 - kids0) / len(latencies) * 1e3
                print(
                    f"server CPU {(cpu1 - cpu0) / len(latencies) * 1e3:.2f} ms per request"
                    + (f" (+ {kids:.2f} in its child processes)" if kids > 0 else "")
                    + f"; CPU stolen by the hypervisor meanwhile {steal1 - steal0:.1f} s"
                )
            if args.floor:
                steal0 = steal_seconds()
                canned = floor(binary, args.rate, payloads, workdir)
                steal1 = steal_seconds()
                p50, p99 = np.percentile(canned, [50, 99])
                stolen = "" if steal0 is None or steal1 is None else f"; steal {steal1 - steal0:.1f} s"
                top = canned.max()
                print(f"floor (canned answer): p50 {p50:.1f}  p99 {p99:.1f}  max {top:.1f}{stolen}")
    finally:
        server.terminate()
        server.wait(10)
    if args.repeat > 1:
        low, high = min(p99s), max(p99s)
        print(f"p99 over {args.repeat} runs: median {np.median(p99s):.1f} ms, range {low:.1f}-{high:.1f}")


if __name__ == "__main__":
    main()
