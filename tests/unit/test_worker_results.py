"""What the worker and its decider hand on after storing a batch: the results topic's messages and
the alerts hook."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.decision import DecisionColumns, DecisionRecord
from fraudstream.pipeline.decider import Decider, StoreLedger
from fraudstream.storage import Store, open_store
from fraudstream.worker.messages import decision_message
from fraudstream.worker.worker import RESULTS, Worker
from tests.unit.fakes import BlockingScorer
from tests.unit.test_worker_dedup import ListBroker, tx


class KeyedBroker(ListBroker):
    """Keeps each published message with its key."""

    def __init__(self) -> None:
        super().__init__()
        self.keyed: list[tuple[str | None, Any]] = []

    def publish(self, topic: str, messages: Sequence[tuple[str | None, Any]]) -> None:
        super().publish(topic, messages)
        if topic == RESULTS:
            self.keyed += messages


class ByAmountScorer(BlockingScorer):
    """APPROVEs below 100, FLAGs below 200, BLOCKs from 200; the rule ``odd`` fires on odd amounts."""

    version = "by-amount"

    def score(self, batch: TransactionBatch, *, record: bool = False) -> Any:
        amount = batch.amount
        decision = np.where(amount < 100, "APPROVE", np.where(amount < 200, "FLAG", "BLOCK")).astype(object)
        rules = [["odd"] if int(a) % 2 else [] for a in amount.tolist()]

        def columns(names: Any, version: str | None = None) -> DecisionColumns:
            return DecisionColumns(
                transaction_id=batch.transaction_id,
                customer_id=batch.customer_id,
                timestamp=batch.timestamp,
                amount=amount,
                decision=decision,
                probability=amount / 1000,
                reasons=[[{"code": "amount", "value": float(a), "source": "rules"}] for a in amount.tolist()],
                rules=rules,
                features=amount[:, None].astype(np.float64),
                feature_names=list(names),
                model_version=version or self.version,
                latency_ms={"total": 1.0},
            )

        return type("Scored", (), {"columns": staticmethod(columns)})()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path}/results.db") as s:
        s.migrate()
        yield s


def test_results_are_the_stored_decisions_and_alerts_get_those_that_can_raise_one(store: Store) -> None:
    handed: list[DecisionRecord] = []
    broker = KeyedBroker()
    decider = Decider(ByAmountScorer(), StoreLedger(store), on_decided=lambda d: handed.extend(d.records()))  # type: ignore[arg-type]
    worker = Worker(broker, decider, store, max_wait=0.0, results_topic=RESULTS)
    amounts = [10.0, 11.0, 150.0, 250.0, 20.0, 151.0]
    broker.deliver([tx(i, amount=a) | {"customer_id": f"c{i % 2}"} for i, a in enumerate(amounts)])
    worker.run(burst=True)
    stored = store.decisions.get_many([f"w{i}" for i in range(len(amounts))])
    assert len(stored) == len(amounts)
    want = [(stored[f"w{i}"].customer_id, decision_message(stored[f"w{i}"])) for i in range(len(amounts))]
    assert broker.keyed == want
    # w0 and w4 are APPROVEs no rule fired on: no alert can come of them
    assert [r.transaction_id for r in handed] == ["w1", "w2", "w3", "w5"]
    assert [r == stored[r.transaction_id] for r in handed] == [True] * 4
