"""Explanations over HTTP: every decision answers and stores the model's largest contributions both
ways with usual values and sentences."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.apitools import Api, tx

ANA = "ana-key-01234567"


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
