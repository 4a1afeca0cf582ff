"""The decider's first step and last: every row of an id judged against the body that stands for it, and
the events of what was stored recorded once, duplicates of stored decisions included."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Transaction
from fraudstream.pipeline.decider import CONFLICT, DUPLICATE, NEW, Decider, StoreLedger
from fraudstream.state import MemoryFeatureState
from fraudstream.storage import Store, open_store
from tests.unit.fakes import BlockingScorer

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/decider.db") as s:
        s.migrate()
        yield s


def tx(tx_id: str, amount: float, i: int = 0) -> Transaction:
    return Transaction(
        transaction_id=tx_id, timestamp=T0 + timedelta(seconds=i), customer_id="c", amount=amount
    )


def decide(decider: Decider, txs: list[Transaction]) -> list[str]:
    return decider.decide(TransactionBatch.from_transactions(txs), txs).status


def test_repeats_in_a_batch_follow_the_first_body(store: Store) -> None:
    decider = Decider(BlockingScorer(MemoryFeatureState(retention=86400.0)), StoreLedger(store))
    assert decide(decider, [tx("a", 1.0), tx("a", 1.0), tx("a", 2.0), tx("b", 3.0)]) == [
        NEW, DUPLICATE, CONFLICT, NEW,
    ]  # fmt: skip
    assert store.decisions.get("a").amount == 1.0  # type: ignore[union-attr]


def test_rows_of_a_stored_id_are_judged_against_the_stored_body_not_the_first_row(store: Store) -> None:
    decider = Decider(BlockingScorer(MemoryFeatureState(retention=86400.0)), StoreLedger(store))
    assert decide(decider, [tx("a", 1.0)]) == [NEW]
    decided = decider.decide(
        TransactionBatch.from_transactions([tx("a", 2.0), tx("a", 1.0)]), [tx("a", 2.0), tx("a", 1.0)]
    )
    assert decided.status == [CONFLICT, DUPLICATE]
    assert decided.record(1) is not None and decided.record(1).amount == 1.0  # type: ignore[union-attr]
    assert decided.record(0) is None


def test_a_queued_transaction_is_decided_and_a_decision_stored_before_recording_is_recorded_now(
    store: Store,
) -> None:
    state = MemoryFeatureState(retention=86400.0)
    decider = Decider(BlockingScorer(state), StoreLedger(store))
    store.queue.accept([tx("q", 5.0)])  # accepted by POST /v1/transactions, not decided yet
    assert decide(decider, [tx("q", 5.0)]) == [NEW]
    # stored by a process that died before recording it: the state never saw "s"
    elsewhere = Decider(BlockingScorer(MemoryFeatureState(retention=86400.0)), StoreLedger(store))
    assert decide(elsewhere, [tx("s", 6.0, 1)]) == [NEW]
    assert state.recorded(np.array(["s"], dtype=object)).tolist() == [False]  # type: ignore[union-attr]
    assert decide(decider, [tx("s", 6.0, 1)]) == [DUPLICATE]
    assert state.recorded(np.array(["q", "s"], dtype=object)).tolist() == [True, True]  # type: ignore[union-attr]
