"""Benchmark: ``POST /v1/score`` throughput under a closed loop, beside a canned app on the same uvicorn.

Starts ``fraudstream serve`` (one uvicorn worker, no embedded worker, embedded defaults, its own SQLite
file) and a FastAPI app that reads each request's body and answers a fixed decision-shaped body, served
by uvicorn with the same loop, HTTP parser, connection cap and access log as ``serve``. Both stay up for
the whole benchmark; each run loads one, then the other, with ``wrk`` (``make bench-wrk`` installs it):
``--connections`` connections, each sending its next request as soon as the previous one is answered,
for ``--seconds``. Closed loop is the right way to find the most a server can answer, and the wrong way
to read its latency (a slow answer delays the next request, so queueing hides): for latency at a given
rate use ``api_latency.py``.

The bodies are README-shaped transactions made in wrk's Lua, unique ids per run, customers, merchants,
devices and addresses drawn from fixed pools, timestamps from an hour ago onwards. Prints, per run and
server, requests per second, p50 and p99 as wrk saw them, the server's CPU time per request (Linux:
the server process and its children) and the CPU time the hypervisor took from this machine meanwhile
("steal"); then fraudstream's throughput as a share of the canned app's, per run and its median. On a
shared machine the absolute figures move with the neighbours; the ratio of two loads taken back to back
moves less, and it says what the engine costs over the web stack it runs on.

All the load comes from one address, so the server runs with a per-address rate limit it never reaches
(the limiter still counts every request, as in production). Needs a model bundle (``--model``, default
fraudstream-data/model.fsb: run ``make demo``).

    .venv/bin/python benchmarks/api_throughput.py --connections 32 --seconds 20 --repeat 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from api_latency import (  # the same machinery as the latency benchmark
    children_cpu_seconds,
    cpu_seconds,
    free_port,
    steal_seconds,
    wait_ready,
)
from where_time_goes import py_spy, record

RUN = os.urandom(3).hex()
"""In every transaction id, so no two invocations of the benchmark send the same ids."""
PROBES = itertools.count(1)
"""Sequence numbers of the bodies sent by hand."""
WARM_UP = 3
"""Seconds of load on each server before the first reported run."""
MAX_BAD = 0.01
"""The share of requests that may go unanswered or answered other than 2xx before the run is refused."""

BODY = (
    '{"transaction_id":"%s%d","timestamp":"%s","customer_id":"C%d","amount":%.2f,'
    '"merchant_id":"M%d","device_id":"D%d","ip_address":"203.0.%d.%d"}'
)
"""One request's body, a printf format that Lua's ``string.format`` and Python's ``%`` read alike: id
prefix, sequence number, ISO time, customer, amount, merchant, device (the customer's), and the two last
bytes of the customer's address."""

LUA = """-- written by api_throughput.py: POST /v1/score with README-shaped transactions, unique ids.
-- arguments: run token, first timestamp (ms since the epoch), customers, merchants, seed.
local body = [[%(body)s]]
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  prefix = "b-" .. args[1] .. "-" .. tid .. "-"
  start_ms = tonumber(args[2])
  customers = tonumber(args[3])
  merchants = tonumber(args[4])
  math.randomseed(tonumber(args[5]) + 7919 * tid)
  headers = {["Content-Type"] = "application/json"}
  n = 0
end

local function iso(ms)
  local s = math.floor(ms / 1000)
  return os.date("!%%Y-%%m-%%dT%%H:%%M:%%S", s) .. string.format(".%%03dZ", ms - 1000 * s)
end

function request()
  n = n + 1
  local c = math.random(customers)
  local m = math.random(merchants)
  -- log-normal around 129.90 (Box-Muller)
  local z = math.sqrt(-2 * math.log(1 - math.random())) * math.cos(2 * math.pi * math.random())
  local amount = 129.90 * math.exp(0.8 * z)
  local text = string.format(body, prefix, n, iso(start_ms + n), c, amount, m, c,
                             math.floor(c / 256) %% 256, c %% 256)
  return wrk.format("POST", nil, headers, text)
end
"""

CANNED_APP = """
from fastapi import FastAPI, Request, Response

CANNED = (  # the size and shape of a real APPROVE
    b'{"transaction_id":"b-0a1b2c-1-1","customer_id":"C42","amount":129.9,'
    b'"timestamp":"2025-03-01T12:00:00Z","decision":"APPROVE","probability":0.0006646768653281915,'
    b'"reasons":[],"rules":[],"model_version":"20250301T075456-09c182af","latency_ms":'
    b'{"features":0.21840325000084704,"model":0.10024400035035796,"rules":0.0268353000137722,'
    b'"explain":0.01456500103813596,"total":0.36004590135391344},'
    b'"decided_at":"2025-03-01T12:00:00.595719Z","duplicate":false}'
)
app = FastAPI()


@app.post("/v1/score")
async def score(request: Request) -> Response:
    await request.body()
    return Response(content=CANNED, media_type="application/json")


@app.get("/ready")
async def ready() -> Response:
    return Response(content=b'{"ready":true}', media_type="application/json")
"""

UNREACHED_LIMIT = "1000000000/minute"
"""FRAUD_RATE_LIMIT_ADDRESS of the server under test."""

UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass
class Result:
    """One wrk run against one server."""

    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    cpu_ms_per_request: float | None
    steal_s: float | None


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def sample_body(start_ms: int) -> bytes:
    """A body made from the same format as the Lua script's, for one request by hand (an id of its own
    each time: the same id with another timestamp would be refused as a conflicting replay)."""
    n = next(PROBES)
    return (BODY % (f"b-{RUN}-probe-", n, iso_ms(start_ms), 42, 129.90, 7, 42, 0, 42)).encode()


def parse(output: str) -> tuple[int, float, float, float, int, int]:
    """Requests, requests per second, p50 and p99 in ms, non-2xx answers and socket errors of wrk's
    report (with ``--latency``)."""

    def number(pattern: str) -> str:
        found = re.search(pattern, output, re.M)
        if found is None:
            sys.exit(f"cannot read {pattern!r} in wrk's output:\n{output}")
        return found.group(1)

    def percentile(p: str) -> float:
        found = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
        if found is None:
            sys.exit(f"no {p}% line in wrk's latency distribution:\n{output}")
        return float(found.group(1)) * UNITS_MS[found.group(2)]

    requests = int(number(r"^\s*(\d+) requests in "))
    per_second = float(number(r"^Requests/sec:\s+([\d.]+)"))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = sum(int(g) for g in errors.groups()) if errors else 0
    return (
        requests,
        per_second,
        percentile("50"),
        percentile("99"),
        int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors,
    )


def server_cpu(pid: int) -> float | None:
    own = cpu_seconds(pid)
    return None if own is None else own + children_cpu_seconds(pid)


def wrk(
    args: argparse.Namespace,
    lua: Path,
    port: int,
    seconds: int,
    run: str,
    start_ms: int,
    pid: int,
    name: str,
) -> Result:
    """One closed-loop run of wrk against the server on ``port`` (process ``pid``)."""
    seed = random.randrange(2**31)
    command = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency",
        "-s", str(lua), f"http://127.0.0.1:{port}/v1/score",
        "--", run, str(start_ms), str(args.customers), str(args.merchants), str(seed),
    ]  # fmt: skip
    cpu0, steal0 = server_cpu(pid), steal_seconds()
    done = subprocess.run(command, capture_output=True, text=True)
    cpu1, steal1 = server_cpu(pid), steal_seconds()
    if done.returncode != 0:
        sys.exit(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    requests, per_second, p50, p99, non_2xx, socket_errors = parse(done.stdout)
    if requests == 0:
        sys.exit(f"{name}: wrk completed no request:\n{done.stdout}")
    bad = non_2xx + socket_errors
    if bad > MAX_BAD * (requests + socket_errors):
        try:
            now = answer(port, start_ms)
            said = f"one more body of the same shape now gets {now.status_code}: {now.text[:500]}"
        except httpx.HTTPError as error:
            said = f"one more body of the same shape now gets no answer: {error!r}"
        sys.exit(
            f"{name}: {non_2xx:,} of {requests:,} answers were not 2xx and {socket_errors:,} requests "
            f"failed (socket errors), more than {MAX_BAD:.0%}; {said}\n"
            f"(by hand: curl -s 127.0.0.1:{port}/v1/score -H 'Content-Type: application/json' -d "
            f"'{sample_body(start_ms).decode()}')\n{done.stdout}"
        )
    cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / requests * 1e3
    steal = None if steal0 is None or steal1 is None else steal1 - steal0
    return Result(requests, per_second, p50, p99, non_2xx, socket_errors, cpu, steal)


def answer(port: int, start_ms: int) -> httpx.Response:
    """The answer to one body of the Lua script's shape, sent by hand: a refusal says why, which wrk's
    counts do not."""
    return httpx.post(
        f"http://127.0.0.1:{port}/v1/score",
        content=sample_body(start_ms),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def probe(port: int, start_ms: int, name: str) -> None:
    got = answer(port, start_ms)
    if got.status_code // 100 != 2:
        sys.exit(f"{name} answered {got.status_code} to a benchmark body: {got.text}")


def started(command: list[str], env: dict[str, str], log: Path, ready: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(ready)
    except SystemExit:
        server.terminate()
        server.wait(10)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        print(f"{' '.join(command)} did not become ready; its last output:\n{tail}", file=sys.stderr)
        raise
    return server


def line(name: str, r: Result) -> str:
    cpu = "" if r.cpu_ms_per_request is None else f"  CPU {r.cpu_ms_per_request:.2f} ms/request"
    steal = "" if r.steal_s is None else f"  steal {r.steal_s:.1f} s"
    errors = f"  socket errors {r.socket_errors:,}" if r.socket_errors else ""
    return (
        f"  {name:<11} {r.per_second:>9,.0f} req/s  p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:6.1f} ms"
        f"{cpu}{steal}  non-2xx {r.non_2xx:,}{errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Needs wrk (make bench-wrk installs it). Ratios are fraudstream's req/s over the canned "
        "app's, run by run.",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=Path("fraudstream-data/model.fsb"),
        help="model bundle the server scores with (default: %(default)s)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=32,
        help="open connections, each with one request in flight (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds", type=int, default=20, help="length of each reported run (default: %(default)s)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs; each loads fraudstream, then the canned app (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="wrk threads; they share the cores with the servers (default: %(default)s)",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=10_000,
        help="customers drawn from (each with its own device and address) (default: %(default)s)",
    )
    parser.add_argument(
        "--merchants", type=int, default=1_000, help="merchants drawn from (default: %(default)s)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="PATH",
        help="record the server with py-spy (raw collapsed stacks, 200 Hz, by thread) during the first "
        "fraudstream run, into PATH",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of text")
    args = parser.parse_args()
    for option in ("connections", "seconds", "repeat", "threads", "customers", "merchants"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads (wrk gives each thread its connections)")
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: run `make bench-wrk` (installs Debian's wrk) or apt-get install wrk")
    if args.profile is not None:
        py_spy()  # exits now, before the servers start, when py-spy is missing
    model = args.model.resolve()
    if not model.is_file():
        sys.exit(f"no model bundle at {model}: run `make demo` or pass --model")

    from fraudstream.config import Settings  # the connection cap serve applies, for the canned app too

    with tempfile.TemporaryDirectory(prefix="fraudstream-wrk-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        lua = workdir / "score.lua"
        lua.write_text(LUA % {"body": BODY})
        (workdir / "canned.py").write_text(CANNED_APP)
        env = os.environ | {
            "FRAUD_DATA_DIR": str(workdir),
            "FRAUD_MODEL_PATH": str(model),
            # one client address sends everything: the default per-address limit would answer 429 to
            # most of a run; a limit never reached keeps the limiter's own cost in the figures
            "FRAUD_RATE_LIMIT_ADDRESS": UNREACHED_LIMIT,
        }
        real_port, canned_port = free_port(), free_port()
        servers: list[subprocess.Popen[bytes]] = []
        try:
            real = started(
                [sys.executable, "-m", "fraudstream", "serve", "--port", str(real_port), "--no-with-worker"],
                env, workdir / "serve.log", f"http://127.0.0.1:{real_port}/ready",
            )  # fmt: skip
            servers.append(real)
            cap = getattr(Settings(), "max_connections", None)  # older versions: no cap
            canned = started(
                [sys.executable, "-m", "uvicorn", "canned:app", "--app-dir", str(workdir),
                 "--host", "127.0.0.1", "--port", str(canned_port),
                 "--loop", "auto", "--http", "httptools", "--no-access-log", "--log-level", "info",
                 *(["--limit-concurrency", str(cap)] if cap else [])],
                env, workdir / "canned.log", f"http://127.0.0.1:{canned_port}/ready",
            )  # fmt: skip
            servers.append(canned)
            # event time: from an hour ago, 1 ms per request and wrk thread, never back between runs
            clock = {
                "fraudstream": int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1000),
                "canned": int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1000),
            }
            targets = {"fraudstream": (real_port, real.pid), "canned": (canned_port, canned.pid)}

            def one(name: str, seconds: int, run: str) -> Result:
                port, pid = targets[name]
                result = wrk(args, lua, port, seconds, run, clock[name], pid, name)
                clock[name] += result.requests + result.socket_errors + args.connections + 1
                return result

            for name, (port, _) in targets.items():
                probe(port, clock[name] - 1, name)
                one(name, WARM_UP, f"{RUN}w")
            if not args.json:
                print(
                    f"POST /v1/score, closed loop: wrk, {args.threads} threads, {args.connections} "
                    f"connections, {args.seconds} s per run; {args.customers:,} customers, "
                    f"{args.merchants:,} merchants; model {model.name}"
                )
            runs = []
            for r in range(args.repeat):
                spy = None
                if args.profile is not None and r == 0:
                    spy = record(real.pid, args.profile, args.seconds)
                    time.sleep(0.5)  # attached before the load starts
                ours = one("fraudstream", args.seconds, f"{RUN}r{r + 1}")
                if spy is not None:
                    out, _ = spy.communicate(timeout=args.seconds + 60)
                    if spy.returncode != 0:
                        sys.exit(f"py-spy failed ({spy.returncode}): {out.strip()}")
                theirs = one("canned", args.seconds, f"{RUN}r{r + 1}")
                ratio = ours.per_second / theirs.per_second
                runs.append({"fraudstream": asdict(ours), "canned": asdict(theirs), "ratio": ratio})
                if not args.json:
                    print(f"run {r + 1}/{args.repeat}:")
                    print(line("fraudstream", ours))
                    print(line("canned", theirs))
                    print(f"  ratio fraudstream/canned: {ratio:.2f}")
                    if spy is not None:
                        print(f"  profile of this fraudstream run: {args.profile}")
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()
    median = statistics.median(run["ratio"] for run in runs)
    if args.json:
        print(
            json.dumps(
                {
                    "connections": args.connections,
                    "threads": args.threads,
                    "seconds": args.seconds,
                    "customers": args.customers,
                    "merchants": args.merchants,
                    "model": str(model),
                    "runs": runs,
                    "ratio_median": median,
                    "profile": None if args.profile is None else str(args.profile),
                },
                indent=2,
            )
        )
    else:
        print(f"ratio (median of {args.repeat}): {median:.2f}")


if __name__ == "__main__":
    main()
