"""Storage specifics that need no server: SQLite tuning, URLs and errors, row encodings.

The behaviour every backend shares (idempotency, the queue, pagination, stats, migrations) is tested
against SQLite and PostgreSQL alike in ``tests/integration/test_storage_contract.py``.
"""

from __future__ import annotations

import importlib.util
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import DateTime, event
from sqlalchemy.dialects import sqlite

from fraudstream.events.decision import DecisionRecord
from fraudstream.events.transaction import Transaction
from fraudstream.storage import StorageError, Store, open_store
from fraudstream.storage._checkpoint import EVERY, PASSES, THREAD_NAME, WalCheckpointer
from fraudstream.storage.bulk import timestamp_converter
from fraudstream.storage.database import dumps, loads, normalize_url
from fraudstream.storage.rows import feature_set_id, pack_features, payload_json, unique_by, unpack_features
from fraudstream.storage.tables import UTCDateTime
from tests.waiting import wait_for

#: How the bulk writes store a timestamp on SQLite.
sqlite_timestamp = timestamp_converter("sqlite")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/nested/fraud.db") as s:
        s.migrate()
        yield s


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(store: Store) -> None:
    with store.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_ping_unreachable_names_the_url(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}") as s, pytest.raises(StorageError, match="unreachable") as info:
        s.ping()
    assert str(tmp_path) in str(info.value)


def test_a_file_that_is_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_text("this is not a database")
    with pytest.raises(StorageError, match=r"bogus\.db is unreachable or unusable .*check the URL"):
        open_store(f"sqlite:///{bogus}").ping()


def test_open_store_rejects_unknown_schemes() -> None:
    with pytest.raises(
        StorageError, match=r"unsupported database URL scheme 'mysql'.*sqlite:///.*postgresql://"
    ):
        open_store("mysql://u:p@localhost/db")
    assert normalize_url("postgresql://u:p@db:5432/fraud").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u:p@db/fraud").drivername == "postgresql+psycopg"


def test_open_store_postgres_needs_psycopg_only_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("psycopg") is not None:
        from fraudstream.storage import _postgres

        asked: list[dict[str, Any]] = []
        create_engine = _postgres.create_engine

        def recorded(url: Any, **options: Any) -> Any:
            asked.append(options)
            return create_engine(url, **options)

        monkeypatch.setattr(_postgres, "create_engine", recorded)
        store = open_store("postgresql://u:secret@localhost:1/fraud", pool_size=3, max_overflow=2)
        assert store.url.drivername == "postgresql+psycopg"
        assert "secret" not in repr(store)
        assert store.db.engine.pool.size() == 3
        assert [o["pool_pre_ping"] for o in asked] == [True]  # a restarted server's connections are replaced
    else:
        with pytest.raises(StorageError, match="psycopg"):
            open_store("postgresql://u:secret@localhost:1/fraud")


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is None, reason="needs psycopg")
def test_unreachable_postgres_is_one_line_with_the_password_masked() -> None:
    with open_store("postgresql://fraud:s3cret@127.0.0.1:1/fraud") as s, pytest.raises(StorageError) as info:
        s.ping()
    message = str(info.value)
    assert "\n" not in message and "s3cret" not in message
    assert "postgresql+psycopg://fraud:***@127.0.0.1:1/fraud is unreachable" in message
    assert message.endswith("is PostgreSQL running? `make services` (or check the host and port in the URL)")


def test_sqlite_timestamps_match_sqlalchemys_own_format() -> None:
    process = DateTime().dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
    assert process is not None
    plus_two = timezone(timedelta(hours=2))
    for value in (
        datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
        datetime(2024, 3, 1, 14, 0, 0, 7, tzinfo=plus_two),
        datetime(999, 1, 2, 3, 4, 5, 600000),
    ):
        naive_utc = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        assert sqlite_timestamp(value) == process(naive_utc)


def test_utc_datetime_columns_store_the_same_text_on_sqlite_as_the_bulk_writes() -> None:
    process = UTCDateTime().dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
    assert process is not None
    memo = timestamp_converter("sqlite", memo=True)
    for value in (
        datetime(2024, 3, 1, 14, 0, 0, 7, tzinfo=timezone(timedelta(hours=2))),
        datetime(2024, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
        datetime(999, 1, 2, 3, 4, 5, 600000),
    ):
        assert process(value) == sqlite_timestamp(value) == memo(value) == memo(value)


def test_feature_vectors_pack_by_name_list_and_unpack_exactly() -> None:
    names = ["b", "a", "c"]
    vectors: list[dict[str, float | None]] = [
        {"b": 1.0, "a": None, "c": math.pi},
        {"b": -0.0, "a": 1e-310, "c": float("inf")},
        {"x": np.float32(0.5)},  # type: ignore[dict-item]
        {"b": 2.0, "a": 3.0, "c": 4.0},
    ]
    set_ids, packed, known = pack_features(vectors)
    assert set_ids[0] == set_ids[1] == set_ids[3] == feature_set_id(names) != set_ids[2]
    assert known == {feature_set_id(names): names, set_ids[2]: ["x"]}
    assert [len(p) for p in packed] == [24, 24, 8, 24]
    assert list(unpack_features(names, packed[0]).items()) == [("b", 1.0), ("a", None), ("c", math.pi)]
    assert unpack_features(names, packed[1]) == {"b": 0.0, "a": 1e-310, "c": None}
    assert unpack_features(["x"], packed[2]) == {"x": 0.5}
    assert pack_features([{}]) == ([feature_set_id([])], [b""], {feature_set_id([]): []})
    with pytest.raises(ValueError):
        unpack_features(["only one"], packed[0])


def test_unique_by_keeps_the_first_of_each_key_in_order() -> None:
    assert unique_by([3, 1, 3, 2, 1], lambda v: v) == [3, 1, 2]
    assert unique_by(iter([1, 2]), lambda v: v) == [1, 2]


def test_a_stored_payload_is_model_dump_json_byte_for_byte() -> None:
    rng = np.random.default_rng(11)
    at = datetime(2018, 4, 1, 0, 0, 31, 123457, tzinfo=UTC)
    transactions = [
        Transaction(transaction_id="t1", timestamp=at.replace(microsecond=0), customer_id="c", amount=57.16),
        Transaction(transaction_id=" ç2 ", timestamp="2018-04-01T02:00:00+02:00", customer_id="c",
                    amount=1e-05, channel="pos", latitude=48.85, longitude=-2.35, country="FR",
                    account_created_at=datetime(2017, 1, 1), is_fraud=True, label_time=at,
                    extra={"n": 1, "x": [1.5, None, "é"], "nested": {"k": 1e22}}),
        Transaction(transaction_id="t3", timestamp=at, customer_id="c", amount=1.0, extra={"big": 2**70}),
        *(Transaction(transaction_id=f"r{i}", timestamp=at, customer_id="c", amount=float(v),
                      extra={"v": float(v) * 1e-9}) for i, v in enumerate(10 ** rng.uniform(-6, 11, 500)))
    ]  # fmt: skip
    for tx in transactions:
        assert payload_json(tx) == tx.model_dump_json()


def test_json_columns_write_nan_as_null_and_keep_huge_integers() -> None:
    assert (
        dumps({"a": float("nan"), "b": float("inf"), "c": np.float32(1.5), "d": 2})
        == '{"a":null,"b":null,"c":1.5,"d":2}'
    )
    assert dumps({"big": 2**70}) == '{"big":1180591620717411303424}'
    assert loads(dumps({"big": 2**70})) == {"big": 2**70}
    assert loads(b'{"a":[1,2.5,null]}') == {"a": [1, 2.5, None]}


def _checkpoint_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == THREAD_NAME}


def _usable(connection: sqlite3.Connection) -> bool:
    try:
        connection.execute("SELECT 1")
    except sqlite3.ProgrammingError:  # closed
        return False
    return True


def test_wal_checkpoints_run_off_the_committing_thread(tmp_path: Path) -> None:
    path = tmp_path / "ck.db"
    store = open_store(f"sqlite:///{path}")
    store.migrate()
    before, size = _checkpoint_threads(), path.stat().st_size  # the schema is in the WAL only
    for i in range(EVERY):
        store.dead_letters.add([("transactions", f"payload {i}", "test")])
    (thread,) = _checkpoint_threads() - before
    wait_for(lambda: path.stat().st_size > size, "a checkpoint to copy the WAL into the database file")
    store.close()
    assert not thread.is_alive()
    with store.db.read() as conn:
        (busy, log, done), *_ = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    assert busy == 0 and log == done  # the WAL is fully in the database file
    for i in range(EVERY):  # a store used again after close checkpoints again
        store.dead_letters.add([("transactions", f"again {i}", "test")])
    (again,) = _checkpoint_threads() - before
    assert again is not thread and again.is_alive()
    store.close()
    assert not again.is_alive()


@pytest.mark.parametrize(
    ("replies", "passes"),
    [
        ([(0, 30, 30), (0, 30, 30)], 2),  # idle: the second pass finds nothing new
        ([(0, 30, 30), (0, 42, 42), (0, 42, 42)], 3),  # a commit landed during the first pass
        ([(0, 30, 30), (0, 5, 5), (0, 5, 5)], 3),  # a writer started the WAL over meanwhile
        ([(1, 30, 20)] * 20, PASSES),  # a reader holds frames back: give up until the next wake-up
    ],
)
def test_wal_checkpoints_pass_until_nothing_new_was_committed(
    replies: list[tuple[int, int, int]], passes: int
) -> None:
    """A passive pass copies the WAL as it was when the pass began, so "all frames copied" can leave
    the commits made meanwhile. Stopping there (one pass per checkpoint) meant that under steady writes
    the WAL never started over, and every 10,000 pages the writer's own automatic checkpoint stalled a
    commit by 4–8 ms."""
    asked: list[str] = []

    class Driver:
        def execute(self, sql: str) -> Driver:
            asked.append(sql)
            return self

        def fetchone(self) -> tuple[int, int, int]:
            return replies[len(asked) - 1]

    class Raw:
        driver_connection = Driver()
        closed = False

        def close(self) -> None:
            Raw.closed = True

    engine = type("Engine", (), {"raw_connection": staticmethod(Raw)})()
    checkpointer = WalCheckpointer(engine)  # type: ignore[arg-type]
    assert checkpointer.checkpoint() == passes
    assert asked == ["PRAGMA wal_checkpoint(PASSIVE)"] * passes
    assert Raw.closed and checkpointer.checkpoints == 1


def test_in_memory_sqlite_has_no_checkpointer() -> None:
    before = _checkpoint_threads()
    with open_store("sqlite://") as store:
        store.migrate()
        for i in range(EVERY):
            store.dead_letters.add([("transactions", f"payload {i}", "test")])
        assert _checkpoint_threads() == before and store.db.writers is None


def _decision(i: int) -> DecisionRecord:
    return DecisionRecord(
        transaction_id=f"t{i}",
        customer_id="c1",
        timestamp=datetime(2024, 3, 1, 12, tzinfo=UTC) + timedelta(minutes=i),
        amount=10.0,
        decision="APPROVE",
        probability=0.1,
        reasons=[],
        rules=[],
        model_version="m1",
        features={"amount": 10.0},
        latency_ms={"total": 1.0},
    )


def test_each_writing_thread_keeps_one_connection_until_it_ends_or_the_store_closes(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'threads.db'}")
    store.migrate()
    writers, before = store.db.writers, _checkpoint_threads()
    assert writers is not None
    assert store.decisions.save([_decision(1)]) == ["t1"]
    mine = writers.acquire()
    writers.release(mine)
    assert store.decisions.save([_decision(2), _decision(1)]) == ["t2"]
    assert writers.acquire() is mine  # kept, not checked out anew
    writers.release(mine)
    theirs: list[sqlite3.Connection] = []

    def save_in_a_thread(i: int) -> None:
        def save() -> None:
            store.decisions.save([_decision(i)])
            kept = writers.acquire()  # the connection the save used, still this thread's
            writers.release(kept)
            theirs.append(kept)

        thread = threading.Thread(target=save)
        thread.start()
        thread.join()

    save_in_a_thread(3)
    (other,) = theirs
    assert other is not mine and _usable(other) and _usable(mine)  # kept after the thread ended
    assert store.decisions.save([_decision(4)]) == ["t4"]
    save_in_a_thread(5)
    closer = theirs[1]
    assert not _usable(other)  # the ended thread's connection was closed when the next one opened
    assert _usable(closer) and _usable(mine)
    for i in range(10, 10 + EVERY):
        store.decisions.save([_decision(i)])
    (checkpointer,) = _checkpoint_threads() - before  # the bulk writes count their commits
    store.close()
    assert not _usable(mine) and not _usable(closer) and not checkpointer.is_alive()
    assert store.decisions.save([_decision(6), _decision(5)]) == ["t6"]  # reopens after close
    assert store.decisions.decided_ids([f"t{i}" for i in range(8)]) == {f"t{i}" for i in range(1, 7)}
    store.close()


def test_closing_the_store_lets_another_threads_write_finish(tmp_path: Path) -> None:
    from fraudstream.storage import bulk

    store = open_store(f"sqlite:///{tmp_path / 'closing.db'}")
    store.migrate()
    writing, closed = threading.Event(), threading.Event()
    real_set_column = bulk.set_column
    outcome: list[object] = []

    used: list[sqlite3.Connection] = []

    def slow_set_column(*args: Any, **kwargs: Any) -> int:
        used.append(args[0])  # the writing thread's connection
        writing.set()
        closed.wait(10)
        return real_set_column(*args, **kwargs)

    def save() -> None:
        try:
            outcome.append(store.decisions.save([_decision(1)]))
        except Exception as exc:
            outcome.append(exc)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bulk, "set_column", slow_set_column)
        writer = threading.Thread(target=save)
        writer.start()
        assert writing.wait(10)
        store.close()
        closed.set()
        writer.join(10)
    assert outcome == [["t1"]]
    assert isinstance(used[0], sqlite3.Connection) and not _usable(used[0])  # closed once the write ended
    assert store.decisions.decided_ids(["t1"]) == {"t1"}  # committed, and the store reopens for reads
    store.close()


def test_a_failed_bulk_write_rolls_back_and_the_thread_connection_goes_on(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fraudstream.storage import bulk

    def broken(*_: object, **__: object) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(bulk, "set_column", broken)
        with pytest.raises(StorageError, match="unreachable or unusable"):
            store.decisions.save([_decision(1)])
    assert store.decisions.decided_ids(["t1"]) == set()
    assert store.decisions.save([_decision(1)]) == ["t1"]


def test_feature_set_ids_are_remembered_but_always_the_digest() -> None:
    import hashlib

    import orjson

    names = [f"f{i}" for i in range(100)]
    digest = hashlib.sha256(orjson.dumps(names)).hexdigest()[:32]
    assert feature_set_id(names) == feature_set_id(tuple(names)) == digest
    for i in range(200):  # more lists than are remembered
        assert (
            feature_set_id([*names, str(i)])
            == hashlib.sha256(orjson.dumps([*names, str(i)])).hexdigest()[:32]
        )
    assert feature_set_id(list(names)) == digest


def _add_rows(path: Path, sql: str, rows: list[tuple[Any, ...]]) -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany(sql, rows)


def _add_decisions(path: Path, rows: list[tuple[str, str, datetime, str]]) -> None:
    """``(transaction_id, customer_id, event time, outcome)`` rows straight into the file, quickly."""
    _add_rows(
        path,
        "INSERT INTO decisions (transaction_id, decided_at, timestamp, customer_id, amount, decision,"
        " probability, reasons, rules, model_version, feature_set, feature_values, latency_ms)"
        " VALUES (?, ?, ?, ?, 1, ?, 0.5, '[]', '[]', 'v', 'none', x'', '{}')",
        [(t, sqlite_timestamp(ts), sqlite_timestamp(ts), c, d) for t, c, ts, d in rows],
    )


def _add_alerts(path: Path, rows: list[tuple[datetime, str]]) -> None:
    """``(created_at, entity)`` ``block`` alerts straight into the file."""
    _add_rows(
        path,
        "INSERT INTO alerts (created_at, kind, entity, payload, status)"
        " VALUES (?, 'block', ?, '{}', 'stored')",
        [(sqlite_timestamp(at), entity) for at, entity in rows],
    )


@contextmanager
def _vm_steps(store: Store) -> Iterator[list[int]]:
    """Counts SQLite's virtual-machine steps (in hundreds) of the store's statements meanwhile: the
    work a query does, without timing it."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    def watch(conn: Any, *_: Any) -> None:
        conn.connection.driver_connection.set_progress_handler(tick, 100)

    event.listen(store.db.engine, "before_cursor_execute", watch)
    try:
        yield steps
    finally:
        event.remove(store.db.engine, "before_cursor_execute", watch)


def test_flag_history_reads_the_window_s_flags_not_the_table(tmp_path: Path) -> None:
    """The burst detector asks after every batch of decisions, so the work must follow the FLAGs in
    the window, not the table. Counted while the table grows with the same customers' older decisions
    and other customers' FLAGs: through the customer index (ordered by decision time) or the index led
    by the outcome, the count grew with them (52 → 1,052)."""
    path = tmp_path / "fraud.db"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    asked = [f"c{i}" for i in range(20)]
    mine = [(f"t{i}", asked[i % 3], start + timedelta(minutes=i), "FLAG") for i in range(6)]
    expected = sorted((c, t, ts) for t, c, ts, _ in mine[:5])
    steps = []
    with open_store(f"sqlite:///{path}") as s:
        s.migrate()
        _add_decisions(path, mine)
        for more in (1_000, 20_000):
            older = [
                (f"h{more}-{i}", asked[i % 20], start - timedelta(hours=1, seconds=i), "FLAG")
                for i in range(more)
            ]
            others = [
                (f"o{more}-{i}", f"x{i % 500}", start + timedelta(seconds=i % 240), "FLAG")
                for i in range(more)
            ]
            _add_decisions(path, older + others)
            with _vm_steps(s) as counted:
                assert sorted(s.alerts.flag_history(asked, start, start + timedelta(minutes=4))) == expected
            steps.append(counted[0])
    assert steps[1] <= steps[0] * 1.5


def test_recent_alert_keys_read_the_asked_entities_alerts_not_the_window_s(tmp_path: Path) -> None:
    """De-duplication asks after every batch too: its work must not grow with the other entities'
    alerts of the window."""
    path = tmp_path / "fraud.db"
    now = datetime.now(UTC)
    asked = {("block", f"customer:c{i}") for i in range(20)}
    steps = []
    with open_store(f"sqlite:///{path}") as s:
        s.migrate()
        _add_alerts(path, [(now - timedelta(minutes=20), "customer:c1"), (now, "customer:c2")])
        for more in (1_000, 20_000):
            _add_alerts(
                path, [(now - timedelta(seconds=i % 500), f"customer:x{more}-{i}") for i in range(more)]
            )
            with _vm_steps(s) as counted:
                assert s.alerts.recent_keys(asked, now - timedelta(minutes=10)) == {("block", "customer:c2")}
            steps.append(counted[0])
    assert steps[1] <= steps[0] * 1.5
