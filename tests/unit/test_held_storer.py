"""Held decisions stored by the child process: the same rows as storing in-process, and nothing lost
when the child fails, dies or is closed with work in hand."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fraudstream.storage import Store
from fraudstream.storage._journal import Segment
from fraudstream.storage._storer import HeldStorer
from tests.waiting import wait_for

from .test_held_decisions import journals, record, sqlite, tx


def held(store: Store) -> int:
    assert store.held._journal is not None
    return len(store.held._journal)


def stored(store: Store, ids: list[str]) -> dict[str, tuple[dict[str, object], dict[str, object]]]:
    """The ``decisions`` and ``transactions`` rows of ``ids`` as stored (``store.query`` reads past the
    journal), less the time each transaction was written."""
    from sqlalchemy import select

    from fraudstream.storage.tables import decisions, transactions

    made = {r.transaction_id: dict(r._mapping) for r in store.query(select(decisions))}
    txs = {r.transaction_id: dict(r._mapping) for r in store.query(select(transactions))}
    return {i: (made[i], txs[i] | {"received_at": None}) for i in ids if i in made}


def counts(store: Store) -> list[tuple[object, ...]]:
    """The per-minute counts the charts read."""
    from sqlalchemy import select

    from fraudstream.storage.tables import decision_minutes as m

    return sorted(store.query(select(m.c.minute, m.c.decision, m.c.score_bin, m.c.decisions)))


def storing(tmp_path: Path) -> tuple[Store, HeldStorer]:
    """A store whose child process has stored a first decision."""
    store = sqlite(tmp_path)
    store.decisions.hold([record(1)], [tx(1)])
    store.held.release(background=True)
    wait_for(lambda: held(store) == 0, "the first range stored")
    assert store.held._storer is not None
    return store, store.held._storer


def test_the_child_stores_the_rows_storing_in_process_would(tmp_path: Path) -> None:
    background, here = sqlite(tmp_path / "a"), sqlite(tmp_path / "b")
    ids = [f"t{i}" for i in range(1, 7)]
    for store in (background, here):
        store.decisions.hold([record(1), record(2, "FLAG")], [tx(1), tx(2)])
        store.decisions.hold([record(i, "BLOCK") for i in (3, 4)], [tx(3), tx(4)])
    assert background.held.release(background=True) == []  # handed over: the ids are not known yet
    assert background.decisions.decided_ids(ids) == {"t1", "t2", "t3", "t4"}  # held meanwhile, or stored
    for store in (background, here):
        store.decisions.hold([record(5), record(6)], [tx(5), tx(6)])
    background.held.release(background=True)
    storer = background.held._storer
    assert storer is not None and storer.usable and storer._process.pid is not None
    wait_for(lambda: held(background) == 0, "the child to store both ranges")
    (journal,) = journals(tmp_path / "a")
    assert journal.stat().st_size == 0  # emptied once nothing was held
    assert here.held.release() == ids
    assert stored(background, ids).keys() == set(ids)
    assert stored(background, ids) == stored(here, ids)
    assert counts(background) == counts(here) and sum(n for *_, n in counts(here)) == 6
    background.close()
    here.close()


def test_a_read_waits_for_what_the_child_was_handed(tmp_path: Path) -> None:
    store = sqlite(tmp_path)
    store.decisions.hold([record(1), record(2)], [tx(1), tx(2)])
    store.held.release(background=True)
    listed, _ = store.decisions.list(limit=10)  # a list stores what is held first, the child's part too
    assert {d.transaction_id for d in listed} == {"t1", "t2"}
    assert held(store) == 0 and stored(store, ["t1", "t2"]).keys() == {"t1", "t2"}
    store.close()


def test_a_dead_child_loses_nothing_and_storing_goes_on_in_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, storer = storing(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fraudstream.storage._storer"):
        storer._process.kill()  # the reader thread may see it die first, or the next hand-over
        storer._process.wait()
        store.decisions.hold([record(2), record(3)], [tx(2), tx(3)])
        store.held.release(background=True)  # the child is gone: stored here, at once
        assert held(store) == 0 and stored(store, ["t2", "t3"]).keys() == {"t2", "t3"}
        store.decisions.hold([record(4)], [tx(4)])
        assert store.held.release(background=True) == ["t4"]  # in-process from now on
    assert "storing them in this process" in caplog.text
    assert store.held._storer is None and not store.held._background
    store.close()


def test_a_range_the_child_cannot_store_is_reported_and_stored_in_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, storer = storing(tmp_path)
    store.decisions.hold([record(2)], [tx(2)])
    with caplog.at_level(logging.WARNING, logger="fraudstream.storage._storer"):
        assert storer.send(Segment(str(tmp_path / "missing"), 0, 10))
        wait_for(lambda: not storer.usable, "the child's error")
    assert "FileNotFoundError" in (storer.failure or "") and "missing" in caplog.text
    assert held(store) == 1  # the held decision was never handed over: still held
    assert store.held.release(background=True) == ["t2"]
    store.close()


def test_a_child_that_cannot_start_leaves_the_storing_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import fraudstream.storage._held as held_module

    def no_process(*args: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(held_module, "HeldStorer", no_process)
    store = sqlite(tmp_path)
    store.decisions.hold([record(1)], [tx(1)])
    with caplog.at_level(logging.WARNING, logger="fraudstream.storage._held"):
        assert store.held.release(background=True) == ["t1"]
    assert "cannot start a process to store them" in caplog.text and not store.held._background
    store.close()


def test_close_lets_the_child_finish_and_the_journal_goes(tmp_path: Path) -> None:
    store = sqlite(tmp_path)
    store.decisions.hold([record(i) for i in range(1, 40)], [tx(i) for i in range(1, 40)])
    store.held.release(background=True)
    storer = store.held._storer
    store.close()  # at once: the child is still starting up
    assert storer is not None and storer._process.returncode == 0
    assert journals(tmp_path) == []
    again = sqlite(tmp_path)
    assert len(stored(again, [f"t{i}" for i in range(1, 40)])) == 39
    again.close()


def test_journal_ranges_follow_each_other_and_start_over_with_the_file(tmp_path: Path) -> None:
    store = sqlite(tmp_path)
    journal = store.held._journal
    assert journal is not None and journal.handover() is None  # no file yet
    store.decisions.hold([record(1)], [tx(1)])
    first = journal.handover()
    store.decisions.hold([record(2), record(3)], [tx(2), tx(3)])
    second = journal.handover()
    assert journal.handover() is None  # nothing new
    assert first is not None and second is not None
    (path,) = journals(tmp_path)
    data = path.read_bytes()
    assert (first.start, first.end, second.start, second.end) == (0, first.end, first.end, len(data))
    assert data[first.end - 1 : first.end] == b"\n"
    store.held.release()
    store.decisions.hold([record(4)], [tx(4)])
    again = journal.handover()
    assert again is not None and again.start == 0 and again.end == path.stat().st_size
    store.close()
