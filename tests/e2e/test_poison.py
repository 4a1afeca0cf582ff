"""One request of a micro-batch that cannot be decided or stored fails alone: its neighbours in the
same batch are decided and stored, and the feature state never counts the refused one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from fraudstream.api.batcher import ScoreBatcher
from fraudstream.api.metrics import ApiMetrics
from fraudstream.events.transaction import Transaction
from tests.e2e.apitools import Api, customer_feature, tx


class Poisoned(RuntimeError):
    """What the store raises for a transaction it cannot write."""


def refusing(real: Callable[..., list[str]], poison: set[str]) -> Callable[..., list[str]]:
    """A store method that fails, as a whole, for any call holding a poisoned transaction."""

    def call(records: list[Any], transactions: list[Any], **options: Any) -> list[str]:
        if poison & {t.transaction_id for t in transactions}:
            raise Poisoned("cannot store this one")
        return real(records, transactions, **options)

    return call


def test_a_poison_request_fails_alone_and_leaves_no_state(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    client, services, _ = api
    poison = {"bad-1", "bad-2"}
    monkeypatch.setattr(services.store.decisions, "save", refusing(services.store.decisions.save, poison))
    batcher = ScoreBatcher(services.decider, ApiMetrics())
    good = [f"ok-{i}" for i in range(40)]
    ids = [*good[:20], "bad-1", *good[20:], "bad-2"]
    bodies = {i: tx(i, "CP" if i in poison or i in ("ok-3", "ok-30") else f"C-{i}") for i in ids}

    async def run() -> list[Any]:  # submitted in one turn of the loop: one micro-batch
        submits = [batcher.submit(Transaction.model_validate(bodies[i])) for i in ids]
        outcomes = await asyncio.gather(*submits, return_exceptions=True)
        await batcher.stop()
        return outcomes

    outcomes = dict(zip(ids, asyncio.run(run()), strict=True))
    assert all(isinstance(outcomes[i], Poisoned) for i in poison)
    decided = {i: o for i, o in outcomes.items() if i not in poison}
    assert all(not isinstance(o, BaseException) for o in decided.values()), decided
    assert {rec.transaction_id for rec, _ in decided.values()} == set(good)
    assert services.store.decisions.decided_ids(ids) == set(good)
    assert customer_feature(client, "CP", "customer_count_24h") == 2.0  # ok-3 and ok-30, never a poison one
