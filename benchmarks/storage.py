"""Benchmark: ``store.decisions.save`` throughput, decisions per second, on SQLite or PostgreSQL.

Each decision looks like the scorer's: 100 named features (a few missing), three reasons, a rule and
four latencies. Besides the wall-clock rate it prints this process's CPU time, which on a shared
machine says more about the Python side than the wall clock does (on SQLite it is nearly all of it).
``--transactions`` also passes the transactions (the synchronous API path), which are stored in the
same call. A ``sqlite:///`` URL's file and a ``postgresql://`` URL's database are made
for the run and removed afterwards (the server's role must be allowed to create databases).

    .venv/bin/python benchmarks/storage.py --url sqlite:///  --batch 5000 --n 100000
    .venv/bin/python benchmarks/storage.py --url postgresql://fraudstream:fraudstream@127.0.0.1:5433/fraudstream
"""

from __future__ import annotations

import argparse
import platform
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text

from fraudstream.events import Transaction
from fraudstream.events.decision import DecisionRecord
from fraudstream.features import FeatureEngine
from fraudstream.storage import open_store
from fraudstream.storage.database import normalize_url

T0 = datetime(2024, 3, 1, tzinfo=UTC)


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """A URL for an empty database like ``url``'s, removed on exit."""
    if url.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    server = normalize_url(url)
    name = f"fs_bench_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_batch(
    start: int, size: int, names: list[str], rng: np.random.Generator
) -> tuple[list[DecisionRecord], list[Transaction]]:
    """``size`` decisions and their transactions, shaped as the scorer makes them."""
    values = rng.normal(size=(size, len(names))).astype(object)
    values[rng.random(size=values.shape) < 0.05] = None
    rows = values.tolist()
    now = datetime.now(UTC)
    records, transactions = [], []
    for i in range(size):
        n = start + i
        tid, customer, when = f"tx{n:09d}", f"c{n % 5000}", T0 + timedelta(seconds=n)
        records.append(
            DecisionRecord(
                transaction_id=tid,
                customer_id=customer,
                timestamp=when,
                amount=12.5 + n % 100,
                decision=("APPROVE", "APPROVE", "APPROVE", "FLAG", "BLOCK")[n % 5],
                probability=float(n % 1000) / 1000,
                reasons=[
                    {"code": names[j], "value": rows[i][j], "contribution": 0.1 * j, "source": "xgboost"}
                    for j in (0, 7, 42)
                ],
                rules=["night_high_amount"] if n % 7 == 0 else [],
                model_version="2024-03-01T00-00-00",
                features=dict(zip(names, rows[i], strict=True)),
                latency_ms={"features": 1.25, "model": 2.5, "rules": 0.5, "total": 4.25},
                decided_at=now,
            )
        )
        transactions.append(
            Transaction(
                transaction_id=tid,
                timestamp=when,
                customer_id=customer,
                merchant_id=f"m{n % 300}",
                device_id=f"d{n % 7000}",
                ip_address="10.0.0.1",
                amount=12.5 + n % 100,
            )
        )
    return records, transactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="sqlite:///", help="sqlite:/// or postgresql://user:pw@host/db")
    parser.add_argument("--batch", type=int, default=5000, help="decisions per save_decisions call")
    parser.add_argument("--n", type=int, default=100_000, help="decisions in all")
    parser.add_argument("--transactions", action="store_true", help="pass the transactions too (API path)")
    args = parser.parse_args()

    names = FeatureEngine().names
    rng = np.random.default_rng(7)
    batches = [
        make_batch(lo, min(args.batch, args.n - lo), names, rng) for lo in range(0, args.n, args.batch)
    ]
    with scratch_database(args.url) as url, open_store(url) as store:
        store.migrate()
        print(f"{store.ping()}, Python {platform.python_version()}, {len(names)} features per decision")
        elapsed = cpu = 0.0
        saved = 0
        for records, transactions in batches:
            started, cpu_started = time.perf_counter(), time.process_time()
            saved += len(store.decisions.save(records, transactions if args.transactions else None))
            elapsed += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
        replayed = time.perf_counter()
        again = store.decisions.save(batches[0][0]) if batches else []
        replay_seconds = time.perf_counter() - replayed
    assert saved == args.n and again == [], (saved, len(again))
    path = "with transactions" if args.transactions else "decisions only"
    print(
        f"save_decisions, {path}: {args.n:,} in batches of {args.batch:,}: {elapsed:.2f} s = "
        f"{args.n / elapsed:,.0f} decisions/s; this process's CPU: {cpu:.2f} s = {args.n / cpu:,.0f}/s "
        f"(a replayed batch of {len(batches[0][0]):,}: {replay_seconds * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
