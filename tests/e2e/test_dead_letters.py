"""Dead letters as an operator handles them: seen through the API and the CLI, sent back once fixed,
and then decided exactly once by the worker. Embedded defaults: SQLite, the database queue."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fraudstream.api import create_app
from fraudstream.cli import app as cli_app
from fraudstream.config import Settings
from fraudstream.pipeline.scorer import Scorer
from fraudstream.runtime import Services, open_services
from tests.e2e.test_api import wait_for

NOW = datetime.now(UTC)
INVALID = json.dumps({"transaction_id": "broken", "amount": -1})


def tx(transaction_id: str) -> dict[str, Any]:
    when = (NOW - timedelta(minutes=5)).isoformat()
    return {"transaction_id": transaction_id, "timestamp": when, "customer_id": "C1", "amount": 12.5}


@pytest.fixture
def settings(tmp_path: Path, bundle_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/t.db", model_path=bundle_path,
        api_keys="", max_wait=0.01,
    )  # fmt: skip


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[TestClient, Services]]:
    services = open_services(settings)
    with TestClient(create_app(settings, services, run_worker=True)) as client:
        yield client, services
    services.close()


def sick_scorer(monkeypatch: pytest.MonkeyPatch, sick: str) -> Callable[[], None]:
    """Make scoring raise for any batch holding ``sick``, as a bad model or rules file would; returns
    the fix."""
    real = Scorer.score

    def score(self: Scorer, batch: Any, **kw: Any) -> Any:
        if sick in batch.transaction_id.tolist():
            raise ValueError("the model cannot score this")
        return real(self, batch, **kw)

    monkeypatch.setattr(Scorer, "score", score)
    return lambda: monkeypatch.setattr(Scorer, "score", real)


def test_an_unscoreable_transaction_is_listed_then_requeued_and_decided_once(
    served: tuple[TestClient, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, services = served
    fix = sick_scorer(monkeypatch, "sick")
    assert client.post("/v1/transactions", json=[tx("fine"), tx("sick")]).status_code == 202
    wait_for(lambda: client.get("/v1/transactions/sick").json()["status"] == "dead", what="the dead letter")
    services.store.dead_letters.add([("transactions", INVALID, "timestamp: Field required")])

    letters = client.get("/v1/dead-letters").json()
    assert [(d["transaction_id"], d["source"]) for d in letters] == [
        ("broken", "transactions"),
        ("sick", "transactions"),
    ]
    assert letters[1]["reason"] == "unscoreable: ValueError: the model cannot score this"
    assert client.get("/v1/dead-letters", params={"before": letters[0]["id"]}).json() == letters[1:]

    fix()
    answer = client.post("/v1/dead-letters/requeue", json={"all": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["requeued"] == [letters[1]["id"]] and body["transaction_ids"] == ["sick"]
    why = "timestamp: Field required; customer_id: Field required; amount: Input should be greater than or "
    why += "equal to 0"
    assert body["invalid"] == {str(letters[0]["id"]): why} and body["missing"] == []
    wait_for(lambda: client.get("/v1/transactions/sick").json()["status"] == "decided", what="the decision")
    assert [d["transaction_id"] for d in client.get("/v1/dead-letters").json()] == ["broken"]

    # published again after a crash between publishing and removing: still one decision
    services.broker.publish("transactions", [("C1", tx("sick"))])
    wait_for(lambda: services.store.queue.pending("transactions") == 0, what="the queue to drain")
    decisions = client.get("/v1/decisions", params={"customer_id": "C1"}).json()["items"]
    assert sorted(d["transaction_id"] for d in decisions) == ["fine", "sick"]

    again = client.post("/v1/dead-letters/requeue", json={"ids": [letters[1]["id"]]}).json()
    assert again["requeued"] == [] and again["missing"] == [letters[1]["id"]]
    for bad in ({}, {"ids": [1], "all": True}, {"ids": "1"}, {"ids": [2**70]}, {"ids": [0]}):
        assert client.post("/v1/dead-letters/requeue", json=bad).status_code == 422
    assert client.get("/v1/dead-letters", params={"before": 10**20}).status_code == 422


def test_requeueing_all_ends_even_while_workers_keep_failing_them(tmp_path: Path) -> None:
    """Each message sent back fails again at once, as when the cause was not fixed: the redrive stops
    at the newest dead letter there was when it started, and those failures stay."""
    from fraudstream.brokers.memory import MemoryBroker
    from fraudstream.storage import open_store
    from fraudstream.worker.redrive import PAGE, requeue

    with open_store(f"sqlite:///{tmp_path}/r.db") as store:
        store.migrate()

        class FailingAgain(MemoryBroker):
            def publish(self, topic: str, messages: Any) -> None:
                store.dead_letters.add([(topic, json.dumps(m), "unscoreable: again") for _, m in messages])

        store.dead_letters.add(
            [("transactions", json.dumps(tx(f"a{i}")), "unscoreable") for i in range(PAGE + 5)]
        )
        done = requeue(store, FailingAgain())
        assert len(done.requeued) == PAGE + 5 and len(set(done.transaction_ids)) == PAGE + 5
        left = store.dead_letters.list(2 * PAGE)
        assert len(left) == PAGE + 5 and {d["reason"] for d in left} == {"unscoreable: again"}


def test_the_cli_lists_and_requeues(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FRAUD_DATABASE_URL", settings.db_url)
    runner = CliRunner()
    services = open_services(settings)
    try:
        payload = json.dumps(tx("later"))
        services.store.dead_letters.add(
            [("transactions", payload, "unscoreable: boom"), ("transactions", INVALID, "x")]
        )
        result = runner.invoke(cli_app, ["dead-letters", "list", "--json"])
        assert result.exit_code == 0, result.output
        listed = json.loads(result.stdout)["dead_letters"]
        assert [d["transaction_id"] for d in listed] == ["broken", "later"]

        result = runner.invoke(cli_app, ["dead-letters", "requeue", str(listed[1]["id"])])
        assert result.exit_code == 0, result.output
        assert "requeued 1 dead letter(s), 1 transaction(s)" in result.stderr
        assert [m.payload["transaction_id"] for m in services.broker.consume("transactions", 10, 0)] == [
            "later"
        ]

        result = runner.invoke(cli_app, ["dead-letters", "requeue", str(listed[0]["id"]), "--json"])
        assert result.exit_code == 1 and json.loads(result.stdout)["requeued"] == []
        assert (
            "amount: Input should be greater than or equal to 0"
            in json.loads(result.stdout)["invalid"][str(listed[0]["id"])]
        )
        result = runner.invoke(cli_app, ["dead-letters", "requeue"])
        assert result.exit_code == 2 and "give dead-letter ids, or --all" in result.stderr
    finally:
        services.close()
