"""CHALLENGE and HOLD over HTTP and through the worker: rules (and score bands) that decide them, the
challenge's result posted back as a label a later feature reads, and holds released by a case's
verdict and by the timeout's default, with the waits on /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fraudstream.worker import Worker
from tests.e2e.apitools import NOW, Api, metric, tx

RULES = """\
rules:
  - {name: step_up, when: 'amount >= 1000 and amount < 2000', action: CHALLENGE, reason: ask the customer}
  - {name: review, when: 'amount >= 2000', action: HOLD, reason: an analyst looks first}
"""


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "outcomes.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


@pytest.fixture
def api(make_api: Callable[..., Api], rules_path: Path) -> Api:
    return make_api(rules_path=rules_path)


def _score(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/v1/score", json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _through_the_worker(api: Api, *bodies: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Queue ``bodies`` with POST /v1/transactions, let a worker decide them, read them back."""
    client, services, _ = api
    accepted = client.post("/v1/transactions", json=list(bodies))
    assert accepted.status_code == 202, accepted.text
    Worker(services.broker, services.decider, services.store, batch_size=100, max_wait=0.01).run(burst=True)
    out = {}
    for body in bodies:
        status = client.get(f"/v1/transactions/{body['transaction_id']}")
        assert status.status_code == 200 and status.json()["status"] == "decided", status.text
        out[body["transaction_id"]] = status.json()
    return out


def test_a_challenge_rule_decides_challenge_over_http_and_through_the_worker(api: Api) -> None:
    client, _, _ = api
    scored = _score(client, tx("c-http", "C1", amount=1500.0))
    assert scored["decision"] == "CHALLENGE" and scored["rules"] == ["step_up"]
    assert {"code": "step_up", "reason": "ask the customer", "source": "rules"}.items() <= scored["reasons"][
        -1
    ].items()
    queued = _through_the_worker(api, tx("c-worker", "C2", amount=1500.0), tx("plain", "C3", amount=20.0))
    assert queued["c-worker"]["decision"]["decision"] == "CHALLENGE"
    assert queued["c-worker"]["challenge"] is None  # asked, not answered yet
    assert queued["plain"]["decision"]["decision"] != "CHALLENGE"
    stats = client.get("/v1/stats").json()
    assert stats["by_decision"]["CHALLENGE"] == 2 and stats["flagged_rate"] == pytest.approx(2 / 3)
    assert metric(client, 'fraudstream_decisions_total{decision="CHALLENGE"}') == 1  # the API's own
    series = client.get("/v1/stats/series", params={"window": 3600, "bucket": 60}).json()
    assert sum(p["by_decision"].get("CHALLENGE", 0) for p in series["points"]) == 2  # per minute and outcome
    today = datetime.now(UTC).date().isoformat()
    report = client.get("/v1/reports/daily", params={"date": today}).json()
    assert report["by_decision"]["CHALLENGE"]["count"] == 2 and report["by_decision"]["HOLD"]["count"] == 0
    drift = client.get("/v1/drift").json()["decision_rates"]  # no PSI yet (3 < 500): the decided rates
    assert drift["decided"]["CHALLENGE"] == pytest.approx(2 / 3) and set(drift) == {"decided"}


def test_a_failed_challenge_is_a_fraud_label_that_a_later_feature_reads(api: Api) -> None:
    client, services, _ = api
    _score(client, tx("c1", "C1", minutes_ago=30, amount=1500.0, device_id="D-shared"))
    failed = client.post("/v1/challenges/c1", json={"result": "failed"})
    assert failed.status_code == 200, failed.text
    assert failed.json()["result"] == "failed" and failed.json()["is_fraud"] is True
    labels = client.get("/v1/labels/c1").json()
    assert labels["is_fraud"] is True and [x["source"] for x in labels["labels"]] == ["challenge"]

    # the device's known-fraud feature counts the failed challenge from the next decision on
    later = tx("c1-later", "C9", minutes_ago=0, amount=30.0, device_id="D-shared")
    later["timestamp"] = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    _score(client, later)
    assert services.store.decisions.get("c1-later").features["device_known_fraud_30d"] == 1.0  # type: ignore[union-attr]

    # posted again: the same answer; another result: refused, naming what was stored
    assert client.post("/v1/challenges/c1", json={"result": "failed"}).json() == failed.json()
    other = client.post("/v1/challenges/c1", json={"result": "passed"})
    assert other.status_code == 409 and "already answered 'failed'" in other.json()["detail"]
    status = client.get("/v1/transactions/c1").json()
    assert status["challenge"]["result"] == "failed" and status["hold"] is None


def test_a_passed_challenge_is_a_legitimate_label_and_an_abandoned_one_none(api: Api) -> None:
    client, _, _ = api
    _score(client, tx("ok", "C1", minutes_ago=30, amount=1200.0))
    _score(client, tx("gone", "C2", minutes_ago=30, amount=1200.0))
    done_at = (NOW - timedelta(minutes=25)).isoformat()
    passed = client.post("/v1/challenges/ok", json={"result": "passed", "completed_at": done_at})
    assert passed.status_code == 200 and passed.json()["is_fraud"] is False
    (label,) = client.get("/v1/labels/ok").json()["labels"]
    assert (label["is_fraud"], label["source"]) == (False, "challenge")
    assert datetime.fromisoformat(label["label_time"]) == datetime.fromisoformat(done_at)
    abandoned = client.post("/v1/challenges/gone", json={"result": "abandoned"})
    assert abandoned.status_code == 200 and abandoned.json()["is_fraud"] is None
    assert client.get("/v1/labels/gone").json()["labels"] == []


def test_challenge_answers_refuse_what_cannot_be_answered_naming_the_field(api: Api) -> None:
    client, _, _ = api
    _score(client, tx("asked", "C1", minutes_ago=30, amount=1500.0))
    _score(client, tx("plain", "C2", minutes_ago=30, amount=20.0))
    unknown = client.post("/v1/challenges/nobody", json={"result": "passed"})
    assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]
    plain = client.post("/v1/challenges/plain", json={"result": "passed"})
    assert plain.status_code == 409 and "not CHALLENGE" in plain.json()["detail"]
    assert plain.json()["detail"].startswith("transaction_id:")
    bad = client.post("/v1/challenges/asked", json={"result": "maybe"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "result"]
    early = (NOW - timedelta(hours=2)).isoformat()
    before = client.post("/v1/challenges/asked", json={"result": "failed", "completed_at": early})
    assert before.status_code == 422 and before.json()["detail"][0]["loc"] == ["body", "completed_at"]
    extra = client.post("/v1/challenges/asked", json={"result": "failed", "why": "x"})
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "why"]
    assert client.get("/v1/labels/asked").json()["labels"] == []  # nothing of the refused answers stayed


def test_a_hold_waits_for_its_cases_verdict_which_releases_it(api: Api) -> None:
    client, _, _ = api
    held = _score(client, tx("h-http", "C-H", minutes_ago=20, amount=2500.0))
    assert held["decision"] == "HOLD" and held["rules"] == ["review"]
    queued = _through_the_worker(api, tx("h-worker", "C-H", minutes_ago=10, amount=3000.0))
    hold = queued["h-worker"]["hold"]
    assert queued["h-worker"]["decision"]["decision"] == "HOLD"
    assert (hold["status"], hold["outcome"], hold["resolution"]) == ("pending", None, None)
    assert datetime.fromisoformat(hold["times_out_at"]) > datetime.fromisoformat(hold["held_at"])

    listed = client.get("/v1/holds").json()["items"]
    assert [(h["transaction_id"], h["status"]) for h in listed] == [
        ("h-http", "pending"),
        ("h-worker", "pending"),
    ]
    case_id = listed[0]["case_id"]
    assert case_id is not None and listed[1]["case_id"] == case_id  # both in the customer's case
    assert metric(client, "fraudstream_holds_pending") == 2
    (case,) = client.get("/v1/cases").json()["items"]
    assert case["id"] == case_id and case["transactions"] == 2

    verdict = client.post(f"/v1/cases/{case_id}/verdict", json={"verdict": "legitimate"})
    assert verdict.status_code == 200, verdict.text
    assert sorted((h["transaction_id"], h["status"]) for h in verdict.json()["holds"]) == [
        ("h-http", "released"),
        ("h-worker", "released"),
    ]
    final = client.get("/v1/transactions/h-worker").json()["hold"]
    assert (final["status"], final["outcome"], final["resolution"]) == ("released", "APPROVE", "verdict")
    assert final["times_out_at"] is None and final["waited_seconds"] >= 0
    assert metric(client, "fraudstream_holds_pending") == 0
    assert metric(client, 'fraudstream_hold_wait_seconds_count{outcome="APPROVE",resolution="verdict"}') == 2
    assert client.get("/v1/holds", params={"status": "pending"}).json()["items"] == []


def test_a_hold_nobody_decides_gets_the_default_when_it_times_out(
    make_api: Callable[..., Api], rules_path: Path
) -> None:
    client, _, _ = make_api(
        rules_path=rules_path, hold_timeout_seconds=0.5, hold_sweep_seconds=0.1, hold_default="BLOCK"
    )
    assert _score(client, tx("late", "C-L", amount=2500.0))["decision"] == "HOLD"
    deadline = time.monotonic() + 60
    hold = client.get("/v1/transactions/late").json()["hold"]
    while hold["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.1)
        hold = client.get("/v1/transactions/late").json()["hold"]
    assert (hold["status"], hold["outcome"], hold["resolution"]) == ("rejected", "BLOCK", "timeout")
    assert hold["resolved_by"] == "timeout" and hold["waited_seconds"] >= 0.5
    assert metric(client, 'fraudstream_hold_wait_seconds_count{outcome="BLOCK",resolution="timeout"}') == 1
    assert (
        metric(client, 'fraudstream_hold_wait_seconds_bucket{le="60.0",outcome="BLOCK",resolution="timeout"}')
        == 1
    )


def test_score_bands_decide_challenge_and_hold_from_the_probability(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api(challenge_band="0,0.5", hold_band="0.5,1")
    decided = _score(client, tx("banded", "C-B", amount=20.0))
    expected = "CHALLENGE" if decided["probability"] < 0.5 else "HOLD"
    assert decided["decision"] == expected and decided["rules"] == []
    assert decided["reasons"] or decided["probability"] == 0.0  # explained like any other non-APPROVE
