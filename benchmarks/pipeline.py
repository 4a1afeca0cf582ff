"""End-to-end throughput through a real broker: producer → Redis Streams or Kafka → workers → PostgreSQL.

The workers are separate ``fraudstream worker`` processes sharing the feature state (Redis), as in
production; the producer publishes batches straight to the broker, as the API does after accepting
them. The clock runs from the first publish until every transaction has a stored decision.

    make services
    python benchmarks/pipeline.py --model fraudstream-data/model.fsb \\
        --broker redis://127.0.0.1:6380/0 --state redis://127.0.0.1:6380/0 \\
        --database postgresql://fraudstream:fraudstream@127.0.0.1:5433/fraudstream --n 200000 --workers 2
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import where_time_goes
from api_latency import steal_seconds  # the same count beside the API benchmark's figures
from sqlalchemy import func, select

from fraudstream.brokers import open_broker
from fraudstream.datasets.generator import GeneratorConfig, generate
from fraudstream.datasets.registry import load_dataset
from fraudstream.events.frame import iter_records
from fraudstream.storage import Store, open_store
from fraudstream.storage.tables import decision_minutes


def payloads(source: str, n: int, datasets_dir: Path, token: str) -> list[dict[str, object]]:
    if source == "handbook":
        frame = load_dataset("handbook", datasets_dir).sort_values("timestamp", kind="stable").iloc[:n]
    else:
        frame = generate(GeneratorConfig(n_customers=20_000, n_merchants=2_000, days=max(1, n // 40_000)))
        frame = frame.iloc[:n]
    drop = {"is_fraud", "label_time", "fraud_scenario"}
    out = []
    for record in iter_records(frame):
        body = {k: v for k, v in record.items() if k not in drop and v is not None and v == v}
        body["transaction_id"] = f"{token}-{body['transaction_id']}"
        body["timestamp"] = body["timestamp"].isoformat()
        if "account_created_at" in body:
            body["account_created_at"] = body["account_created_at"].isoformat()
        out.append(body)
    return out


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by each kind of process on this machine (Linux ``/proc``), to show
    where a run's time went: the servers, the workers, this producer."""
    used: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, _, rest = stat.read_text().partition(") ")
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = rest.split()
        kind = name.partition("(")[2]
        if "fraudstream worker" in cmdline:
            kind = "workers"
        elif int(stat.parent.name) == os.getpid():
            kind = "producer"
        elif kind.startswith("redis"):
            kind = "redis"
        elif kind.startswith("postgres"):
            kind = "postgresql"
        elif kind == "java":
            kind = "kafka"
        else:
            continue
        used[kind] = used.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


def decided(store: Store) -> int:
    """Decisions stored so far, from the per-minute rollup written in the same transaction: polling
    ``count(*)`` over ``decisions`` twice a second cost PostgreSQL 6 µs a transaction of the figure."""
    with store.db.engine.connect() as conn:
        total = conn.execute(select(func.sum(decision_minutes.c.decisions))).scalar_one()
        return int(total or 0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", required=True, help="redis://host:port/db or kafka://host:port")
    parser.add_argument("--state", default="memory://", help="feature state URL shared by the workers")
    parser.add_argument("--database", required=True, help="postgresql://... (or sqlite:///...)")
    parser.add_argument("--model", type=Path, required=True, help="model bundle (fraudstream train / demo)")
    parser.add_argument(
        "--source",
        choices=["handbook", "generator"],
        default="handbook",
        help="transactions to send (default: %(default)s)",
    )
    parser.add_argument(
        "--datasets-dir",
        type=Path,
        default=Path("../shared/datasets"),
        help="public datasets folder (default: %(default)s)",
    )
    parser.add_argument("--n", type=int, default=200_000, help="transactions")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--batch-size", type=int, default=5000, help="worker batch size")
    parser.add_argument(
        "--publish-batch", type=int, default=5000, help="messages per publish call (default: %(default)s)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="record each worker with py-spy while it decides, into PROFILE-1.txt, PROFILE-2.txt, ...; "
        "benchmarks/where_time_goes.py reads them",
    )
    args = parser.parse_args()
    if args.profile is not None:
        where_time_goes.py_spy()  # exits now when py-spy is missing

    token = secrets.token_hex(3)
    sep = "&" if "?" in args.broker else "?"
    broker_url = f"{args.broker}{sep}prefix=bench-{token}{':' if args.broker.startswith('redis') else '-'}"
    state_url = args.state if args.state.startswith("memory") else f"{args.state}?prefix=bench-{token}-state:"
    print(f"loading {args.n:,} {args.source} transactions ...", flush=True)
    bodies = payloads(args.source, args.n, args.datasets_dir, token)
    ids = [str(b["transaction_id"]) for b in bodies]

    store = open_store(args.database)
    store.migrate()
    before = decided(store)
    if before:
        print(
            f"note: the database already holds {before:,} decisions, and inserts slow down as its indexes"
            " grow; empty the tables for a figure comparable with the README's",
            flush=True,
        )
    env = os.environ | {
        "FRAUD_DATABASE_URL": args.database,
        "FRAUD_BROKER_URL": broker_url,
        "FRAUD_STATE_URL": state_url,
        "FRAUD_MODEL_PATH": str(args.model),
        "FRAUD_CONSUMER_GROUP": f"bench-{token}",
        "FRAUD_BATCH_SIZE": str(args.batch_size),
        "FRAUD_MAX_WAIT": "0.05",
        "FRAUD_DATA_DIR": f"/tmp/fraudstream-bench-{token}",
    }
    workers = [
        subprocess.Popen([sys.executable, "-m", "fraudstream", "worker"], env=env, stdout=subprocess.DEVNULL)
        for _ in range(args.workers)
    ]
    broker = open_broker(broker_url, store, group=f"bench-{token}")
    try:
        broker.publish("transactions", [])  # create the topic/group before the clock starts
        time.sleep(8)  # workers load the model and join the group
        spies = []
        if args.profile is not None:
            paths = [args.profile.with_name(f"{args.profile.name}-{k + 1}.txt") for k in range(len(workers))]
            spies = [where_time_goes.record(w.pid, path) for w, path in zip(workers, paths, strict=True)]
            time.sleep(0.5)  # attached before the first message
        print(f"publishing to {broker_url} for {args.workers} worker(s) ...", flush=True)
        started, cpu_before, steal_before = time.perf_counter(), cpu_seconds(), steal_seconds()
        for lo in range(0, len(bodies), args.publish_batch):
            chunk = bodies[lo : lo + args.publish_batch]
            broker.publish("transactions", [(str(b["customer_id"]), b) for b in chunk])
        published = time.perf_counter() - started
        while decided(store) - before < len(ids):
            time.sleep(0.5)
            if any(w.poll() is not None for w in workers):
                raise SystemExit("a worker exited early")
        elapsed = time.perf_counter() - started
        cpu_after, steal_after = cpu_seconds(), steal_seconds()
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(60)
        for spy in spies:  # they stop when their worker exits, and write their file
            spy.wait(60)
        broker.close()
        store.close()
    rate = len(ids) / elapsed
    print(
        f"{len(ids):,} transactions decided and stored in {elapsed:.1f} s: {rate:,.0f} tx/s "
        f"(published in {published:.1f} s; {args.workers} workers, batches of {args.batch_size:,})"
    )
    spent = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in sorted(cpu_after)}
    stolen = ""
    if steal_before is not None and steal_after is not None:
        stolen = f"; stolen by the hypervisor meanwhile {steal_after - steal_before:.1f}"
    print(
        "CPU seconds: "
        + ", ".join(f"{k} {v:.1f}" for k, v in spent.items())
        + " (µs per transaction: "
        + ", ".join(f"{k} {v / len(ids) * 1e6:.0f}" for k, v in spent.items())
        + ")"
        + stolen
    )
    if spies:
        print(f"profiles: {', '.join(str(p) for p in paths)} (python benchmarks/where_time_goes.py ...)")


if __name__ == "__main__":
    main()
