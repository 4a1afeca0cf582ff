"""Explanations and the case report over HTTP: every decision answers and stores the model's largest
contributions both ways with usual values and sentences, and a case exports whole as JSON and as a
self-contained HTML page in which an analyst's note is text, never markup."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.apitools import Api, tx

ANA = "ana-key-01234567"
NOTE = '<script>alert("x")</script> & <b>bold</b> card "A&B"'


@pytest.fixture
def api(make_api: Callable[..., Api], tmp_path: Path) -> Api:
    """A server whose rules FLAG every amount over 1,000, with an analyst's key."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - {name: big, when: 'amount > 1000', action: FLAG, reason: big amount}\n", encoding="utf-8"
    )
    return make_api(rules_path=rules, api_keys=ANA)


def _as(key: str = ANA) -> dict[str, str]:
    return {"X-API-Key": key}


def _score(client: Any, transaction_id: str, amount: float, minutes_ago: float) -> dict[str, Any]:
    body = tx(transaction_id, customer_id="C-7", minutes_ago=minutes_ago, amount=amount, device_id="dev-7")
    answer = client.post("/v1/score", json=body, headers=_as())
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _contributions(explanation: dict[str, Any]) -> list[dict[str, Any]]:
    return [*explanation["raises"], *explanation["lowers"]]


def test_every_decision_answers_and_stores_its_contributions_both_ways(api: Api) -> None:
    client, _, _ = api
    amounts = [20.0, 35.0, 1800.0, 25.0]
    answers = [_score(client, f"e-{i}", amount, 30 - i) for i, amount in enumerate(amounts)]
    assert {a["decision"] for a in answers} >= {"APPROVE", "FLAG"}
    for answer in answers:
        explanation = answer["explanation"]
        assert explanation is not None and explanation["model"] == "xgboost"
        raises, lowers = explanation["raises"], explanation["lowers"]
        assert raises + lowers and len(raises) <= 3 and len(lowers) <= 3
        up, down = [c["contribution"] for c in raises], [c["contribution"] for c in lowers]
        assert all(c > 0 for c in up) and all(c < 0 for c in down)
        assert up == sorted(up, reverse=True) and down == sorted(down)
        for c in _contributions(explanation):
            assert c["value"] is not None and c["sentence"] and c["description"]
            assert (c["usual"] is None) == (c["usual_basis"] is None)
        stored = client.get(f"/v1/transactions/{answer['transaction_id']}", headers=_as()).json()
        assert stored["decision"]["explanation"] == explanation  # read back as it was answered
        model = [r for r in answer["reasons"] if r["source"] != "rules"]
        if answer["decision"] == "APPROVE":
            assert model == []  # the reasons' contract: an APPROVE has no model reasons
        else:  # a FLAG's model reasons are the explanation's raising half
            assert [(r["code"], r["contribution"]) for r in model] == [
                (c["feature"], c["contribution"]) for c in raises
            ]
    said = [c for a in answers for c in _contributions(a["explanation"]) if c["feature"] == "amount"]
    assert any(c["usual_basis"] == "this customer's 30-day average" for c in said)
    listed = client.get("/v1/decisions", headers=_as()).json()["items"]
    assert {d["transaction_id"]: d["explanation"] for d in listed} == {
        a["transaction_id"]: a["explanation"] for a in answers
    }


def _case(client: Any) -> int:
    _score(client, "r-0", 1500.0, 20)
    _score(client, "r-1", 30.0, 19)
    _score(client, "r-2", 2500.0, 18)
    [case] = client.get("/v1/cases", headers=_as()).json()["items"]
    case_id = int(case["id"])
    assert client.post(f"/v1/cases/{case_id}/claim", headers=_as()).status_code == 200
    assert client.post(f"/v1/cases/{case_id}/notes", json={"text": NOTE}, headers=_as()).status_code == 201
    verdict = client.post(f"/v1/cases/{case_id}/verdict", json={"verdict": "fraud"}, headers=_as())
    assert verdict.status_code == 200, verdict.text
    return case_id


def test_the_case_report_exports_the_case_as_json(api: Api) -> None:
    client, _, _ = api
    case_id = _case(client)
    answer = client.get(f"/v1/cases/{case_id}/report", params={"format": "json"}, headers=_as())
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    report = answer.json()
    assert report["case"]["id"] == case_id and report["case"]["verdict"] == "fraud"
    assert [d["transaction_id"] for d in report["decisions"]] == ["r-2", "r-0"]  # the FLAGs, newest first
    for decision in report["decisions"]:
        assert decision["explanation"]["raises"] and any(r["code"] == "big" for r in decision["reasons"])
        assert decision["rules"] == ["big"]
    assert [n["text"] for n in report["notes"]] == [NOTE]
    assert [a["action"] for a in report["audit"]] == ["claim", "note", "verdict"]  # oldest first
    history = report["history"]
    assert history["field"] == "customer_id" and history["value"] == "C-7"
    assert [t["transaction_id"] for t in history["transactions"]] == ["r-2", "r-1", "r-0"]
    assert {t["transaction_id"]: t["known_fraud"] for t in history["transactions"]}["r-0"] is True
    # without ?format=, a client asking for JSON (or anything) gets JSON
    assert client.get(f"/v1/cases/{case_id}/report", headers=_as()).json()["case"]["id"] == case_id


def test_the_case_report_is_one_html_page_that_escapes_what_analysts_wrote(api: Api) -> None:
    client, _, _ = api
    case_id = _case(client)
    browser = {**_as(), "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    answer = client.get(f"/v1/cases/{case_id}/report", headers=browser)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script" not in page and "<b>" not in page  # the note is text
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page)  # nothing loaded from anywhere
    report = client.get(f"/v1/cases/{case_id}/report", params={"format": "json"}, headers=_as()).json()
    for decision in report["decisions"]:
        assert decision["transaction_id"] in page
        for c in _contributions(decision["explanation"]):
            assert _escaped(c["sentence"]) in page
    assert "fraud" in page and "Audit trail" in page and "r-1" in page  # the history lists the APPROVE
    # ?format= wins over the Accept header
    chosen = client.get(f"/v1/cases/{case_id}/report", params={"format": "json"}, headers=browser)
    assert chosen.headers["content-type"].startswith("application/json")
    html = client.get(f"/v1/cases/{case_id}/report", params={"format": "html"}, headers=_as())
    assert html.headers["content-type"].startswith("text/html")


def _escaped(text: str) -> str:
    from html import escape

    return escape(text)


def test_the_case_report_is_for_readers_of_cases_and_says_what_is_wrong(api: Api) -> None:
    client, services, _ = api
    case_id = _case(client)
    _, teller = services.store.keys.create("teller", "ingest")
    refused = client.get(f"/v1/cases/{case_id}/report", headers=_as(teller))
    assert refused.status_code == 403
    assert client.get("/v1/cases/999/report", headers=_as()).status_code == 404
    wrong = client.get(f"/v1/cases/{case_id}/report", params={"format": "pdf"}, headers=_as())
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["query", "format"]
