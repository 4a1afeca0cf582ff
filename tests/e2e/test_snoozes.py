"""Rule snoozes over HTTP: an analyst snoozes a rule for one customer (or device, IP, merchant); the
rule's hits on that value until the snooze ends, by the transaction's own time, decide nothing and
are recorded as ``snoozed:<rule>``, through ``/v1/score`` and through the worker; lifting one brings
the rule back; each change is in the audit log under the acting key's name."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.apitools import Api, tx

RULES = (
    "rules:\n"
    "  - {name: big, when: 'amount > 1000', action: BLOCK, reason: big amount}\n"
    "  - {name: watch, when: 'amount > 1000', action: FLAG, reason: watched, shadow: true}\n"
)
BIG = 5000.0


@pytest.fixture
def keyed(make_api: Callable[..., Api], tmp_path: Path) -> tuple[TestClient, dict[str, dict[str, str]]]:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    client, services, _ = make_api(rules_path=path, api_keys="env-key-0123456789", key_cache_seconds=0)
    keys = services.store.keys
    headers = {role: {"X-API-Key": keys.create(name, role)[1]} for name, role in
               (("ana", "analyst"), ("feed", "ingest"))}  # fmt: skip
    return client, headers


def snooze(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {
        "rule": "big",
        "field": "customer_id",
        "value": "C-1",
        "days": 30,
        "reason": "reviewed: a regular",
    }
    return client.post("/v1/snoozes", json=body | fields, headers=headers)


def score(client: TestClient, headers: dict[str, str], tid: str, customer: str, **fields: Any) -> Any:
    answer = client.post("/v1/score", json=tx(tid, customer, amount=BIG, **fields), headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_snoozed_rule_spares_that_customer_alone_until_lifted(
    keyed: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, keys = keyed
    ana, feed = keys["analyst"], keys["ingest"]
    assert score(client, feed, "t0", "C-1")["decision"] == "BLOCK"

    made = snooze(client, ana)
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["rule"], body["field"], body["value"], body["analyst"]) == (
        "big",
        "customer_id",
        "C-1",
        "ana",
    )
    assert body["lifted_at"] is None

    spared = score(client, feed, "t1", "C-1")
    assert spared["decision"] != "BLOCK"
    assert spared["rules"] == ["snoozed:big", "shadow:watch"]
    assert "big" not in [r["code"] for r in spared["reasons"]]
    stored = client.get("/v1/transactions/t1", headers=feed).json()["decision"]
    assert stored["rules"] == ["snoozed:big", "shadow:watch"]

    other = score(client, feed, "t2", "C-2")
    assert (other["decision"], other["rules"]) == ("BLOCK", ["big", "shadow:watch"])

    listed = client.get("/v1/snoozes", params={"field": "customer_id", "value": "C-1"}, headers=ana).json()
    assert [s["id"] for s in listed["items"]] == [body["id"]]
    assert client.get("/v1/snoozes", params={"value": "C-2"}, headers=ana).json()["items"] == []

    lifted = client.delete(f"/v1/snoozes/{body['id']}", headers=ana)
    assert lifted.status_code == 200 and lifted.json()["lifted_by"] == "ana"
    again = client.delete(f"/v1/snoozes/{body['id']}", headers=ana)
    assert again.status_code == 409 and "lifted already" in again.json()["detail"]
    assert client.delete("/v1/snoozes/999999", headers=ana).status_code == 404
    assert client.get("/v1/snoozes", headers=ana).json()["items"] == []
    assert score(client, feed, "t3", "C-1")["decision"] == "BLOCK"

    audit = client.get("/v1/audit", params={"subject": f"snooze:{body['id']}"}, headers=ana).json()
    assert [(a["action"], a["actor"]) for a in audit] == [("lift", "ana"), ("snooze", "ana")]
    assert audit[1]["before"] is None and audit[1]["after"]["reason"] == "reviewed: a regular"
    assert audit[0]["before"]["lifted_at"] is None and audit[0]["after"]["lifted_by"] == "ana"


def test_a_snooze_ends_by_the_transaction_s_own_time(
    keyed: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, keys = keyed
    ana, feed = keys["analyst"], keys["ingest"]
    until = datetime.now(UTC) + timedelta(days=2)
    made = snooze(client, ana, field="device_id", value="D-1", days=None, until=until.isoformat())
    assert made.status_code == 201, made.text
    assert datetime.fromisoformat(made.json()["until"]) == until

    within = score(client, feed, "d1", "C-7", device_id="D-1")
    assert within["rules"] == ["snoozed:big", "shadow:watch"]
    after = score(client, feed, "d2", "C-7", device_id="D-1", minutes_ago=-3 * 24 * 60)  # dated after the end
    assert (after["decision"], after["rules"][0]) == ("BLOCK", "big")


@pytest.mark.parametrize(
    ("fields", "where", "says"),
    [
        ({"rule": "bigg"}, "rule", "the rules are: big"),
        ({"rule": "watch"}, "rule", "the rules are: big"),  # a shadow rule acts on nothing
        ({"days": 0}, "days", "greater than or equal to 1"),
        ({"days": 181}, "days", "less than or equal to 180"),
        ({"field": "card"}, "field", "customer_id"),
        ({"reason": ""}, "reason", "at least 1 character"),
        ({"days": None}, None, "either days"),
        ({"until": "2030-01-01T00:00:00Z"}, None, "not both"),
        ({"days": None, "until": "2020-01-01T00:00:00Z"}, "until", "after now"),
        ({"days": None, "until": (datetime.now(UTC) + timedelta(days=200)).isoformat()}, "until", "180 days"),
    ],
)
def test_a_bad_snooze_is_refused_naming_the_field(
    keyed: tuple[TestClient, dict[str, dict[str, str]]], fields: dict[str, Any], where: str | None, says: str
) -> None:
    client, keys = keyed
    refused = snooze(client, keys["analyst"], **fields)
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"][0]
    if where is not None:
        assert detail["loc"][-1] == where
    assert says in detail["msg"]
    assert client.get("/v1/snoozes", headers=keys["analyst"]).json()["items"] == []


def test_an_ingest_key_cannot_snooze(keyed: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, keys = keyed
    assert snooze(client, keys["ingest"]).status_code == 403


def test_the_worker_honours_a_snooze_set_on_another_server(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    common = {"database_url": f"sqlite:///{tmp_path}/shared.db", "rules_path": path}
    setting, _, _ = make_api(**common)
    working, _, _ = make_api(**common, run_worker=True, rules_poll_seconds=0.1)
    made = setting.post(
        "/v1/snoozes",
        json={"rule": "big", "field": "merchant_id", "value": "M-1", "days": 1, "reason": "known merchant"},
    )
    assert made.status_code == 201, made.text

    def decided(tid: str, **fields: Any) -> dict[str, Any]:
        sent = working.post("/v1/transactions", json=tx(tid, "C-9", amount=BIG, **fields))
        assert sent.status_code == 202, sent.text
        out: dict[str, Any] = (
            working.get(f"/v1/transactions/{tid}", params={"wait": 30}).json()["decision"] or {}
        )
        return out

    deadline, got = time.monotonic() + 30, {}
    while time.monotonic() < deadline and got.get("rules", [None])[0] != "snoozed:big":
        time.sleep(0.2)  # the working server reads the snoozes again every 0.1 s
        got = decided(f"w{time.monotonic_ns()}", merchant_id="M-1")
    assert got["rules"] == ["snoozed:big", "shadow:watch"] and got["decision"] != "BLOCK"
    assert decided("w-other", merchant_id="M-2")["decision"] == "BLOCK"
