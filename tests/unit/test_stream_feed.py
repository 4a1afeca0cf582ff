"""The decision feed behind ``GET /v1/stream``, driven directly: races a real server only shows sometimes."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudstream.api.routes.stream import OUTCOMES, DecisionFeed, Subscription
from fraudstream.events.decision import DecisionRecord
from fraudstream.storage import Store


def decide(store: Store, *outcomes: str) -> list[str]:
    records = [
        DecisionRecord(
            transaction_id=f"t{i}", customer_id="C1", amount=1.0, timestamp=datetime.now(UTC),
            decision=outcome, probability=0.5, reasons=[], rules=[], model_version="m", features={},
            latency_ms={"total": 1.0},
        )
        for i, outcome in enumerate(outcomes)
    ]  # fmt: skip
    store.decisions.save(records)
    return [r.transaction_id for r in records]


async def received(subscription: Subscription, n: int) -> list[str]:
    async with asyncio.timeout(10):
        while len(subscription.items) < n:
            subscription.ready.clear()
            await subscription.ready.wait()
    return [row["transaction_id"] for row in subscription.items]


def test_a_subscriber_joining_during_a_narrower_poll_still_gets_decisions_in_order(tmp_path: Path) -> None:
    """The first poll reads FLAG only; a subscriber to everything joins while it runs. Offering it that
    poll's rows would put the FLAGs before the APPROVEs stored ahead of them (it once failed in CI)."""
    store = Store(f"sqlite:///{tmp_path}/feed.db")
    store.migrate()
    feed = DecisionFeed(store, interval=0.01)
    entered, release = threading.Event(), threading.Event()
    reads: list[list[str]] = []
    real_read = feed.read

    def read(outcomes: list[str]) -> list[dict[str, Any]]:
        reads.append(outcomes)
        if len(reads) == 1:
            entered.set()
            assert release.wait(10)
        return real_read(outcomes)

    feed.read = read  # type: ignore[method-assign]

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        flagged = feed.subscribe(frozenset({"FLAG"}))
        await asyncio.to_thread(entered.wait, 10)
        ids = decide(store, "APPROVE", "FLAG", "APPROVE", "FLAG")
        everything = feed.subscribe(frozenset(OUTCOMES))
        release.set()
        try:
            return ids, await received(flagged, 2), await received(everything, 4)
        finally:
            await feed.stop()

    try:
        ids, flags, all_ = asyncio.run(scenario())
    finally:
        store.close()
    assert reads[:2] == [["FLAG"], sorted(OUTCOMES)]
    assert flags == [ids[1], ids[3]]
    assert all_ == ids
