"""The storage layer on SQLite files: schema, outbox, queue leases, idempotency, pagination, stats."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from fraudstream.events import Label, Transaction
from fraudstream.storage import DecisionRecord, StorageError, Store, open_store
from fraudstream.storage.database import normalize_url
from fraudstream.storage.migrate import current_revision, upgrade
from fraudstream.storage.tables import metadata

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/nested/fraud.db") as s:
        s.migrate()
        yield s


def tx(i: int, customer: str = "c1", **kw: object) -> Transaction:
    return Transaction(
        transaction_id=f"t{i:04d}",
        timestamp=T0 + timedelta(minutes=i),
        customer_id=customer,
        amount=10.0 + i,
        **kw,
    )


def record(i: int, **kw: Any) -> DecisionRecord:
    values: dict[str, Any] = {
        "transaction_id": f"t{i:04d}",
        "customer_id": "c1",
        "timestamp": T0 + timedelta(minutes=i),
        "amount": 10.0 + i,
        "decision": "APPROVE",
        "probability": 0.01,
        "reasons": [{"feature": "amount", "contribution": 0.2}],
        "rules": [],
        "model_version": "m1",
        "features": {"amount": 10.0 + i, "ratio": None},
        "latency_ms": {"total": 1.5},
        "decided_at": T0 + timedelta(seconds=i),
    }
    values.update(kw)
    return DecisionRecord(**values)


def test_migrations_match_tables_and_are_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/schema.db"
    engine = create_engine(url)
    assert current_revision(engine) is None
    upgrade(url)
    upgrade(engine)
    assert current_revision(engine) == "0001"
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, metadata) == []
    assert set(inspect(engine).get_table_names()) == set(metadata.tables) | {"alembic_version"}
    engine.dispose()


def test_store_migrate_twice_and_ping(store: Store) -> None:
    store.migrate()
    assert current_revision(store.engine) == "0001"
    assert store.ping().startswith("SQLite 3.")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 5000


def test_ping_unreachable_names_the_url(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}") as s, pytest.raises(StorageError, match="unreachable") as info:
        s.ping()
    assert str(tmp_path) in str(info.value)


def test_open_store_rejects_unknown_schemes() -> None:
    with pytest.raises(
        StorageError, match=r"unsupported database URL scheme 'mysql'.*sqlite:///.*postgresql://"
    ):
        open_store("mysql://u:p@localhost/db")
    assert normalize_url("postgresql://u:p@db:5432/fraud").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u:p@db/fraud").drivername == "postgresql+psycopg"


def test_open_store_postgres_needs_psycopg_only_when_used() -> None:
    if importlib.util.find_spec("psycopg") is not None:
        store = open_store("postgresql://u:secret@localhost:1/fraud")
        assert store.url.drivername == "postgresql+psycopg"
        assert "secret" not in repr(store)
    else:
        with pytest.raises(StorageError, match="psycopg"):
            open_store("postgresql://u:secret@localhost:1/fraud")


def test_accept_is_idempotent_and_enqueues_once(store: Store) -> None:
    batch = [tx(1), tx(2), tx(3), tx(2)]
    assert store.accept(batch) == ["t0001", "t0002", "t0003"]
    assert store.accept(batch) == []
    assert store.accept([tx(3), tx(4)]) == ["t0004"]
    assert store.pending("transactions") == 4
    messages = store.claim("transactions", "c", 100, 60)
    assert [m.payload["transaction_id"] for m in messages] == ["t0001", "t0002", "t0003", "t0004"]
    assert messages[0].key == "c1"
    assert Transaction.model_validate(messages[0].payload) == tx(1)
    row = store.get_transaction("t0002")
    assert row is not None
    assert row["status"] == "queued"
    assert row["timestamp"] == tx(2).timestamp
    assert store.get_transaction("missing") is None


def test_claim_leases_redelivery_and_ack(store: Store) -> None:
    ids = store.publish("work", [(f"k{i}", {"n": i}) for i in range(5)])
    assert ids == sorted(ids)
    assert len(ids) == 5
    first = store.claim("work", "a", 3, lease_seconds=3600)
    assert [m.id for m in first] == ids[:3]
    second = store.claim("work", "b", 10, lease_seconds=3600)
    assert [m.id for m in second] == ids[3:]
    assert store.claim("work", "b", 10, lease_seconds=3600) == []
    assert store.claim("other", "b", 10, lease_seconds=3600) == []

    store.ack([m.id for m in first[:2]])
    assert store.pending("work") == 3
    time.sleep(0.05)
    redelivered = store.claim("work", "b", 10, lease_seconds=0.01)
    assert [m.id for m in redelivered] == [first[2].id, *ids[3:]]
    store.ack(ids)
    assert store.pending("work") == 0
    time.sleep(0.05)
    assert store.claim("work", "c", 10, lease_seconds=0.01) == []
    assert store.trim_acked(datetime.now(UTC) + timedelta(seconds=1)) == 5
    assert store.claim("work", "c", 10, lease_seconds=0) == []


def test_concurrent_claims_never_share_a_message(store: Store) -> None:
    ids = store.publish("t", [(None, {"n": i}) for i in range(400)])
    got: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    start = threading.Barrier(len(got))

    def consume(name: str) -> None:
        # No acks: only the lease keeps a claimed message from the other consumer.
        try:
            start.wait()
            while batch := store.claim("t", name, 7, lease_seconds=3600):
                got[name].extend(m.id for m in batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(name,)) for name in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert not set(got["a"]) & set(got["b"])
    assert sorted(got["a"] + got["b"]) == ids
    assert store.pending("t") == 400
    store.ack(ids)
    assert store.pending("t") == 0


def test_save_decisions_first_decision_wins(store: Store) -> None:
    store.accept([tx(1)])
    nan_features = record(1, features={"amount": 11.0, "bad": float("nan")})
    assert store.save_decisions([nan_features, record(1)]) == ["t0001"]
    assert store.save_decisions([record(1, decision="BLOCK", probability=0.99)]) == []
    saved = store.get_decision("t0001")
    assert saved is not None
    assert (saved.decision, saved.probability) == ("APPROVE", 0.01)
    assert saved.features == {"amount": 11.0, "bad": None}
    assert saved.decided_at == T0 + timedelta(seconds=1)
    assert saved.decided_at.tzinfo is not None
    status = store.get_transaction("t0001")
    assert status is not None and status["status"] == "decided"

    assert store.save_decisions([record(2)], transactions=[tx(2)]) == ["t0002"]
    synced = store.get_transaction("t0002")
    assert synced is not None and synced["status"] == "decided"
    assert synced["payload"]["amount"] == 12.0
    assert store.decided_ids(["t0001", "t0002", "t0003", "t0001"]) == {"t0001", "t0002"}
    assert store.get_decision("t0003") is None
    assert store.mark_dead(["t0003"]) == 0


def test_list_decisions_pages_without_gaps(store: Store) -> None:
    # Several decisions share a decided_at, so paging must break ties on transaction_id.
    records = [
        record(
            i,
            customer_id=f"c{i % 3}",
            decision=("BLOCK", "FLAG", "APPROVE", "APPROVE")[i % 4],
            decided_at=T0 + timedelta(seconds=i // 4),
        )
        for i in range(120)
    ]
    assert len(store.save_decisions(records)) == 120
    expected = [r.transaction_id for r in sorted(records, key=lambda r: (r.decided_at, r.transaction_id))][
        ::-1
    ]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = store.list_decisions(limit=25, cursor=cursor)
        seen.extend(r.transaction_id for r in page)
        pages += 1
        if cursor is None:
            break
    assert seen == expected
    assert pages == 5

    blocks, _ = store.list_decisions(decision="BLOCK", customer_id="c0", limit=200)
    assert [r.transaction_id for r in blocks] == [
        r.transaction_id for r in reversed(records) if r.decision == "BLOCK" and r.customer_id == "c0"
    ]
    window, more = store.list_decisions(since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=12))
    assert more is None
    assert sorted(r.transaction_id for r in window) == [f"t{i:04d}" for i in range(40, 48)]

    for bad in ("garbage!", "", "bm90IGpzb24", "WzEsMl0"):
        with pytest.raises(ValueError, match="invalid cursor"):
            store.list_decisions(cursor=bad)


def test_stats_percentiles_and_rates(store: Store) -> None:
    now = datetime.now(UTC)
    latencies = np.arange(1.0, 101.0)
    records = [
        record(i, decision="BLOCK" if i < 10 else "FLAG" if i < 30 else "APPROVE", latency_ms={"total": lat})
        for i, lat in enumerate(latencies)
    ]
    for r in records:
        r.decided_at = now - timedelta(seconds=30)
    store.save_decisions([*records, record(500, decided_at=now - timedelta(hours=2))])
    store.add_labels(
        [
            Label(transaction_id="t0001", is_fraud=True, label_time=T0),
            Label(transaction_id="t0002", is_fraud=False, label_time=T0),
        ]
    )
    stats = store.stats(now - timedelta(seconds=100))
    assert stats["total"] == 100
    assert stats["by_decision"] == {"BLOCK": 10, "FLAG": 20, "APPROVE": 70}
    assert stats["flagged_rate"] == pytest.approx(0.3)
    assert stats["latency_ms"] == pytest.approx({"p50": 50.5, "p95": 95.05, "p99": 99.01})
    assert stats["throughput_per_s"] == pytest.approx(1.0, rel=0.05)
    assert stats["labelled_fraud"] == 1
    empty = store.stats(now + timedelta(hours=1))
    assert empty["total"] == 0 and empty["latency_ms"]["p99"] is None and empty["flagged_rate"] == 0.0


def test_labels_insert_ignore_and_customer_history(store: Store) -> None:
    store.accept([tx(1, "alice"), tx(2, "alice"), tx(3, "bob")])
    store.save_decisions([record(1, customer_id="alice"), record(3, customer_id="bob")])
    labels = [
        Label(transaction_id="t0001", is_fraud=True, label_time=T0 + timedelta(days=3)),
        Label(transaction_id="t0002", is_fraud=False, label_time=T0 + timedelta(days=2), source="review"),
        Label(transaction_id="t0003", is_fraud=True, label_time=T0 + timedelta(days=1)),
    ]
    assert store.add_labels(labels + labels[:1]) == 3
    assert store.add_labels(labels) == 0
    assert (
        store.add_labels([Label(transaction_id="t0001", is_fraud=False, label_time=T0, source="review")]) == 1
    )
    found = store.labels_for(["t0001", "t0002"])
    assert [(row["transaction_id"], row["source"]) for row in found] == [
        ("t0001", "review"),
        ("t0002", "review"),
        ("t0001", "chargeback"),
    ]
    assert found[-1]["label_time"].tzinfo is not None

    history = store.customer_history("alice", limit=10)
    assert [d.transaction_id for d in history["decisions"]] == ["t0001"]
    assert {row["transaction_id"] for row in history["labels"]} == {"t0001", "t0002"}
    assert store.customer_history("nobody")["decisions"] == []


def test_dead_letters_and_alerts_round_trip(store: Store) -> None:
    store.add_dead_letters([("http", '{"bad": 1}', "missing amount"), ("kafka", "\x00", "not JSON")])
    letters = store.dead_letters(10)
    assert [(d["source"], d["payload"], d["reason"]) for d in letters] == [
        ("kafka", "\x00", "not JSON"),
        ("http", '{"bad": 1}', "missing amount"),
    ]
    assert letters[0]["created_at"].tzinfo is not None

    earlier = datetime.now(UTC) - timedelta(hours=1)
    ids = store.add_alerts(
        [
            {
                "kind": "velocity",
                "entity": "customer:c1",
                "payload": {"count": np.int64(12)},
                "created_at": earlier,
            },
            {"kind": "block", "entity": "device:d9", "transaction_id": "t0001"},
        ]
    )
    assert len(ids) == 2 and ids[0] < ids[1]
    alerts = store.list_alerts(10)
    assert [a["kind"] for a in alerts] == ["block", "velocity"]
    assert alerts[1]["payload"] == {"count": 12}
    assert alerts[0]["status"] == "open"
    assert [a["id"] for a in store.list_alerts(10, since=earlier + timedelta(minutes=1))] == [ids[1]]


def test_datetimes_come_back_as_aware_utc(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=plus_two)
    store.save_decisions([record(7, decided_at=local, timestamp=local)])
    saved = store.get_decision("t0007")
    assert saved is not None
    assert saved.decided_at == local
    assert saved.decided_at.utcoffset() == timedelta(0)
    assert saved.timestamp.hour == 12


def test_a_file_that_is_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_text("this is not a database")
    with pytest.raises(StorageError, match=r"bogus\.db is unreachable or unusable .*check the URL"):
        open_store(f"sqlite:///{bogus}").ping()


def test_json_columns_write_nan_as_null_and_keep_huge_integers() -> None:
    from fraudstream.storage.database import dumps

    assert (
        dumps({"a": float("nan"), "b": float("inf"), "c": np.float32(1.5), "d": 2})
        == '{"a":null,"b":null,"c":1.5,"d":2}'
    )
    assert dumps({"big": 2**70}) == '{"big":1180591620717411303424}'
