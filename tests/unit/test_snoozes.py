"""Rule snoozes: how a rule set honours them on a batch (by each row's own time), how a running process
follows the stored ones, and how they are stored and audited (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from fraudstream.rules import parse_rules
from fraudstream.rules.snoozes import NO_SNOOZES, LiveSnoozes, SnoozedRules, Snoozes
from fraudstream.storage import Store, open_store
from fraudstream.storage.migrate import upgrade
from fraudstream.storage.snoozes import SnoozeError
from fraudstream.storage.tables import metadata

KNOWN = {"amount": "number", "timestamp": "number", "customer_id": "string", "device_id": "string"}
RULES = parse_rules(
    {
        "rules": [
            {"name": "big", "when": "amount > 100", "action": "BLOCK", "reason": "big", "alert": True},
            {"name": "mid", "when": "amount > 50", "action": "FLAG", "reason": "mid"},
        ]
    },
    KNOWN,
)
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    rule: str
    field: str
    value: str
    until: datetime


def batch(*rows: tuple[str, str | None, float, datetime]) -> dict[str, np.ndarray]:
    customers, devices, amounts, times = zip(*rows, strict=True)
    return {
        "customer_id": np.array(customers, dtype=object),
        "device_id": np.array(devices, dtype=object),
        "amount": np.array(amounts, dtype=np.float64),
        "timestamp": np.array([t.timestamp() for t in times]),
    }


def approve(n: int) -> np.ndarray:
    return np.array(["APPROVE"] * n, dtype=object)


def test_a_snoozed_hit_decides_nothing_for_that_customer_and_is_recorded() -> None:
    snoozes = Snoozes.of([Entry("big", "customer_id", "c1", T0 + timedelta(days=1))])
    cols = batch(("c1", None, 500.0, T0), ("c2", None, 500.0, T0), ("c1", None, 5.0, T0))
    out = RULES.snoozed(snoozes).apply(cols, approve(3))
    assert out.decision.tolist() == ["FLAG", "BLOCK", "APPROVE"]  # c1: the other rule still acts
    assert out.recorded == [["mid", "snoozed:big"], ["big", "mid"], []]
    assert out.reasons == [["mid"], ["big", "mid"], []]
    assert out.alert.tolist() == [False, True, False]  # a snoozed alerting rule raises no alert


def test_a_snooze_ends_by_each_row_s_own_time() -> None:
    until = T0 + timedelta(hours=1)
    snoozes = Snoozes.of([Entry("big", "device_id", "d1", until)])
    cols = batch(
        ("c1", "d1", 500.0, until - timedelta(seconds=1)),
        ("c1", "d1", 500.0, until),
        ("c1", "d1", 500.0, until + timedelta(days=3)),
    )
    out = RULES.snoozed(snoozes).apply(cols, approve(3))
    assert out.decision.tolist() == ["FLAG", "BLOCK", "BLOCK"]
    assert [r[-1] for r in out.recorded] == ["snoozed:big", "mid", "mid"]


def test_the_latest_of_several_snoozes_of_a_value_counts_and_other_rules_are_untouched() -> None:
    snoozes = Snoozes.of(
        [
            Entry("big", "customer_id", "c1", T0 + timedelta(hours=1)),
            Entry("big", "customer_id", "c1", T0 + timedelta(days=9)),
            Entry("mid", "device_id", "d9", T0 + timedelta(days=9)),
        ]
    )
    cols = batch(("c1", "d1", 500.0, T0 + timedelta(days=2)), ("c3", "d9", 60.0, T0))
    out = RULES.snoozed(snoozes).apply(cols, approve(2))
    assert out.decision.tolist() == ["FLAG", "APPROVE"]
    assert out.recorded == [["mid", "snoozed:big"], ["snoozed:mid"]]


def test_without_snoozes_the_outcome_is_the_rules_alone() -> None:
    cols = batch(("c1", None, 500.0, T0), ("c2", None, 60.0, T0))
    bare = RULES.apply(cols, approve(2))
    unrelated = Snoozes.of([Entry("other", "customer_id", "c1", T0 + timedelta(days=1))])
    for rules in (RULES.snoozed(NO_SNOOZES), RULES.snoozed(unrelated)):
        out = rules.apply(cols, approve(2))
        assert out.decision.tolist() == bare.decision.tolist() == ["BLOCK", "FLAG"]
        assert out.recorded == bare.recorded and out.snoozed is None
    assert RULES.snoozed(NO_SNOOZES) is RULES


def test_a_missing_timestamp_or_id_is_never_snoozed() -> None:
    snoozes = Snoozes.of([Entry("big", "device_id", "d1", T0 + timedelta(days=1))])
    cols = batch(("c1", None, 500.0, T0), ("c1", "d1", 500.0, T0))
    cols["timestamp"][1] = np.nan
    out = RULES.snoozed(snoozes).apply(cols, approve(2))
    assert out.decision.tolist() == ["BLOCK", "BLOCK"]


class FakeSource:
    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.reads = 0
        self.broken = False

    def stamp(self) -> object:
        if self.broken:
            raise OSError("database unreachable")
        return len(self.entries)

    def unlifted(self) -> list[Entry]:
        self.reads += 1
        return list(self.entries)


def test_live_snoozes_follow_the_source_at_their_interval_and_keep_them_on_a_failure() -> None:
    source, now = FakeSource(), [0.0]
    live = LiveSnoozes(source, check_interval=5.0, clock=lambda: now[0], background=False)
    assert not live.current()
    source.entries.append(Entry("big", "customer_id", "c1", T0))
    assert not live.current()  # not checked again before the interval
    now[0] = 5.0
    assert len(live.current()) == 1
    reads = source.reads
    now[0] = 10.0
    assert len(live.current()) == 1 and source.reads == reads  # unchanged stamp: not read again
    source.broken = True
    now[0] = 15.0
    assert len(live.current()) == 1 and live.last_error is not None and "unreachable" in live.last_error
    source.broken = False
    source.entries.append(Entry("big", "customer_id", "c2", T0))
    assert len(live.refresh()) == 2 and live.last_error is None


def test_snoozed_rules_are_combined_once_per_change() -> None:
    source, now = FakeSource(), [0.0]
    live = LiveSnoozes(source, check_interval=1.0, clock=lambda: now[0], background=False)
    combined = SnoozedRules(lambda: RULES, live.current)
    first = combined()
    assert combined() is first
    source.entries.append(Entry("big", "customer_id", "c1", T0 + timedelta(days=1)))
    now[0] = 1.0
    second = combined()
    assert second is not first and second.version == RULES.version
    out = second.apply(batch(("c1", None, 500.0, T0)), approve(1))
    assert out.recorded == [["mid", "snoozed:big"]]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/fraud.db") as s:
        s.migrate()
        yield s


def test_the_migration_creates_the_snoozes_table_as_declared(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    engine.dispose()


def test_snoozes_are_stored_listed_lifted_and_audited(store: Store) -> None:
    repo = store.snoozes
    stamp = repo.stamp()
    now = datetime.now(UTC)
    kept = repo.add("big", "customer_id", "c1", now + timedelta(days=3), "a regular", "ana")
    ended = repo.add("big", "device_id", "d1", now - timedelta(days=1), "old", "ana")
    other = repo.add("mid", "customer_id", "c1", now + timedelta(days=1), "checked", "bo")
    assert repo.stamp() != stamp
    assert [s.id for s in repo.active(now)] == [other.id, kept.id]  # soonest to end first
    assert [s.id for s in repo.active(now, rule="big")] == [kept.id]
    assert [s.id for s in repo.active(now, field="customer_id", value="c1")] == [other.id, kept.id]
    assert {s.id for s in repo.unlifted()} == {kept.id, ended.id, other.id}

    before = repo.stamp()
    lifted = repo.lift(kept.id, "bo")
    assert (lifted.lifted_by, lifted.lifted_at is not None) == ("bo", True)
    assert repo.stamp() != before
    assert kept.id not in {s.id for s in repo.unlifted()}
    assert repo.get(kept.id).lifted_by == "bo"
    with pytest.raises(SnoozeError, match="lifted already") as raised:
        repo.lift(kept.id, "bo")
    assert raised.value.status == 409
    with pytest.raises(SnoozeError) as missing:
        repo.lift(10**9, "bo")
    assert missing.value.status == 404

    audit: list[dict[str, Any]] = store.cases.audit(subject=f"snooze:{kept.id}")
    assert [(a["action"], a["actor"]) for a in audit] == [("lift", "bo"), ("snooze", "ana")]
    assert audit[1]["after"]["until"] == kept.until.isoformat() and audit[1]["after"]["reason"] == "a regular"
    assert audit[0]["before"]["lifted_by"] is None and audit[0]["after"]["lifted_by"] == "bo"


def test_live_snoozes_read_from_the_store(store: Store) -> None:
    live = LiveSnoozes(store.snoozes, background=False)
    assert not live.current()
    snooze = store.snoozes.add("big", "customer_id", "c1", T0 + timedelta(days=1), "r", "ana")
    assert len(live.refresh()) == 1
    out = RULES.snoozed(live.current()).apply(batch(("c1", None, 500.0, T0)), approve(1))
    assert out.recorded == [["mid", "snoozed:big"]]
    store.snoozes.lift(snooze.id, "ana")
    assert not live.refresh()
