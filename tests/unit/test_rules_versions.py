"""Rules versions: the repository's numbering and seeding, and DatabaseRules following the newest version."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fraudstream.rules import RulesError
from fraudstream.rules.reload import DatabaseRules
from fraudstream.storage import Store, open_store

KINDS = {"amount": "number"}
ONE = "rules:\n  - {name: one, when: amount > 1, action: FLAG, reason: r}\n"
TWO = "rules:\n  - {name: two, when: amount > 2, action: FLAG, reason: r}\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'rules.db'}") as store:
        store.migrate()
        yield store


def test_versions_count_up_from_one_and_a_seed_only_fills_an_empty_table(store: Store) -> None:
    repo = store.rules
    assert repo.newest_version() is None and repo.get() is None
    seeded = repo.seed(ONE, "seed:rules.yaml")
    assert seeded is not None and seeded.version == 1
    assert repo.seed(TWO) is None  # a version exists: the seed never overwrites it
    saved = repo.save(TWO, "lead")
    assert (saved.version, repo.newest_version()) == (2, 2)
    newest = repo.get()
    assert newest is not None and (newest.version, newest.text, newest.created_by) == (2, TWO, "lead")
    first = repo.get(1)
    assert first is not None and first.text == ONE and first.created_at.tzinfo is not None
    assert [v.version for v in repo.versions()] == [2, 1] and repo.get(7) is None


@dataclass
class Source:
    """Versions in memory, with a switch that makes polls fail like an unreachable database."""

    texts: dict[int, str] = field(default_factory=dict)
    down: bool = False

    def newest_version(self) -> int | None:
        if self.down:
            raise ConnectionError("database unreachable")
        return max(self.texts, default=None)

    def get(self, version: int | None = None) -> Version | None:
        number = self.newest_version() if version is None else version
        return None if number is None or number not in self.texts else Version(number, self.texts[number])


@dataclass(frozen=True)
class Version:
    version: int
    text: str


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_database_rules_follow_the_newest_version_at_the_next_check() -> None:
    source, clock = Source({1: ONE}), Clock()
    live = DatabaseRules(source, KINDS, check_interval=5.0, clock=clock, background=False)
    assert (live.current().version, [r.name for r in live.current().rules]) == ("1", ["one"])
    source.texts[2] = TWO
    clock.now = 4.0
    assert live.current().version == "1"  # not checked yet
    clock.now = 5.0
    assert (live.current().version, [r.name for r in live.current().rules]) == ("2", ["two"])


def test_a_broken_version_or_a_failed_poll_keeps_the_rules_in_use() -> None:
    source, clock = Source({1: ONE}), Clock()
    live = DatabaseRules(source, KINDS, check_interval=1.0, clock=clock, background=False)
    source.texts[2] = "rules:\n  - {name: bad, when: amout > 1, action: FLAG, reason: r}\n"
    clock.now = 1.0
    assert live.current().version == "1"
    assert live.last_error is not None and "rule 'bad'" in live.last_error
    source.down, clock.now = True, 2.0
    assert live.current().version == "1" and "unreachable" in (live.last_error or "")
    source.down, source.texts[3], clock.now = False, TWO, 3.0
    assert live.current().version == "3" and live.last_error is None


def test_a_service_does_not_start_without_a_version_that_compiles() -> None:
    with pytest.raises(RulesError, match="no rules version is stored"):
        DatabaseRules(Source(), KINDS)
    with pytest.raises(RulesError, match="unknown name 'amout'"):
        DatabaseRules(Source({1: "rules:\n  - {name: b, when: amout > 1, action: FLAG, reason: r}\n"}), KINDS)


def test_refresh_uses_a_new_version_at_once() -> None:
    source = Source({1: ONE})
    live = DatabaseRules(source, KINDS, check_interval=3600.0)
    source.texts[2] = TWO
    assert live.current().version == "1"
    assert live.refresh().version == "2" and live.current().version == "2"


class SlowSource(Source):
    """Polls that wait for ``release``, like a database slow to answer."""

    def __init__(self, texts: dict[int, str]) -> None:
        super().__init__(texts)
        self.release = threading.Event()
        self.polled = threading.Event()

    def newest_version(self) -> int | None:
        if self.texts and max(self.texts) > 1:  # the construction's read is not held up
            self.polled.set()
            self.release.wait(30)
        return super().newest_version()


def test_in_the_background_a_check_never_holds_up_the_caller() -> None:
    source, clock = SlowSource({1: ONE}), Clock()
    live = DatabaseRules(source, KINDS, check_interval=1.0, clock=clock)
    source.texts[2], clock.now = TWO, 1.0
    assert live.current().version == "1"  # answered while the check waits on the source
    assert source.polled.wait(30) and not source.release.is_set()
    assert live.current().version == "1"  # a check already under way: no second one
    source.release.set()
    deadline = time.monotonic() + 30
    while live.current().version != "2" and time.monotonic() < deadline:
        clock.now += 1.0
        time.sleep(0.01)
    assert live.current().version == "2"
