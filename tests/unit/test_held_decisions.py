"""The decision journal of a SQLite store: what a crash leaves, and what the next process does with it.

Holding as every backend sees it (read as decided, stored once) is in the storage contract suite.
"""

from __future__ import annotations

import base64
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest

from fraudstream.events.decision import DecisionRecord, FeatureVector
from fraudstream.events.transaction import Transaction
from fraudstream.storage import StorageError, Store, open_store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAMES = ("amount", "ratio", "hour")


def tx(i: int) -> Transaction:
    return Transaction(
        transaction_id=f"t{i}", timestamp=T0 + timedelta(minutes=i), customer_id="c1", amount=10.0 + i
    )


def record(i: int, decision: str = "APPROVE") -> DecisionRecord:
    return DecisionRecord(
        transaction_id=f"t{i}",
        customer_id="c1",
        timestamp=T0 + timedelta(minutes=i),
        amount=10.0 + i,
        decision=decision,
        probability=0.1 * i,
        reasons=[{"feature": "amount", "contribution": 0.5}],
        rules=["big_amount"] if decision != "APPROVE" else [],
        model_version="m1",
        features=FeatureVector(NAMES, np.array([10.0 + i, np.nan, 12.0])),
        latency_ms={"total": 1.25, "model": float("nan")},
        decided_at=T0 + timedelta(minutes=i, seconds=1),
    )


def sqlite(path: Path) -> Store:
    store = open_store(f"sqlite:///{path / 'fraud.db'}")
    store.migrate()
    return store


def journals(path: Path) -> list[Path]:
    return sorted(path.glob("fraud.db-held-*"))


def die(store: Store) -> None:
    """What a killed process leaves: its journal, unlocked, and nothing stored."""
    journal = store.held._journal
    assert journal is not None and journal._fd is not None
    os.close(journal._fd)
    journal._fd = None
    journal._held.clear()
    store.db.engine.dispose()


def test_the_journal_is_emptied_when_nothing_is_held_and_removed_at_close(tmp_path: Path) -> None:
    store = sqlite(tmp_path)
    assert journals(tmp_path) == []  # nothing is created before the first hold
    store.decisions.hold([record(1), record(2)], [tx(1), tx(2)])
    (journal,) = journals(tmp_path)
    assert len(journal.read_bytes().splitlines()) == 3  # the feature names once, then one line each
    assert store.held.release() == ["t1", "t2"]
    assert journal.stat().st_size == 0
    store.decisions.hold([record(3)], [tx(3)])
    assert len(journal.read_bytes().splitlines()) == 2  # names again: the file started over
    store.close()  # stores nothing: what is still held stays for the next start
    assert journals(tmp_path) == [journal]


def test_a_live_process_journal_is_left_alone_and_a_dead_one_s_is_stored(tmp_path: Path) -> None:
    first, second = sqlite(tmp_path), sqlite(tmp_path)
    answered = [record(1), record(2, "FLAG")]
    assert first.decisions.hold(answered, [tx(1), tx(2)]) == ["t1", "t2"]
    assert second.held.recover() == 0  # the first still runs: its lock holds
    assert second.decisions.get("t1") is None
    die(first)
    assert second.held.recover() == 2
    assert journals(tmp_path) == []
    stored = second.decisions.get_many(["t1", "t2"])
    for want in answered:
        got = stored[want.transaction_id]
        assert (got.decision, got.rules, got.reasons) == (want.decision, want.rules, want.reasons)
        assert got.decided_at == want.decided_at and got.timestamp == want.timestamp
        assert got.features == {"amount": want.amount, "ratio": None, "hour": 12.0}
    assert [stored[i].probability for i in ("t1", "t2")] == pytest.approx([0.1, 0.2])
    row = second.decisions.get_transaction("t2")
    assert row is not None and row["status"] == "decided" and row["payload"]["amount"] == 12.0
    assert second.decisions.stats(T0 - timedelta(days=1))["total"] == 2
    assert second.held.recover() == 0  # stored once
    second.close()


def test_a_cut_short_last_line_is_skipped_and_a_damaged_line_stops_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = sqlite(tmp_path)
    first.decisions.hold([record(1), record(2)], [tx(1), tx(2)])
    die(first)
    (journal,) = journals(tmp_path)
    whole = journal.read_bytes()
    journal.write_bytes(whole + whole.splitlines(keepends=True)[-1][:40])  # the machine stopped mid-write
    second = sqlite(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fraudstream.storage._journal"):
        assert second.held.recover() == 2
    assert "cut short" in caplog.text and journals(tmp_path) == []

    third = sqlite(tmp_path)
    third.decisions.hold([record(3), record(4)], [tx(3), tx(4)])
    die(third)
    (journal,) = journals(tmp_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0] + b"not json\n" + b"".join(lines[1:]))
    damaged = rf"{journal.name}, line 2: not a held decision .*fix or delete that line"
    with pytest.raises(StorageError, match=damaged):
        second.held.recover()
    assert journals(tmp_path) == [journal]  # kept for someone to look at
    assert second.decisions.get("t3") is None
    second.close()


def test_an_in_memory_store_stores_at_once() -> None:
    store = open_store("sqlite://")
    store.migrate()
    assert not store.held.holds
    assert store.decisions.hold([record(1)], [tx(1)]) == ["t1"]
    assert store.held.release() == [] and store.decisions.get("t1") is not None


def test_a_line_whose_features_do_not_match_their_names_stops_the_start(tmp_path: Path) -> None:
    first = sqlite(tmp_path)
    first.decisions.hold([record(1)], [tx(1)])
    die(first)
    (journal,) = journals(tmp_path)
    names_line, line = journal.read_bytes().splitlines(keepends=True)
    item = orjson.loads(line)
    item["d"]["features"][1] = base64.b64encode(np.zeros(2).tobytes()).decode()
    journal.write_bytes(names_line + orjson.dumps(item) + b"\n")
    second = sqlite(tmp_path)
    with pytest.raises(StorageError, match=r"line 2: not a held decision \(2 feature values for the 3 names"):
        second.held.recover()
    assert second.decisions.get("t1") is None
    second.close()
