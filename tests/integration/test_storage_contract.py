"""The storage contract, run against SQLite and PostgreSQL alike: one ``Store``, the same behaviour.

PostgreSQL tests share one scratch database per module (created on the server, migrated once, emptied
before each test and dropped at the end); the migration tests make databases of their own.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import bindparam, create_engine, inspect, select, text

from fraudstream.events import Label, Transaction
from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.storage import BodyConflictError, StorageError, Store, open_store
from fraudstream.storage import decisions as decisions_module
from fraudstream.storage.database import normalize_url
from fraudstream.storage.history import LABEL_COLUMNS, Span
from fraudstream.storage.migrate import alembic_config, current_revision, upgrade
from fraudstream.storage.rollup import minute_series, series_from_decisions
from fraudstream.storage.rows import body_hash
from fraudstream.storage.tables import UTCDateTime, decisions, metadata
from fraudstream.storage.writer import SLICE, DecisionWriter, WriterError
from tests.integration.conftest import scratch_database

MANY = 200
"""Rows in a batch as a worker writes one."""

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module")
def postgres_database(postgres_url: str) -> Iterator[str]:
    with scratch_database(postgres_url) as url:
        with open_store(url) as s:
            s.migrate()
        yield url


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a database never migrated, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/fresh.db"
        return
    with scratch_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty store on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/nested/fraud.db"
    else:
        url = request.getfixturevalue("postgres_database")
    with open_store(url) as s:
        s.migrate()
        if s.dialect == "postgresql":
            names = ", ".join(t.name for t in metadata.sorted_tables)
            with s.db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        yield s


def tx(i: int, customer: str = "c1", **kw: Any) -> Transaction:
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


# -- schema -------------------------------------------------------------------------------------------


def test_migrations_match_tables_and_are_idempotent(empty_url: str) -> None:
    url = normalize_url(empty_url).render_as_string(hide_password=False)
    engine = create_engine(url)
    assert current_revision(engine) is None
    upgrade(url)
    upgrade(engine)
    assert current_revision(engine) == HEAD
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, metadata) == []
    assert set(inspect(engine).get_table_names()) == set(metadata.tables) | {"alembic_version"}
    engine.dispose()
    with open_store(empty_url) as s:
        s.migrate()
        s.migrate()
        assert current_revision(s.db.engine) == HEAD


def test_migration_0003_converts_stored_feature_vectors_and_back(empty_url: str) -> None:
    with open_store(empty_url) as s:
        config = alembic_config()
        with s.db.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
            insert = text(
                "INSERT INTO decisions (transaction_id, decided_at, timestamp, customer_id, amount, decision,"
                " probability, reasons, rules, model_version, features, latency_ms) VALUES ('old', :at, :at,"
                " 'c1', 5.0, 'FLAG', 0.5, '[]', '[\"r\"]', 'm0', :features, '{\"total\": 2.0}')"
            ).bindparams(bindparam("at", type_=UTCDateTime()))
            conn.execute(insert, {"at": T0, "features": '{"b": 1.5, "a": null, "c": 3}'})
        s.migrate()
        saved = s.decisions.get("old")
        assert saved is not None
        assert list(saved.features.items()) == [("b", 1.5), ("a", None), ("c", 3.0)]
        assert (saved.rules, saved.latency_ms, saved.decided_at) == (["r"], {"total": 2.0}, T0)
        with s.db.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0002")
            features = conn.execute(text("SELECT features FROM decisions")).scalar_one()
        assert (features if isinstance(features, dict) else json.loads(features)) == {
            "b": 1.5,
            "a": None,
            "c": 3.0,
        }


def test_migrate_twice_and_ping(store: Store) -> None:
    store.migrate()
    assert current_revision(store.db.engine) == HEAD
    assert store.ping().startswith("SQLite 3." if store.dialect == "sqlite" else "PostgreSQL ")


# -- outbox and queue ---------------------------------------------------------------------------------


def test_accept_is_idempotent_and_enqueues_once(store: Store) -> None:
    batch = [tx(1), tx(2), tx(3), tx(2)]
    assert store.queue.accept(batch) == ["t0001", "t0002", "t0003"]
    assert store.queue.accept(batch) == []
    assert store.queue.accept([tx(3), tx(4)]) == ["t0004"]
    assert store.queue.pending("transactions") == 4
    messages = store.queue.claim("transactions", "c", 100, 60)
    assert [m.payload["transaction_id"] for m in messages] == ["t0001", "t0002", "t0003", "t0004"]
    assert messages[0].key == "c1"
    assert Transaction.model_validate(messages[0].payload) == tx(1)
    row = store.decisions.get_transaction("t0002")
    assert row is not None
    assert row["status"] == "queued"
    assert row["timestamp"] == tx(2).timestamp
    assert row["received_at"].tzinfo is not None
    assert store.decisions.get_transaction("missing") is None


def test_accept_a_large_batch_keeps_input_order_and_skips_known(store: Store) -> None:
    n = MANY * 3
    assert len(store.queue.accept([tx(i, f"c{i % 7}") for i in range(0, n, 2)])) == n // 2
    ids = [f"t{i:04d}" for i in range(n)]
    new = store.queue.accept(
        [tx(i, f"c{i % 7}", extra={"i": i} if i % 2 else {}) for i in reversed(range(n))]
    )
    assert new == [i for i in reversed(ids) if int(i[1:]) % 2]
    messages = store.queue.claim("transactions", "c", 10 * n, 60)
    assert [m.payload["transaction_id"] for m in messages] == ids[::2] + new
    assert messages[-1].payload["extra"] == {"i": 1} and messages[-1].key == "c1"


def test_accept_without_enqueue_and_forget_queued(store: Store) -> None:
    assert store.queue.accept([tx(1), tx(2)], enqueue=False) == ["t0001", "t0002"]
    assert store.queue.pending("transactions") == 0
    store.decisions.save([record(2)])
    assert store.queue.forget_queued(["t0001", "t0002", "t0009"]) == 1
    assert store.decisions.get_transaction("t0001") is None
    assert store.queue.accept([tx(1), tx(2)]) == ["t0001"]
    assert store.queue.pending("transactions") == 1


def test_claim_leases_redelivery_and_ack(store: Store) -> None:
    ids = store.queue.publish("work", [(f"k{i}", {"n": i}) for i in range(5)])
    assert ids == sorted(ids)
    assert len(ids) == 5
    first = store.queue.claim("work", "a", 3, lease_seconds=3600)
    assert [m.id for m in first] == ids[:3]
    second = store.queue.claim("work", "b", 10, lease_seconds=3600)
    assert [m.id for m in second] == ids[3:]
    assert store.queue.claim("work", "b", 10, lease_seconds=3600) == []
    assert store.queue.claim("other", "b", 10, lease_seconds=3600) == []

    store.queue.ack([m.id for m in first[:2]])
    assert store.queue.pending("work") == 3
    time.sleep(0.05)
    redelivered = store.queue.claim("work", "b", 10, lease_seconds=0.01)
    assert [m.id for m in redelivered] == [first[2].id, *ids[3:]]
    store.queue.ack(ids)
    assert store.queue.pending("work") == 0
    time.sleep(0.05)
    assert store.queue.claim("work", "c", 10, lease_seconds=0.01) == []
    assert store.queue.trim_acked(datetime.now(UTC) + timedelta(seconds=1)) == 5
    assert store.queue.claim("work", "c", 10, lease_seconds=0) == []


def test_concurrent_claims_never_share_a_message(store: Store) -> None:
    ids = store.queue.publish("t", [(None, {"n": i}) for i in range(400)])
    got: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[Exception] = []
    start = threading.Barrier(len(got))

    def consume(name: str) -> None:
        # No acks: only the lease keeps a claimed message from the other consumer.
        try:
            start.wait()
            while batch := store.queue.claim("t", name, 7, lease_seconds=3600):
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
    assert store.queue.pending("t") == 400
    store.queue.ack(ids)
    assert store.queue.pending("t") == 0


# -- decisions ----------------------------------------------------------------------------------------


def test_a_failed_save_stores_nothing_and_the_store_goes_on(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraudstream.storage import bulk

    def broken(*_: Any, **__: Any) -> int:
        raise RuntimeError("fails after the decisions were inserted")

    with monkeypatch.context() as patch:
        patch.setattr(bulk, "set_column", broken)
        with pytest.raises(RuntimeError):
            store.decisions.save([record(7)], transactions=[tx(7)])
    assert store.decisions.get("t0007") is None and store.decisions.get_transaction("t0007") is None
    assert store.decisions.save([record(7)], transactions=[tx(7)]) == ["t0007"]


def test_save_decisions_first_decision_wins(store: Store) -> None:
    store.queue.accept([tx(1)])
    nan_features = record(1, features={"amount": 11.0, "bad": float("nan")})
    assert store.decisions.save([nan_features, record(1)]) == ["t0001"]
    assert store.decisions.save([record(1, decision="BLOCK", probability=0.99)]) == []
    saved = store.decisions.get("t0001")
    assert saved is not None
    assert (saved.decision, saved.probability) == ("APPROVE", 0.01)
    assert saved.features == {"amount": 11.0, "bad": None}
    assert saved.decided_at == T0 + timedelta(seconds=1)
    assert saved.decided_at.tzinfo is not None
    status = store.decisions.get_transaction("t0001")
    assert status is not None and status["status"] == "decided"

    assert store.decisions.save([record(2)], transactions=[tx(2)]) == ["t0002"]
    synced = store.decisions.get_transaction("t0002")
    assert synced is not None and synced["status"] == "decided"
    assert synced["payload"]["amount"] == 12.0
    assert store.decisions.decided_ids(["t0001", "t0002", "t0003", "t0001"]) == {"t0001", "t0002"}
    assert store.decisions.get("t0003") is None
    assert store.dead_letters.mark_dead(["t0003"]) == 0


def test_decisions_saved_with_their_transactions_read_as_decided_and_are_stored_once(store: Store) -> None:
    """The score API's write: decisions with their transactions (one queued before, one new), in one
    commit; they read as decided at once, and a second decision for either is ignored."""
    store.queue.accept([tx(1)])  # queued first, as POST /v1/transactions?wait= does
    decided = [record(1), record(2, decision="FLAG", probability=0.7, rules=["velocity"])]
    assert store.decisions.save(decided, [tx(1), tx(2)]) == ["t0001", "t0002"]
    assert store.decisions.save([record(2, decision="BLOCK")], [tx(2)]) == []  # decided already
    assert store.decisions.decided_ids(["t0001", "t0002", "t0003"]) == {"t0001", "t0002"}
    flagged = store.decisions.get("t0002")
    assert flagged is not None and (flagged.decision, flagged.rules) == ("FLAG", ["velocity"])
    assert flagged.features == {"amount": 12.0, "ratio": None}
    assert flagged.decided_at == T0 + timedelta(seconds=2)
    for i in ("t0001", "t0002"):
        row = store.decisions.get_transaction(i)
        assert row is not None and row["status"] == "decided" and row["payload"]["transaction_id"] == i
    assert [d.transaction_id for d in store.decisions.list()[0]] == ["t0002", "t0001"]
    assert store.decisions.stats(T0 - timedelta(days=1))["by_decision"] == {"APPROVE": 1, "FLAG": 1}
    assert store.decisions.save([record(1, decision="BLOCK")], [tx(1)]) == []
    stored = store.decisions.get("t0001")
    assert stored is not None and stored.decision == "APPROVE"
    assert store.decisions.save([record(1, decision="BLOCK"), record(3)], [tx(1), tx(3)]) == ["t0003"]


def test_a_writer_leaves_a_decision_answered_by_the_api_as_it_is(store: Store) -> None:
    """The embedded worker deciding a transaction the API has just decided (it checked just before the
    API stored) must not store a second, different decision: the API's answer is the one kept."""
    assert store.decisions.save([record(1)], [tx(1)]) == ["t0001"]
    assert store.decisions.save([record(1, decision="BLOCK"), record(2)], [tx(1), tx(2)]) == ["t0002"]
    decided = store.decisions.get_many(["t0001", "t0002"])
    assert decided["t0001"].decision == "APPROVE" and set(decided) == {"t0001", "t0002"}


# -- one id, one body ---------------------------------------------------------------------------------


def changed(transaction: Transaction, **fields: Any) -> Transaction:
    """``transaction`` with other values, validated as a client's body would be."""
    return Transaction.model_validate({**transaction.model_dump(), **fields})


def test_accept_refuses_an_id_known_with_another_body_and_stores_nothing(store: Store) -> None:
    assert store.queue.accept([tx(1), tx(2)]) == ["t0001", "t0002"]
    with pytest.raises(BodyConflictError) as refused:
        store.queue.accept([tx(3), tx(1, extra={"changed": True}), tx(2, customer="c9")])
    assert refused.value.ids == ["t0001", "t0002"] and "different body" in str(refused.value)
    assert store.decisions.get_transaction("t0003") is None and store.queue.pending("transactions") == 2
    with pytest.raises(BodyConflictError) as repeated:  # repeated within the batch with another body
        store.queue.accept([tx(4), tx(5), changed(tx(4), amount=99.0)])
    assert repeated.value.ids == ["t0004"] and store.decisions.get_transaction("t0004") is None
    assert store.queue.accept([tx(3), tx(1), tx(3)]) == ["t0003"]  # the same bodies: retries


def test_a_decision_for_another_body_of_a_stored_id_is_not_stored(store: Store) -> None:
    """A decision made for a body other than the one stored under its id is refused, its id reported;
    the same body is decided as before."""
    store.queue.accept([tx(1), tx(2)])
    clashes: set[str] = set()
    other = changed(tx(1), amount=99.0)
    assert store.decisions.save([record(1, amount=99.0)], [other], clashes=clashes) == []
    assert clashes == {"t0001"}
    assert store.decisions.save([record(2)], [tx(2)]) == ["t0002"]
    assert (
        store.decisions.get("t0001") is None
        and store.decisions.get_transaction("t0001")["status"] == "queued"
    )  # type: ignore[index]
    assert store.decisions.get("t0002") is not None


def test_an_id_decided_by_the_score_api_is_known_with_its_body(store: Store) -> None:
    """A transaction stored with its decision (``POST /v1/score``): accepting its id with another body
    is refused, with the same body it is a duplicate that is never queued."""
    assert store.decisions.save([record(1)], [tx(1)]) == ["t0001"]
    with pytest.raises(BodyConflictError):
        store.queue.accept([changed(tx(1), amount=1.5)])
    assert store.queue.accept([tx(1)]) == [] and store.queue.pending("transactions") == 0
    assert store.decisions.body_hashes(["t0001", "t0009"]) == {"t0001": body_hash(tx(1))}
    assert store.decisions.get_transaction("t0001")["body_hash"] == body_hash(tx(1))  # type: ignore[index]


def test_body_hashes_are_canonical_and_rows_from_before_them_are_read_from_the_payload(store: Store) -> None:
    reordered = Transaction.model_validate_json(
        tx(1, extra={"b": [1, {"y": 2, "x": 1}], "a": "é"}).model_dump_json()
    )
    written = tx(1, extra={"a": "é", "b": [1, {"x": 1, "y": 2}]})
    assert body_hash(reordered) == body_hash(written) != body_hash(tx(1))
    assert body_hash(changed(tx(1), amount=11)) == body_hash(tx(1)) != body_hash(changed(tx(1), amount=11.5))
    store.queue.accept([written, tx(2)])
    with store.db.engine.begin() as conn:  # as migration 0007 leaves rows stored before it
        conn.execute(text("UPDATE transactions SET body_hash = NULL"))
    assert store.decisions.body_hashes(["t0001", "t0002"]) == {
        "t0001": body_hash(written),
        "t0002": body_hash(tx(2)),
    }
    assert store.queue.accept([reordered]) == []
    with pytest.raises(BodyConflictError):
        store.queue.accept([changed(tx(2), amount=0.5)])
    clashes: set[str] = set()
    assert store.decisions.save([record(1)], [tx(1)], clashes=clashes) == [] and clashes == {"t0001"}


def test_accepting_and_deciding_one_id_at_once_keep_one_body(store: Store) -> None:
    """Threads accepting ids (``POST /v1/transactions``) while others decide the same ids with other
    bodies (``POST /v1/score``): for each id exactly one side wins, and a decision
    stored is for the body stored."""
    n = 60
    outcome: dict[str, list[str]] = {"accepted": [], "decided": [], "refused": []}

    def accept(i: int) -> None:
        try:
            outcome["accepted"] += store.queue.accept([changed(tx(i), amount=1.0)])
        except BodyConflictError as error:
            outcome["refused"] += error.ids

    def decide(i: int) -> None:
        clashes: set[str] = set()
        outcome["decided"] += store.decisions.save(
            [record(i, amount=2.0)], [changed(tx(i), amount=2.0)], clashes=clashes
        )
        outcome["refused"] += sorted(clashes)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(n) for job in (accept, decide)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcome["accepted"] + outcome["decided"]) == sorted(f"t{i:04d}" for i in range(n))
    assert sorted(outcome["refused"]) == sorted(f"t{i:04d}" for i in range(n))
    for i in outcome["accepted"]:
        assert (
            store.decisions.get_transaction(i)["payload"]["amount"] == 1.0 and store.decisions.get(i) is None
        )  # type: ignore[index]
    for i in outcome["decided"]:
        assert store.decisions.get_transaction(i)["payload"]["amount"] == 2.0 == store.decisions.get(i).amount  # type: ignore[index,union-attr]


def test_transaction_times_cover_accepted_decided_and_replayed_transactions(store: Store) -> None:
    store.queue.accept([tx(1)])
    store.decisions.save([record(2)], [tx(2)])
    store.decisions.save([record(3)])  # a replay's decision, stored without its transaction
    times = store.decisions.transaction_times(["t0001", "t0002", "t0003", "t0004"])
    assert times == {"t0001": tx(1).timestamp, "t0002": tx(2).timestamp, "t0003": tx(3).timestamp}


def test_large_batches_return_only_the_new_ids_in_input_order(store: Store) -> None:
    n = MANY * 3
    assert len(store.decisions.save([record(i) for i in range(0, n, 3)])) == n // 3
    changed = [record(i, decision="BLOCK") for i in reversed(range(n))]
    txs = [tx(i) for i in reversed(range(n))]
    expected = [r.transaction_id for r in changed if int(r.transaction_id[1:]) % 3]
    assert store.decisions.save(changed, txs) == expected
    assert store.decisions.save(changed, txs) == []
    blocks, _ = store.decisions.list(decision="BLOCK", limit=10 * n)
    assert sorted(r.transaction_id for r in blocks) == sorted(expected)
    assert store.decisions.decided_ids([f"t{i:04d}" for i in range(n + 5)]) == {f"t{i:04d}" for i in range(n)}
    row = store.decisions.get_transaction("t0004")
    assert row is not None and row["status"] == "decided" and row["payload"]["transaction_id"] == "t0004"


def test_transactions_alternately_new_and_already_queued_are_each_stored_once(store: Store) -> None:
    """A worker fed by producers stores new transactions, one fed by the API's outbox finds them
    queued; the store guesses from the last batch which it is, and a wrong guess costs only time."""
    n = MANY + 5
    for round_ in range(3):
        new = [tx(10_000 * round_ + i) for i in range(n)]
        queued = [tx(10_000 * round_ + n + i) for i in range(n)]
        store.queue.accept(queued)
        again = new[: n // 2] + queued[: n // 2]
        for txs, first in ((new, True), (queued, True), (again, False), (new, False)):
            decided = store.decisions.save([record(0, transaction_id=t.transaction_id) for t in txs], txs)
            assert decided == ([t.transaction_id for t in txs] if first else [])
        ids = [t.transaction_id for t in new + queued]
        assert store.decisions.decided_ids(ids) == set(ids)
        assert {store.decisions.get_transaction(i)["status"] for i in ids} == {"decided"}  # type: ignore[index]


def test_transactions_copied_in_bulk_read_back_as_those_stored_a_few_at_a_time(store: Store) -> None:
    """On PostgreSQL a large batch's transactions go in by binary COPY, a few by a multi-row INSERT;
    both must store the same rows (NULLs, odd microseconds, non-ASCII identifiers)."""
    n = MANY + 20

    def txs(prefix: str) -> list[Transaction]:
        return [
            Transaction(transaction_id=f"{prefix}{i:04d}", customer_id=f"ç{i % 7}", amount=10.0 + i,
                        timestamp=T0 + timedelta(seconds=61.123457 * i),
                        merchant_id=f"m{i}" if i % 3 else None, device_id=f"d{i % 5}" if i % 2 else None,
                        ip_address="::1" if i % 4 else None, country="FR", latitude=48.85, longitude=2.35,
                        extra={"n": i})
            for i in range(n)
        ]  # fmt: skip

    def decisions(transactions: list[Transaction]) -> list[DecisionRecord]:
        return [record(0, transaction_id=t.transaction_id, timestamp=t.timestamp) for t in transactions]

    bulk, few = txs("b"), txs("f")
    assert len(store.decisions.save(decisions(bulk), bulk)) == n
    for lo in range(0, n, 10):
        store.decisions.save(decisions(few[lo : lo + 10]), few[lo : lo + 10])
    for a, b in zip(bulk, few, strict=True):
        got, want = (
            store.decisions.get_transaction(a.transaction_id),
            store.decisions.get_transaction(b.transaction_id),
        )
        assert got is not None and want is not None
        assert Transaction.model_validate(got.pop("payload")) == a
        assert Transaction.model_validate(want.pop("payload")) == b
        assert (got.pop("body_hash"), want.pop("body_hash")) == (body_hash(a), body_hash(b))
        assert {k: v for k, v in got.items() if k not in ("transaction_id", "received_at")} == {
            k: v for k, v in want.items() if k not in ("transaction_id", "received_at")
        }


def test_feature_vectors_round_trip_exactly_in_order(store: Store) -> None:
    rng = np.random.default_rng(3)
    names = [f"f{i:03d}" for i in range(100)][::-1]
    values = rng.normal(size=(MANY + 10, 100)) * 10.0 ** rng.integers(-300, 300, size=(1, 100))
    vectors: list[dict[str, float | None]] = [dict(zip(names, row, strict=True)) for row in values.tolist()]
    vectors[0]["f050"] = None
    vectors[1]["f051"] = float("inf")
    vectors[2] = {"other": 1.0, "set": -0.0}
    vectors[3] = {}
    records = [record(i, features=v, reasons=[{"v": np.float32(0.5)}]) for i, v in enumerate(vectors)]
    assert len(store.decisions.save(records)) == len(records)
    page, _ = store.decisions.list(limit=len(records))
    stored = {r.transaction_id: r.features for r in page}
    expected = [dict(v) for v in vectors]
    expected[1]["f051"] = None
    for i, vector in enumerate(expected):
        assert list(stored[f"t{i:04d}"].items()) == list(vector.items())
    assert page[0].reasons == [{"v": 0.5}]
    fresh = open_store(store.url.render_as_string(hide_password=False))
    try:
        saved = fresh.decisions.get("t0002")
        assert saved is not None and saved.features == {"other": 1.0, "set": 0.0}
    finally:
        fresh.close()


def test_concurrent_writers_decide_each_transaction_once(store: Store) -> None:
    results: dict[str, list[str]] = {}
    errors: list[Exception] = []
    start = threading.Barrier(2)

    def write(name: str, order: range) -> None:
        try:
            start.wait()
            ids: list[str] = []
            for lo in range(0, len(order), 250):
                batch = [
                    record(i, decision="FLAG" if name == "b" else "APPROVE") for i in order[lo : lo + 250]
                ]
                ids += store.decisions.save(batch)
            results[name] = ids
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=("a", range(1000))),
        threading.Thread(target=write, args=("b", range(999, -1, -1))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert not set(results["a"]) & set(results["b"])
    assert sorted(results["a"] + results["b"]) == [f"t{i:04d}" for i in range(1000)]
    flagged, _ = store.decisions.list(decision="FLAG", limit=2000)
    assert {r.transaction_id for r in flagged} == set(results["b"])


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
    assert len(store.decisions.save(records)) == 120
    expected = [r.transaction_id for r in sorted(records, key=lambda r: (r.decided_at, r.transaction_id))][
        ::-1
    ]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = store.decisions.list(limit=25, cursor=cursor)
        seen.extend(r.transaction_id for r in page)
        pages += 1
        if cursor is None:
            break
    assert seen == expected
    assert pages == 5

    blocks, _ = store.decisions.list(decision="BLOCK", customer_id="c0", limit=200)
    assert [r.transaction_id for r in blocks] == [
        r.transaction_id for r in reversed(records) if r.decision == "BLOCK" and r.customer_id == "c0"
    ]
    window, more = store.decisions.list(since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=12))
    assert more is None
    assert sorted(r.transaction_id for r in window) == [f"t{i:04d}" for i in range(40, 48)]

    flags: list[str] = []
    cursor = None
    while True:
        page, cursor = store.decisions.list(
            decision="FLAG", since=T0 + timedelta(seconds=5), limit=4, cursor=cursor
        )
        flags.extend(r.transaction_id for r in page)
        if cursor is None:
            break
    assert flags == [t for t in expected if int(t[1:]) % 4 == 1 and int(t[1:]) >= 20]

    for bad in ("garbage!", "", "bm90IGpzb24", "WzEsMl0"):
        with pytest.raises(ValueError, match="invalid cursor"):
            store.decisions.list(cursor=bad)


def test_stats_percentiles_and_rates(store: Store) -> None:
    now = datetime.now(UTC)
    latencies = np.arange(1.0, 101.0)
    records = [
        record(i, decision="BLOCK" if i < 10 else "FLAG" if i < 30 else "APPROVE", latency_ms={"total": lat})
        for i, lat in enumerate(latencies)
    ]
    for r in records:
        r.decided_at = now - timedelta(seconds=30)
    store.decisions.save([*records, record(500, decided_at=now - timedelta(hours=2))])
    store.labels.add(
        [
            Label(transaction_id="t0001", is_fraud=True, label_time=T0),
            Label(transaction_id="t0002", is_fraud=False, label_time=T0),
        ]
    )
    stats = store.decisions.stats(now - timedelta(seconds=100))
    assert stats["total"] == 100
    assert stats["by_decision"] == {"BLOCK": 10, "FLAG": 20, "APPROVE": 70}
    assert stats["flagged_rate"] == pytest.approx(0.3)
    assert stats["latency_ms"] == pytest.approx({"p50": 50.5, "p95": 95.05, "p99": 99.01})
    assert stats["throughput_per_s"] == pytest.approx(100 / 30, rel=0.05)  # from the first decision on
    assert stats["labelled_fraud"] == 1
    empty = store.decisions.stats(now + timedelta(hours=1))
    assert empty["total"] == 0 and empty["latency_ms"]["p99"] is None and empty["flagged_rate"] == 0.0


def test_stats_latency_comes_from_the_newest_decisions(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decisions_module, "LATENCY_SAMPLE", 10)
    now = datetime.now(UTC)
    records = [record(i, latency_ms={"total": 1000.0 + i if i < 30 else float(i - 29)}) for i in range(40)]
    for i, r in enumerate(records):
        r.decided_at = now - timedelta(seconds=60 - i)  # the last ten are the newest: latencies 1..10
    store.decisions.save(records)
    stats = store.decisions.stats(now - timedelta(seconds=100))
    assert stats["total"] == 40
    assert stats["latency_ms"] == pytest.approx({"p50": 5.5, "p95": 9.55, "p99": 9.91})


def test_labels_insert_ignore_and_customer_history(store: Store) -> None:
    store.queue.accept([tx(1, "alice"), tx(2, "alice"), tx(3, "bob")])
    store.decisions.save([record(1, customer_id="alice"), record(3, customer_id="bob")])
    labels = [
        Label(transaction_id="t0001", is_fraud=True, label_time=T0 + timedelta(days=3)),
        Label(transaction_id="t0002", is_fraud=False, label_time=T0 + timedelta(days=2), source="review"),
        Label(transaction_id="t0003", is_fraud=True, label_time=T0 + timedelta(days=1)),
    ]
    assert store.labels.add(labels + labels[:1]) == 3
    assert store.labels.add(labels) == 0
    assert (
        store.labels.add([Label(transaction_id="t0001", is_fraud=False, label_time=T0, source="review")]) == 1
    )
    found = store.labels.for_transactions(["t0001", "t0002"])
    assert [(row["transaction_id"], row["source"]) for row in found] == [
        ("t0001", "review"),
        ("t0002", "review"),
        ("t0001", "chargeback"),
    ]
    assert found[-1]["label_time"].tzinfo is not None

    history = store.decisions.customer_history("alice", limit=10)
    assert [d.transaction_id for d in history["decisions"]] == ["t0001"]
    assert history["decisions"][0].features == {"amount": 11.0, "ratio": None}
    assert {row["transaction_id"] for row in history["labels"]} == {"t0001", "t0002"}
    assert store.decisions.customer_history("nobody")["decisions"] == []


def test_a_source_changes_its_verdict_with_an_audit_trail(store: Store) -> None:
    store.queue.accept([tx(1), tx(2)])
    at = T0 + timedelta(days=1)

    def lb(i: int, fraud: bool, hours: float, source: str = "chargeback") -> Label:
        return Label(
            transaction_id=f"t{i:04d}", is_fraud=fraud, label_time=at + timedelta(hours=hours), source=source
        )

    first = store.labels.apply([lb(1, False, 0), lb(2, True, 0), lb(1, False, 1)])
    assert (first.accepted, first.superseded, first.ignored) == (2, 0, 1)
    assert [label.transaction_id for label in first.fraud] == ["t0002"]
    changed = store.labels.apply(
        [lb(1, True, 2), lb(1, False, 1), lb(1, True, 3), lb(2, False, 2, "analyst")]
    )
    assert (changed.accepted, changed.superseded, changed.ignored) == (1, 1, 2)  # an older verdict: ignored
    assert [label.label_time for label in changed.fraud] == [at + timedelta(hours=2)]
    current = store.labels.for_transactions(["t0001"])
    assert [(row["source"], row["is_fraud"], row["label_time"]) for row in current] == [
        ("chargeback", True, at + timedelta(hours=2))
    ]
    (old,) = store.labels.history("t0001")
    assert (old["source"], old["is_fraud"], old["label_time"]) == ("chargeback", False, at)
    assert old["label_id"] == current[0]["id"] and old["superseded_at"] >= old["received_at"]
    back = store.labels.apply([lb(1, False, 4), lb(1, True, 5)])  # twice in one batch: both kept
    assert (back.superseded, [h["is_fraud"] for h in store.labels.history("t0001")]) == (
        2,
        [False, True, False],
    )
    store.decisions.save([record(1), record(2)])
    # fraud wins across sources, and each transaction counts once, from its earliest fraud label
    assert sorted(store.labels.fraud_since(T0)) == [("t0001", at + timedelta(hours=5)), ("t0002", at)]
    store.labels.apply([lb(1, False, 6)])
    assert store.labels.fraud_since(T0) == [("t0002", at)]
    assert store.decisions.stats(T0)["labelled_fraud"] == 1


def test_concurrent_label_writers_keep_one_current_verdict_per_source(store: Store) -> None:
    store.queue.accept([tx(1)])
    at = T0 + timedelta(days=1)
    errors: list[Exception] = []

    def write(k: int) -> None:
        try:
            label = Label(transaction_id="t0001", is_fraud=bool(k % 2), label_time=at + timedelta(minutes=k))
            store.labels.apply([label])
        except Exception as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (current,) = store.labels.for_transactions(["t0001"])
    history = store.labels.history("t0001")
    verdicts = [h["is_fraud"] for h in history] + [current["is_fraud"]]
    assert all(a != b for a, b in itertools.pairwise(verdicts))  # each change a change
    assert len(history) <= 11


def test_state_rebuild_reads(store: Store) -> None:
    store.queue.accept([tx(1), tx(2), tx(3)])
    store.decisions.save([record(1), record(3)])
    store.labels.add([Label(transaction_id="t0003", is_fraud=True, label_time=T0 + timedelta(days=1))])
    assert store.decisions.newest_decided_timestamp() == tx(3).timestamp
    payloads = store.decisions.decided_payloads(T0 + timedelta(minutes=2))
    assert [p["transaction_id"] for p in payloads] == ["t0003"]
    assert store.labels.fraud_since(T0) == [("t0003", T0 + timedelta(days=1))]


def test_dead_letters_page_both_ways_and_removing_them_requeues_only_dead_transactions(store: Store) -> None:
    store.dead_letters.add([("transactions", f"payload {i}", f"reason {i}") for i in range(5)])
    newest = store.dead_letters.list(2)
    ids = [d["id"] for d in newest]
    assert [d["payload"] for d in newest] == ["payload 4", "payload 3"]
    assert [d["payload"] for d in store.dead_letters.list(2, before=ids[-1])] == ["payload 2", "payload 1"]
    oldest = store.dead_letters.list(2, after=0)
    assert [d["payload"] for d in oldest] == ["payload 0", "payload 1"]
    assert [d["payload"] for d in store.dead_letters.list(10, after=oldest[-1]["id"])] == [
        "payload 2", "payload 3", "payload 4",
    ]  # fmt: skip
    assert [d["payload"] for d in store.dead_letters.get([ids[0], ids[1], 10_000, ids[0]])] == [
        "payload 3", "payload 4",
    ]  # fmt: skip

    store.queue.accept([tx(1), tx(2), tx(3)])
    store.dead_letters.mark_dead(["t0001", "t0002"])
    assert store.dead_letters.remove(ids, requeued=["t0001", "t0003"]) == 2  # t0002 stays dead
    assert store.dead_letters.remove(ids) == 0
    assert [d["payload"] for d in store.dead_letters.list()] == ["payload 2", "payload 1", "payload 0"]
    statuses = {i: store.decisions.get_transaction(i)["status"] for i in ("t0001", "t0002", "t0003")}  # type: ignore[index]
    assert statuses == {"t0001": "queued", "t0002": "dead", "t0003": "queued"}
    store.decisions.save([record(3)], [tx(3)])
    assert store.dead_letters.mark_dead(["t0003"]) == 0  # decided after all (another copy): it stays decided
    assert store.decisions.get_transaction("t0003")["status"] == "decided"  # type: ignore[index]


def test_releasing_queue_messages_ends_only_the_releasers_claim_and_gives_the_delivery_back(
    store: Store,
) -> None:
    ids = store.queue.publish("jobs", [(None, {"n": i}) for i in range(3)])
    assert [m.deliveries for m in store.queue.claim("jobs", "a", 2, 60.0)] == [1, 1]
    store.queue.release(ids[:2], "b")  # not b's claim
    assert [m.id for m in store.queue.claim("jobs", "c", 5, 60.0)] == [ids[2]]
    store.queue.release(ids[:2], "a")
    assert [(m.id, m.deliveries) for m in store.queue.claim("jobs", "c", 5, 60.0)] == [
        (ids[0], 1),
        (ids[1], 1),
    ]


def test_dead_letters_and_alerts_round_trip(store: Store) -> None:
    store.dead_letters.add([("http", '{"bad": 1}', "missing amount"), ("kafka", "a\x00\x01", "not JSON")])
    letters = store.dead_letters.list(10)
    assert [(d["source"], d["payload"], d["reason"]) for d in letters] == [
        ("kafka", "a\\x00\x01", "not JSON"),
        ("http", '{"bad": 1}', "missing amount"),
    ]
    assert letters[0]["created_at"].tzinfo is not None

    earlier = datetime.now(UTC) - timedelta(hours=1)
    ids = store.alerts.add(
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
    alerts = store.alerts.list(10)
    assert [a["kind"] for a in alerts] == ["block", "velocity"]
    assert alerts[1]["payload"] == {"count": 12}
    assert alerts[0]["status"] == "open"
    assert [a["id"] for a in store.alerts.list(10, since=earlier + timedelta(minutes=1))] == [ids[1]]


def test_flag_history_lists_the_window_s_flags_of_the_given_customers(store: Store) -> None:
    outcomes = ["FLAG", "APPROVE", "FLAG", "BLOCK", "FLAG", "FLAG"]
    customers = ["c1", "c1", "c1", "c1", "c2", "c3"]
    pairs = enumerate(zip(outcomes, customers, strict=True))
    store.decisions.save([record(i, decision=d, customer_id=c) for i, (d, c) in pairs])
    window = (T0 + timedelta(minutes=1), T0 + timedelta(minutes=4))
    assert sorted(store.alerts.flag_history(["c1", "c2"], *window)) == [
        ("c1", "t0002", T0 + timedelta(minutes=2)),
        ("c2", "t0004", T0 + timedelta(minutes=4)),
    ]
    assert store.alerts.flag_history(["c3"], *window) == []


def test_datetimes_come_back_as_aware_utc(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=plus_two)
    naive = datetime(2024, 5, 1, 9, 0, 0, 1)
    store.decisions.save(
        [record(7, decided_at=local, timestamp=local), record(8, decided_at=naive, timestamp=naive)]
    )
    saved = store.decisions.get("t0007")
    assert saved is not None
    assert saved.decided_at == local
    assert saved.decided_at.utcoffset() == timedelta(0)
    assert saved.timestamp.hour == 12
    other = store.decisions.get("t0008")
    assert other is not None and other.timestamp == naive.replace(tzinfo=UTC)
    window, _ = store.decisions.list(
        since=local - timedelta(microseconds=1), until=local + timedelta(microseconds=1)
    )
    assert [r.transaction_id for r in window] == ["t0007"]


@pytest.mark.postgres
def test_a_copy_that_meets_a_concurrent_insert_falls_back_to_on_conflict(postgres_database: str) -> None:
    """Another writer commits one of our ids while our COPY runs (decisions are copied without looking
    for stored ids first): COPY fails on it, and the staged insert skips that id and stores the rest."""
    insert = text(
        "INSERT INTO decisions (transaction_id, decided_at, timestamp, customer_id, amount, decision,"
        " probability, reasons, rules, model_version, feature_set, feature_values, latency_ms)"
        " VALUES ('t0007', now(), now(), 'c1', 1, 'BLOCK', 1, '[]', '[]', 'x', 'none', '', '{}')"
    )
    copy_waits = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'COPY%'"
    )
    with open_store(postgres_database) as s, open_store(postgres_database) as other:
        with s.db.engine.begin() as conn:
            conn.execute(text("TRUNCATE decisions, transactions"))
            conn.execute(text("INSERT INTO feature_sets VALUES ('none', '[]') ON CONFLICT DO NOTHING"))
        batch = [record(i) for i in range(MANY * 2)]
        result: list[list[str]] = []
        with other.db.engine.connect() as blocker:
            blocker.begin()
            blocker.execute(insert)
            writer = threading.Thread(target=lambda: result.append(s.decisions.save(batch)))
            writer.start()
            deadline = time.monotonic() + 30
            with other.db.engine.connect() as watcher:  # its own transactions: pg_stat_activity is a snapshot
                while (
                    not (waiting := watcher.execute(copy_waits).scalar_one()) and time.monotonic() < deadline
                ):
                    watcher.rollback()
                    time.sleep(0.01)  # until the writer's COPY waits for our uncommitted row
            blocker.commit()
            writer.join()
        assert waiting == 1
        assert result == [[r.transaction_id for r in batch if r.transaction_id != "t0007"]]
        kept = s.decisions.get("t0007")
        assert kept is not None and kept.decision == "BLOCK" and kept.features == {}
        assert s.decisions.get("t0008") is not None


@pytest.mark.postgres
def test_wrong_credentials_and_a_missing_database_are_one_clear_line(postgres_url: str) -> None:
    server = normalize_url(postgres_url)
    cases = {
        # (the dev server trusts local connections, so a wrong user stands in for a wrong password)
        server.set(
            username="fs_no_such_role", password="not-the-password"
        ): "check the user name and password",
        server.set(
            database="fs_test_missing"
        ): "create it (createdb fs_test_missing) or fix the database name",
    }
    for url, hint in cases.items():
        with open_store(url.render_as_string(hide_password=False)) as s, pytest.raises(StorageError) as info:
            s.migrate()
        message = str(info.value)
        assert hint in message and "\n" not in message
        assert "not-the-password" not in message and url.render_as_string(hide_password=True) in message


# -- scored batches as columns, and the writer process -------------------------------------------------


def columns(prefix: str, n: int = MANY + 7) -> DecisionColumns:
    """A scored batch as columns, with a repeated id (its second decision must lose), odd
    microseconds, NaN and infinite features, rules on some rows and a NaN latency."""
    rng = np.random.default_rng(7)
    ids = [f"{prefix}{i:04d}" for i in range(n - 1)] + [f"{prefix}0003"]
    features = rng.normal(size=(n, 4)) * 1e3
    features[0, 1], features[1, 2] = np.nan, np.inf
    return DecisionColumns(
        transaction_id=np.array(ids, dtype=object),
        customer_id=np.array([f"c{i % 5}" for i in range(n)], dtype=object),
        timestamp=T0.timestamp() + np.arange(n) * 61.123457,
        amount=rng.uniform(1, 500, n).round(2),
        decision=np.array(["APPROVE", "FLAG", "BLOCK"] * n, dtype=object)[:n],
        probability=rng.uniform(size=n),
        reasons=[
            [{"code": "f1", "value": float(i), "contribution": 0.5, "source": "xgboost"}] for i in range(n)
        ],
        rules=[["night"] if i % 4 == 0 else [] for i in range(n)],
        features=features,
        feature_names=["f0", "f1", "f2", "f3"],
        model_version="m1",
        latency_ms={"total": 2.5, "explain": float("nan")},
        decided_at=T0 + timedelta(seconds=1),
    )


def test_columns_store_exactly_what_their_records_store(store: Store) -> None:
    direct, via_records = columns("a"), columns("b")
    unique = [f"a{i:04d}" for i in range(len(direct) - 1)]
    assert store.decisions.save(direct) == unique
    assert store.decisions.save(via_records.records()) == [u.replace("a", "b", 1) for u in unique]
    assert store.decisions.save(direct) == []
    got_a = store.decisions.get_many(unique)
    got_b = store.decisions.get_many([u.replace("a", "b", 1) for u in unique])
    assert (got_a["a0003"].decision, direct.decision[-1]) == ("APPROVE", "BLOCK")  # the first one won
    assert got_a["a0000"].features["f1"] is None and got_a["a0001"].features["f2"] is None
    for key, a in got_a.items():
        b = got_b[key.replace("a", "b", 1)]
        b.transaction_id = a.transaction_id
        assert a == b


def test_the_rules_aggregates_are_stored_with_each_decision(store: Store) -> None:
    """By name, a missing one as null, the same through columns and through records; none without."""
    direct, via_records, without = columns("g", 6), columns("h", 6), columns("i", 3)
    values = np.arange(12, dtype=np.float64).reshape(6, 2)
    values[2, 1] = np.nan
    for batch in (direct, via_records):
        batch.aggregates, batch.aggregate_names = values, ["bin_count_1h", "bin_sum_1h"]
    store.decisions.save(direct)
    store.decisions.save(via_records.records())
    store.decisions.save(without)
    for prefix in "gh":
        got = store.decisions.get_many([f"{prefix}{i:04d}" for i in range(5)])
        assert got[f"{prefix}0002"].aggregates == {"bin_count_1h": 4.0, "bin_sum_1h": None}
        assert got[f"{prefix}0004"].aggregates == {"bin_count_1h": 8.0, "bin_sum_1h": 9.0}
    assert store.decisions.get("i0001").aggregates is None  # type: ignore[union-attr]


def test_payloads_decided_since_a_time_are_read_by_decision_time(store: Store) -> None:
    early = [Transaction(transaction_id=f"p{i}", timestamp=T0 + timedelta(hours=5 - i), customer_id="c",
                         amount=1.0 + i) for i in range(3)]  # fmt: skip
    late = [Transaction(transaction_id="q0", timestamp=T0, customer_id="c", amount=9.0)]
    for txs, when in ((early, T0), (late, T0 + timedelta(minutes=5))):
        decided = columns(txs[0].transaction_id[0], 4).take(list(range(len(txs))))
        decided.transaction_id = np.array([t.transaction_id for t in txs], dtype=object)
        decided.decided_at = when
        store.decisions.save(decided, txs)
    assert [p["transaction_id"] for p in store.decisions.payloads_decided_since(T0)] == [
        "q0",
        "p2",
        "p1",
        "p0",
    ]
    assert [
        p["transaction_id"] for p in store.decisions.payloads_decided_since(T0 + timedelta(minutes=1))
    ] == ["q0"]


@pytest.mark.parametrize("in_memory", [False, True], ids=["process", "inline"])
def test_the_writer_stores_batches_and_labels_in_order(tmp_path: Path, in_memory: bool) -> None:
    url = "sqlite://" if in_memory else f"sqlite:///{tmp_path}/writer.db"
    with open_store(url) as store:
        store.migrate()
        first, again = columns("w", 2 * SLICE + 3), columns("w", 5)
        label = Label(transaction_id="w0001", is_fraud=True, label_time=T0)
        with DecisionWriter(store) as writer:
            writer.save(first, [label])
            writer.save(again)
        assert writer.stored == len(first) - 1
        assert store.decisions.decided_ids([f"w{i:04d}" for i in range(len(first))]) == {
            f"w{i:04d}" for i in range(len(first) - 1)
        }
        assert [row["transaction_id"] for row in store.labels.for_transactions(["w0001", "w0002"])] == [
            "w0001"
        ]


def test_a_failing_writer_says_why(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/never-migrated.db") as store:
        writer = DecisionWriter(store)
        writer.save(columns("f", 3))
        with pytest.raises(WriterError, match="no such table"):
            writer.close()


def test_an_interrupted_writer_ends_its_process(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/interrupted.db") as store:
        store.migrate()
        with pytest.raises(KeyboardInterrupt), DecisionWriter(store) as writer:
            writer.save(columns("i", 5))
            raise KeyboardInterrupt
        children = multiprocessing.active_children()  # joins those that have ended
        assert "fraudstream-writer" not in [child.name for child in children]


def _table_rows(store: Store, table: str, prefix: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` for ids starting with ``prefix`` (ids without it), but ``received_at``."""
    key = "id" if table == "feature_sets" else "transaction_id"
    with store.db.engine.connect() as conn:
        result = conn.execute(
            text(f"SELECT * FROM {table} WHERE {key} LIKE :p ORDER BY {key}"), {"p": f"{prefix}%"}
        )
        names = list(result.keys())
        rows = [dict(zip(names, row, strict=True)) for row in result]
    for row in rows:
        row.pop("received_at", None)
        row[key] = row[key][len(prefix) :]
        if table == "transactions":  # the payload, and so its hash, repeat the id
            payload = row["payload"]
            payload = json.loads(payload) if isinstance(payload, str) else payload
            assert row.pop("body_hash") == body_hash(Transaction.model_validate(payload))
            row["payload"] = {**payload, "transaction_id": ""}
    return [tuple(row.items()) for row in rows]


def test_small_batches_store_exactly_what_one_large_batch_stores(store: Store) -> None:
    """The score API's batches of one to four (one insert per row on SQLite, one VALUES statement on
    PostgreSQL) and one large batch (look-up then executemany, or COPY) write the same rows, with
    repeats within a batch, replays, changed decisions and transactions accepted or decided before."""
    from dataclasses import replace

    n = MANY + 10

    def rec(prefix: str, i: int, **kw: Any) -> DecisionRecord:
        features = {"amount": 10.0 + i, "ratio": None if i % 7 else float("nan")}
        return replace(record(i, features=features, **kw), transaction_id=f"{prefix}{i:04d}")

    def trans(prefix: str, i: int) -> Transaction:
        return tx(i, customer=f"c{i % 3}").model_copy(update={"transaction_id": f"{prefix}{i:04d}"})

    returned: dict[str, list[str]] = {"s": [], "l": []}
    for prefix in ("s", "l"):
        store.queue.accept([trans(prefix, i) for i in range(0, n, 5)])  # queued, then decided below
        store.decisions.save([rec(prefix, i) for i in range(0, n, 11)])  # decided before
    sizes = [1, 2, 3, 4]
    lo = 0
    while lo < n:
        size = sizes[lo % 4]
        batch = [rec("s", i, decision="FLAG" if i % 2 else "APPROVE") for i in range(lo, min(n, lo + size))]
        batch.append(rec("s", lo, decision="BLOCK"))  # a repeat within the batch: the first wins
        given = [trans("s", i) for i in range(lo, min(n, lo + size)) if i % 4]
        returned["s"] += store.decisions.save(batch, given)
        lo += size
    large = [rec("l", i, decision="FLAG" if i % 2 else "APPROVE") for i in range(n)]
    large += [rec("l", i, decision="BLOCK") for i in range(0, n, 4)]
    returned["l"] = store.decisions.save(large, [trans("l", i) for i in range(n) if i % 4])
    expected = [f"{i:04d}" for i in range(n) if i % 11]
    assert [k[1:] for k in returned["s"]] == [k[1:] for k in returned["l"]] == expected
    for prefix in ("s", "l"):  # replays change nothing
        assert store.decisions.save([rec(prefix, 3, decision="BLOCK")], [trans(prefix, 3)]) == []
    for table in ("decisions", "transactions"):
        small, big = _table_rows(store, table, "s"), _table_rows(store, table, "l")
        assert len(small) == (
            n if table == "decisions" else len([i for i in range(n) if i % 4 or i % 5 == 0])
        )
        assert small == big
    assert {dict(r)["status"] for r in _table_rows(store, "transactions", "s")} == {"decided"}
    assert store.decisions.get_many(["s0001"])["s0001"].decision == "FLAG"


# -- chart counts -------------------------------------------------------------------------------------


def _chart(store: Store, since: datetime, bucket: int, *, from_minutes: bool) -> tuple[dict, dict]:
    by_time, by_score = (minute_series if from_minutes else series_from_decisions)(store, since, bucket)
    times = {(int(s), d): (int(c), int(n), round(float(t or 0), 6), m) for s, d, c, n, t, m in by_time}
    scores: dict[tuple[int, str], int] = {}
    for b, d, c in by_score:  # the top bin holds a probability of 1 too
        scores[min(int(b), 19), d] = scores.get((min(int(b), 19), d), 0) + int(c)
    return times, scores


def _charted_decisions(store: Store) -> None:
    """Decisions over several minutes, some sharing one, at bin edges, without a latency, and replayed."""
    outcomes = ("APPROVE", "FLAG", "BLOCK")
    probabilities = (0.0, 0.05, 0.0499, 0.5, 0.95, 1.0, 0.3)
    records = [
        record(
            i,
            decided_at=T0 + timedelta(seconds=17 * i),
            decision=outcomes[i % 3],
            probability=probabilities[i % 7],
            latency_ms={"total": 0.5 + i} if i % 5 else {"features": 1.0},
        )
        for i in range(40)
    ]
    assert len(store.decisions.save(records[:25])) == 25
    replayed = [record(i, decision="BLOCK", probability=0.99, decided_at=T0) for i in range(20)]
    assert len(store.decisions.save(replayed + records[25:])) == 15  # the first decision wins
    columns = DecisionColumns(
        transaction_id=np.array([f"col{i}" for i in range(6)] + ["t0001"], dtype=object),
        customer_id=np.array(["c2"] * 7, dtype=object),
        timestamp=np.full(7, T0.timestamp()),
        amount=np.full(7, 5.0),
        decision=np.array(["FLAG", "APPROVE"] * 3 + ["BLOCK"], dtype=object),
        probability=np.array([0.2, 0.7, 0.0, 0.99, 0.45, 0.6, 0.9]),
        reasons=[[] for _ in range(7)],
        rules=[[] for _ in range(7)],
        features=np.zeros((7, 2)),
        feature_names=["amount", "ratio"],
        model_version="m1",
        latency_ms={"total": math.nan},  # stored as 0, and counted so
        decided_at=T0 + timedelta(seconds=200),
    )
    assert len(store.decisions.save(columns)) == 6
    rng = np.random.default_rng(5)
    many = 100  # a large batch is counted with numpy
    probability = rng.uniform(0, 1, many)
    probability[:3] = (0.0, 1.0, 0.05)
    large = DecisionColumns(
        transaction_id=np.array([f"big{i}" for i in range(many - 2)] + ["t0002", "col1"], dtype=object),
        customer_id=np.array(["c3"] * many, dtype=object),
        timestamp=np.full(many, T0.timestamp()),
        amount=np.full(many, 5.0),
        decision=np.array([("APPROVE", "FLAG", "BLOCK")[i % 3] for i in range(many)], dtype=object),
        probability=probability,
        reasons=[[] for _ in range(many)],
        rules=[[] for _ in range(many)],
        features=np.zeros((many, 2)),
        feature_names=["amount", "ratio"],
        model_version="m1",
        latency_ms={"total": math.inf},  # stored as 0, and counted so
        decided_at=T0 + timedelta(seconds=610),
    )
    assert len(store.decisions.save(large)) == many - 2


@pytest.mark.parametrize("bucket", [60, 300])
def test_chart_counts_per_minute_match_the_decisions(store: Store, bucket: int) -> None:
    _charted_decisions(store)
    since = T0 - timedelta(minutes=5)
    minutes = _chart(store, since, bucket, from_minutes=True)
    assert minutes == _chart(store, since, bucket, from_minutes=False)
    assert sum(minutes[1].values()) == 46 + 98
    later = T0 + timedelta(minutes=6)  # a window starting later leaves out the earlier minutes
    assert _chart(store, later, 60, from_minutes=True) == _chart(store, later, 60, from_minutes=False)
    assert 98 < sum(_chart(store, later, 60, from_minutes=True)[1].values()) < 46 + 98


def test_stats_counts_exactly_from_a_window_start_within_a_minute(store: Store) -> None:
    _charted_decisions(store)
    everything = store.query(select(decisions.c.decided_at, decisions.c.decision))
    for offset in (-300, 0, 31, 60, 205, 611, 700):
        since = T0 + timedelta(seconds=offset)
        expected: dict[str, int] = {}
        for decided_at, decision in everything:
            if decided_at.replace(tzinfo=UTC) >= since:
                expected[decision] = expected.get(decision, 0) + 1
        assert store.decisions.stats(since)["by_decision"] == expected, offset


def test_migration_0005_counts_the_decisions_already_stored(store: Store) -> None:
    _charted_decisions(store)
    since = T0 - timedelta(minutes=5)
    counted = _chart(store, since, 60, from_minutes=True)
    config = alembic_config()
    with store.db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    store.migrate()
    assert _chart(store, since, 60, from_minutes=True) == counted


# -- history (retraining reads) -------------------------------------------------------------------------


def test_history_streams_decisions_with_vectors_and_label_times_in_event_order(store: Store) -> None:
    assert store.history.span() is None
    store.queue.accept([tx(i) for i in range(1, 6)])
    store.decisions.save([record(i, features={"amount": float(i), "ratio": None}) for i in range(1, 6)])
    store.labels.add(
        [
            Label(transaction_id="t0002", is_fraud=True, label_time=T0 + timedelta(days=2)),
            Label(transaction_id="t0002", is_fraud=False, label_time=T0 + timedelta(days=1), source="review"),
            Label(transaction_id="t0003", is_fraud=False, label_time=T0 + timedelta(days=3)),
        ]
    )
    span = store.history.span()
    assert span is not None and span.count == 5
    assert (span.first, span.last) == (T0 + timedelta(minutes=1), T0 + timedelta(minutes=5))
    part = store.history.span(T0 + timedelta(minutes=2), T0 + timedelta(minutes=4))
    assert part == Span(T0 + timedelta(minutes=2), T0 + timedelta(minutes=3), 2)
    assert store.history.span(T0 + timedelta(days=1)) is None
    chunks = list(store.history.decisions(T0 + timedelta(minutes=2), T0 + timedelta(minutes=5), chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 1]  # [start, end): t0005 is at the end, left out
    rows = pd.concat(chunks, ignore_index=True)
    assert rows["transaction_id"].tolist() == ["t0002", "t0003", "t0004"]
    names = store.history.feature_names()[rows["feature_set"][0]]
    assert names == ["amount", "ratio"]
    values = np.frombuffer(b"".join(rows["feature_values"]), dtype="<f8").reshape(len(rows), len(names))
    assert values[:, 0].tolist() == [2.0, 3.0, 4.0] and np.isnan(values[:, 1]).all()
    assert rows["fraud_label_time"][0] == T0 + timedelta(days=2)
    assert rows["legit_label_time"][0] == T0 + timedelta(days=1)
    assert pd.isna(rows["fraud_label_time"][1]) and rows["legit_label_time"][1] == T0 + timedelta(days=3)
    assert rows[list(LABEL_COLUMNS)][2:].isna().all().all()
    assert str(rows["timestamp"].dtype) == "datetime64[us, UTC]"


def test_history_streams_decided_transactions_with_their_payloads(store: Store) -> None:
    store.queue.accept([tx(i, extra={"k": i}) for i in range(1, 4)])
    store.decisions.save([record(1), record(2)])  # t0003 is still queued: not history yet
    store.labels.add([Label(transaction_id="t0001", is_fraud=True, label_time=T0 + timedelta(hours=5))])
    rows = pd.concat(list(store.history.transactions(T0, T0 + timedelta(days=1))), ignore_index=True)
    assert rows["transaction_id"].tolist() == ["t0001", "t0002"]
    assert [Transaction.model_validate(p).extra for p in rows["payload"]] == [{"k": 1}, {"k": 2}]
    assert rows["fraud_label_time"][0] == T0 + timedelta(hours=5) and pd.isna(rows["fraud_label_time"][1])
    assert list(store.history.transactions(T0 + timedelta(days=1), T0 + timedelta(days=2))) == []
    with pytest.raises(ValueError, match="chunk_rows"):
        list(store.history.decisions(T0, T0, chunk_rows=0))


# -- model promotions (the registry's champion moves) ---------------------------------------------------


def test_promotions_are_recorded_and_listed_newest_first_per_model(store: Store) -> None:
    from fraudstream.storage.promotions import Promotion

    assert store.promotions.list() == []
    first = store.promotions.add(Promotion("fraudstream", "register", "1", "alice", promoted_at=T0))
    assert first.id is not None and first.promoted_at == T0 and first.from_version is None
    comparison = {"challenger": {"average_precision": 0.71}, "champion": {"average_precision": 0.69}}
    second = store.promotions.add(
        Promotion("fraudstream", "promote", "2", "bob", from_version="1", comparison=comparison)
    )
    assert second.promoted_at is not None and second.promoted_at.tzinfo is not None
    store.promotions.add(Promotion("other", "promote", "7", "carol", from_version="6"))
    listed = store.promotions.list("fraudstream")
    assert [(p.action, p.from_version, p.to_version, p.promoted_by) for p in listed] == [
        ("promote", "1", "2", "bob"),
        ("register", None, "1", "alice"),
    ]
    assert listed[0].comparison == comparison and listed[1].promoted_at == T0
    assert len(store.promotions.list()) == 3 and len(store.promotions.list(limit=1)) == 1
    assert listed[0].to_dict()["promoted_at"] == second.promoted_at.isoformat()


def test_a_promotion_with_an_unknown_action_or_no_author_is_refused_and_not_stored(store: Store) -> None:
    from fraudstream.storage.promotions import Promotion

    with pytest.raises(ValueError, match="action"):
        store.promotions.add(Promotion("fraudstream", "crown", "2", "bob"))
    with pytest.raises(ValueError, match="promoted_by"):
        store.promotions.add(Promotion("fraudstream", "promote", "2", " "))
    assert store.promotions.list() == []


def test_parity_checks_are_recorded_and_the_newest_read_back(store: Store) -> None:
    from fraudstream.storage.parity import ParityCheck

    assert store.parity.latest() is None
    day = timedelta(days=1)
    older = ParityCheck(T0, T0 - day, T0, "m1", 100, 2, {"customer": 1, "row": 0})
    newer = ParityCheck(T0 + day, T0, T0 + day, "m2", 120, 0, {"customer": 0, "row": 0})
    store.parity.add(newer)
    store.parity.add(older)  # recorded later, checked earlier: the newest check is what counts
    assert store.parity.latest() == newer


# -- the challenger in shadow: its fields round-trip, and the comparison reads them as columns ----------


def _shadowed(prefix: str, n: int) -> DecisionColumns:
    """:func:`columns` with a challenger's probability and decision beside the champion's."""
    base = columns(prefix, n)
    rng = np.random.default_rng(3)
    base.shadow_version = "challenger-7"
    base.shadow_probability = rng.uniform(size=n)
    base.shadow_decision = np.array(["FLAG", "APPROVE"] * n, dtype=object)[:n]
    return base


@pytest.mark.parametrize("n", [5, MANY + 7], ids=["insert", "copy"])
def test_shadow_fields_round_trip_from_columns_and_records(store: Store, n: int) -> None:
    direct, via_records, plain = _shadowed("s", n), _shadowed("r", n), columns("p", n)
    store.decisions.save(direct)
    store.decisions.save(via_records.records())
    store.decisions.save(plain)
    ids = [f"s{i:04d}" for i in range(n - 1)]
    got = store.decisions.get_many(ids)
    again = store.decisions.get_many([f"r{i:04d}" for i in range(n - 1)])
    for i, key in enumerate(ids):
        record = got[key]
        assert record.shadow_version == "challenger-7"
        assert record.shadow_probability == float(direct.shadow_probability[i])  # float64, exactly
        assert record.shadow_decision == direct.shadow_decision[i]
        other = again[key.replace("s", "r", 1)]
        assert (other.shadow_version, other.shadow_probability, other.shadow_decision) == (
            record.shadow_version,
            record.shadow_probability,
            record.shadow_decision,
        )
    unshadowed = store.decisions.get_many(["p0000"])["p0000"]
    assert (unshadowed.shadow_version, unshadowed.shadow_probability, unshadowed.shadow_decision) == (
        None,
        None,
        None,
    )


def test_the_comparison_reads_labelled_decisions_with_their_shadow_as_columns(store: Store) -> None:
    shadowed, plain = _shadowed("s", 9), columns("p", 9)
    store.decisions.save(shadowed)
    store.decisions.save(plain)
    store.labels.add(
        [
            Label(transaction_id="s0001", is_fraud=True, label_time=T0),
            Label(transaction_id="s0002", is_fraud=False, label_time=T0),
            Label(transaction_id="p0004", is_fraud=False, label_time=T0, source="review"),
            Label(transaction_id="p0004", is_fraud=True, label_time=T0),
        ]
    )
    rows = store.comparison.labelled_decisions(T0)
    assert len(rows) == 3
    by_amount = {float(a): i for i, a in enumerate(rows.amount)}
    s1, s2, p4 = (by_amount[float(c.amount[i])] for c, i in ((shadowed, 1), (shadowed, 2), (plain, 4)))
    assert rows.is_fraud[[s1, s2, p4]].tolist() == [True, False, True]  # fraud when any source says so
    assert rows.shadow_version[[s1, s2]].tolist() == ["challenger-7"] * 2 and rows.shadow_version[p4] is None
    assert rows.shadow_probability[s1] == shadowed.shadow_probability[1] and np.isnan(
        rows.shadow_probability[p4]
    )
    assert rows.shadow_decision[s2] == "FLAG" and rows.decision[s1] == shadowed.decision[1]
    assert rows.probability[p4] == plain.probability[4]
    assert len(store.comparison.labelled_decisions(T0 + timedelta(days=1))) == 0
