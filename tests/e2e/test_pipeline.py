"""The embedded pipeline: outbox → worker → decisions, exactly once, through malformed input and a crash."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudstream.config import Settings
from fraudstream.events.batch import TransactionBatch
from fraudstream.events.transaction import Transaction
from fraudstream.features import FeatureEngine
from fraudstream.runtime import open_services
from fraudstream.worker import Worker

N = 600


def settings_for(tmp_path: Path, bundle_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'fraud.db'}",
        model_path=bundle_path,
        lease_seconds=1.0,
        max_wait=0.01,
        batch_size=100,
    )


def worker_env(tmp_path: Path, bundle_path: Path, settings: Settings) -> dict[str, str]:
    """The environment of a ``fraudstream worker`` subprocess on the same database and model."""
    return os.environ | {
        "FRAUD_DATA_DIR": str(tmp_path),
        "FRAUD_DATABASE_URL": settings.db_url,
        "FRAUD_MODEL_PATH": str(bundle_path),
        "FRAUD_LEASE_SECONDS": "1",
        "FRAUD_MAX_WAIT": "0.01",
    }


def transactions(frame: pd.DataFrame, n: int = N) -> list[Transaction]:
    keep = [c for c in frame.columns if c not in ("is_fraud", "label_time", "fraud_scenario")]
    rows = frame.iloc[-n:][keep].to_dict("records")
    return [
        Transaction.model_validate({k: v for k, v in r.items() if v is not None and v == v}) for r in rows
    ]


def test_every_transaction_decided_once_and_bad_messages_dead_lettered(
    tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame
) -> None:
    services = open_services(settings_for(tmp_path, bundle_path))
    txs = transactions(small_frame)
    assert len(services.store.queue.accept(txs)) == N
    assert services.store.queue.accept(txs[:50]) == []  # a retried POST is not enqueued twice
    services.broker.publish(
        "transactions", [(None, {"transaction_id": "bad", "amount": -1}), (None, "not json")]
    )
    services.broker.publish("transactions", [(t.customer_id, t.model_dump(mode="json")) for t in txs[:30]])
    worker = Worker(services.broker, services.decider, services.store, batch_size=100, max_wait=0.01)
    stats = worker.run(burst=True)
    assert stats.decided == N and stats.duplicates == 30 and stats.dead == 2
    assert services.store.decisions.decided_ids([t.transaction_id for t in txs]) == {
        t.transaction_id for t in txs
    }
    assert services.store.queue.pending("transactions") == 0
    reasons = [d["reason"] for d in services.store.dead_letters.list()]
    assert any("amount: Input should be greater than or equal to 0" in r for r in reasons)
    assert any("valid dictionary" in r for r in reasons)
    assert worker.health()["alive"]
    services.close()


CRASHING_WORKER = textwrap.dedent(
    """
    import os, sys
    from fraudstream.cli import app
    from fraudstream.storage.decisions import DecisionRepository

    crash_on = int(sys.argv[1])
    calls = {"n": 0}
    original = DecisionRepository.save

    def save(self, records, transactions=None, **options):
        calls["n"] += 1
        if calls["n"] == crash_on:
            os._exit(9)  # killed mid-batch: features recorded, decisions not stored, nothing acked
        return original(self, records, transactions, **options)

    DecisionRepository.save = save
    app(["worker", *sys.argv[2:]])
    """
)
"""``python -c CRASHING_WORKER N [worker options]``: ``fraudstream worker`` that dies at its N-th store."""


def test_worker_killed_mid_batch_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame
) -> None:
    settings = settings_for(tmp_path, bundle_path)
    services = open_services(settings)
    txs = transactions(small_frame)
    services.store.queue.accept(txs)
    env = worker_env(tmp_path, bundle_path, settings)
    burst = ["--burst", "--batch-size", "100"]
    crashed = subprocess.run([sys.executable, "-c", CRASHING_WORKER, "3", *burst], env=env, timeout=300)
    assert crashed.returncode == 9
    decided = services.store.decisions.decided_ids([t.transaction_id for t in txs])
    assert 0 < len(decided) < N  # two batches stored before the crash, the rest not
    restarted = subprocess.run([sys.executable, "-c", CRASHING_WORKER, "0", *burst], env=env, timeout=300)
    assert restarted.returncode == 0
    assert services.store.decisions.decided_ids([t.transaction_id for t in txs]) == {
        t.transaction_id for t in txs
    }
    assert services.store.queue.pending("transactions") == 0

    # Feature state counted once: every stored feature vector equals the offline point-in-time value.
    engine = FeatureEngine()
    batch = TransactionBatch.from_transactions(txs)
    offline = engine.compute(batch, labels_from_batch=False)
    stored = np.array(
        [[np.nan if v is None else v for v in services.store.decisions.get(t).features.values()]  # type: ignore[union-attr]
         for t in batch.transaction_id]
    )  # fmt: skip
    np.testing.assert_allclose(stored, offline, rtol=1e-9, atol=1e-9)
    services.close()


POISONED_WORKER = textwrap.dedent(
    """
    import os, sys
    from fraudstream.cli import app
    from fraudstream.pipeline.scorer import Scorer

    original = Scorer.score

    def score(self, batch, **kw):
        if "poison" in batch.transaction_id.tolist():
            os._exit(9)  # as a native crash or the out-of-memory killer would
        return original(self, batch, **kw)

    Scorer.score = score
    app(["worker", *sys.argv[1:]])
    """
)
"""``python -c POISONED_WORKER [worker options]``: ``fraudstream worker`` killed by any batch holding
the transaction ``poison``."""


@pytest.mark.slow
def test_a_message_that_kills_every_worker_takes_only_itself_to_the_dead_letters(
    tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame
) -> None:
    settings = settings_for(tmp_path, bundle_path)
    services = open_services(settings)
    txs = transactions(small_frame, 60)
    poison = txs[25].model_copy(update={"transaction_id": "poison"})
    services.store.queue.accept([*txs[:25], poison, *txs[25:]])
    env = worker_env(tmp_path, bundle_path, settings)
    codes = []
    decided_after = []
    while len(codes) < 8 and 0 not in codes:
        run = subprocess.run([sys.executable, "-c", POISONED_WORKER, "--burst"], env=env, timeout=300)
        codes.append(run.returncode)
        decided_after.append(len(services.store.decisions.decided_ids([t.transaction_id for t in txs])))
        time.sleep(1.2)  # the dead worker's lease runs out
    # whole batch twice; one at a time up to the poison; those after it; the poison alone; dead letter
    assert codes == [9, 9, 9, 9, 9, 0]
    assert decided_after == [0, 0, 25, 60, 60, 60]
    (letter,) = services.store.dead_letters.list()
    assert letter["reason"].startswith("delivered 6 times") and '"poison"' in letter["payload"]
    assert services.store.decisions.get_transaction("poison")["status"] == "dead"  # type: ignore[index]
    assert services.store.queue.pending("transactions") == 0
    services.close()


def test_replayed_decisions_are_not_remade(
    tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame
) -> None:
    services = open_services(settings_for(tmp_path, bundle_path))
    txs = transactions(small_frame, 50)
    scored = services.scorer.score(TransactionBatch.from_transactions(txs))
    records = scored.records(services.scorer.engine.names, services.scorer.version)
    assert len(services.store.decisions.save(records, txs)) == 50
    assert services.store.decisions.save(records, txs) == []
    services.close()
