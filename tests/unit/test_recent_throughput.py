"""``Store.stats`` reports the rate flowing now next to the window's average: an hour's window opened a
minute after traffic began averages it down to a sixtieth."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fraudstream.events.decision import DecisionRecord
from fraudstream.storage import Store, open_store
from fraudstream.storage.store import RECENT_SECONDS


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/stats.db") as s:
        s.migrate()
        yield s


def _decided(i: int, at: datetime) -> DecisionRecord:
    return DecisionRecord(
        transaction_id=f"t{i}", customer_id="c1", timestamp=at, amount=10.0, decision="APPROVE",
        probability=0.1, reasons=[], rules=[], model_version="m1", features={"amount": 10.0},
        latency_ms={"total": 1.0}, decided_at=at,
    )  # fmt: skip


def test_the_recent_rate_counts_the_last_minute_only(store: Store) -> None:
    now = datetime.now(UTC)
    earlier = [_decided(i, now - timedelta(minutes=30)) for i in range(600)]
    recent = [_decided(1000 + i, now - timedelta(seconds=20)) for i in range(300)]
    store.decisions.save(earlier + recent)
    stats = store.decisions.stats(now - timedelta(hours=1))
    assert stats["total"] == 900
    assert stats["throughput_per_s"] == pytest.approx(900 / (30 * 60), rel=0.01)  # since the first, not 1 h
    assert stats["recent_s"] == pytest.approx(RECENT_SECONDS, abs=5)
    assert stats["recent_throughput_per_s"] == pytest.approx(300 / stats["recent_s"], rel=0.01)


def test_a_window_shorter_than_a_minute_is_its_own_recent_rate(store: Store) -> None:
    now = datetime.now(UTC)
    store.decisions.save([_decided(i, now - timedelta(seconds=5)) for i in range(50)])
    stats = store.decisions.stats(now - timedelta(seconds=30))
    assert stats["recent_s"] == pytest.approx(30, abs=5)
    assert stats["recent_throughput_per_s"] == pytest.approx(50 / stats["recent_s"], rel=0.01)
    assert stats["throughput_per_s"] == pytest.approx(50 / 5, rel=0.2)  # over the 5 s it saw decisions
    assert (
        store.decisions.stats(now + timedelta(hours=1))["recent_throughput_per_s"] == 0.0
    )  # a window not begun
