"""Cases over HTTP, as an analyst works them: FLAGs of a customer gather in one case, claimed, noted
and decided; the verdict's labels reach the stored labels and the label-aware features at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.apitools import Api, tx

ANA, BO, SENDER = "ana-key-01234567", "bo-key-012345678", "sender-key-01234"


@pytest.fixture
def api(make_api: Callable[..., Api], tmp_path: Path) -> Api:
    """A server whose rules FLAG every amount over 1,000, with two analysts' keys and an admin key."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - {name: big, when: 'amount > 1000', action: FLAG, reason: big amount}\n", encoding="utf-8"
    )
    return make_api(rules_path=rules, api_keys=f"{ANA},{BO}", admin_keys="lead-key-0123456")


def _as(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def _send(
    client: Any, prefix: str, customer: str, amounts: list[float], **fields: Any
) -> list[dict[str, Any]]:
    answers = []
    for i, amount in enumerate(amounts):
        body = tx(f"{prefix}{i}", customer_id=customer, minutes_ago=20 - i, amount=amount, **fields)
        answer = client.post("/v1/score", json=body, headers=_as(ANA))
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
    return answers


def test_an_analyst_claims_notes_and_decides_a_case_and_its_labels_feed_the_features(api: Api) -> None:
    client, services, _ = api
    _send(client, "a-", "C-A", [1500.0, 20.0, 2500.0], device_id="dev-a")  # two FLAGs, one APPROVE
    _send(client, "b-", "C-B", [1200.0], device_id="dev-b")

    queue = client.get("/v1/cases", headers=_as(ANA)).json()["items"]
    assert [(c["group_value"], c["transactions"], c["status"]) for c in queue] == [
        ("C-A", 2, "open"),
        ("C-B", 1, "open"),
    ]  # C-A's expected loss is larger
    case = queue[0]
    assert case["priority"] == pytest.approx(case["expected_loss"]) and case["age_seconds"] >= 0

    claimed = client.post(f"/v1/cases/{case['id']}/claim", headers=_as(ANA))
    assert claimed.status_code == 200 and claimed.json()["status"] == "in_review"
    ana = claimed.json()["assignee"]
    taken = client.post(f"/v1/cases/{case['id']}/claim", headers=_as(BO))
    assert taken.status_code == 409 and ana in taken.json()["detail"]
    note = client.post(
        f"/v1/cases/{case['id']}/notes", json={"text": "two big payments in a row"}, headers=_as(ANA)
    )
    assert note.status_code == 201 and note.json()["author"] == ana
    mine = client.get("/v1/cases", params={"assignee": ana}, headers=_as(ANA)).json()["items"]
    assert [c["id"] for c in mine] == [case["id"]]

    verdict = client.post(f"/v1/cases/{case['id']}/verdict", json={"verdict": "fraud"}, headers=_as(ANA))
    assert verdict.status_code == 200, verdict.text
    assert verdict.json()["labels_accepted"] == 2 and verdict.json()["cases"][0]["verdict"] == "fraud"
    labels = client.get("/v1/labels/a-0", headers=_as(ANA)).json()
    assert labels["is_fraud"] is True and labels["labels"][0]["source"] == "case"
    again = client.post(f"/v1/cases/{case['id']}/verdict", json={"verdict": "legitimate"}, headers=_as(ANA))
    assert again.status_code == 409

    # the device's known-fraud features count the verdict from the next decision on
    later = tx("a-later", customer_id="C-A", minutes_ago=0, amount=30.0, device_id="dev-a")
    later["timestamp"] = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert client.post("/v1/score", json=later, headers=_as(ANA)).status_code == 200
    stored = services.store.decisions.get_many(["a-2", "a-later"])
    assert stored["a-2"].features["device_known_fraud_30d"] in (0.0, None)
    assert stored["a-later"].features["device_known_fraud_30d"] == 2.0

    detail = client.get(f"/v1/cases/{case['id']}", headers=_as(BO)).json()
    assert sorted(d["transaction_id"] for d in detail["decisions"]) == ["a-0", "a-2"]
    assert [n["text"] for n in detail["notes"]] == ["two big payments in a row"]
    audit = client.get("/v1/audit", params={"subject": f"case:{case['id']}"}, headers=_as(BO)).json()
    assert [(e["action"], e["actor"]) for e in audit] == [("verdict", ana), ("note", ana), ("claim", ana)]


def test_a_bulk_verdict_is_all_or_nothing_and_filters_say_what_is_wrong(api: Api) -> None:
    client, _, _ = api
    for customer in ("C-1", "C-2", "C-3"):
        _send(client, f"{customer}-", customer, [1100.0])
    ids = [c["id"] for c in client.get("/v1/cases", headers=_as(ANA)).json()["items"]]
    assert len(ids) == 3
    missing = client.post(
        "/v1/cases/verdicts", json={"case_ids": [ids[0], 999], "verdict": "legitimate"}, headers=_as(ANA)
    )
    assert missing.status_code == 404 and "999" in missing.json()["detail"]
    assert len(client.get("/v1/cases", headers=_as(ANA)).json()["items"]) == 3  # nothing changed
    bulk = client.post(
        "/v1/cases/verdicts",
        json={"case_ids": ids[:2], "verdict": "legitimate", "note": "known customers"},
        headers=_as(ANA),
    )
    assert bulk.status_code == 200 and bulk.json()["labels_accepted"] == 2
    open_ids = [c["id"] for c in client.get("/v1/cases", headers=_as(ANA)).json()["items"]]
    assert open_ids == [ids[2]]
    closed = client.get("/v1/cases", params={"status": "closed"}, headers=_as(ANA)).json()["items"]
    assert sorted(c["id"] for c in closed) == sorted(ids[:2])
    bad = client.get("/v1/cases", params={"older_than": "a while"}, headers=_as(ANA))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "older_than"]
    wrong = client.post(f"/v1/cases/{ids[2]}/verdict", json={"verdict": "maybe"}, headers=_as(ANA))
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"][-1] == "verdict"
    assert client.get("/v1/cases/999", headers=_as(ANA)).status_code == 404
