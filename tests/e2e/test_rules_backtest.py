"""Rules backtests over HTTP and from the command line, on decisions the API made and stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.events.transaction import DECISIONS
from tests.e2e.apitools import NOW, Api, tx

runner = CliRunner()

CANDIDATE = """
rules:
  - name: big
    when: amount > 100
    action: BLOCK
    reason: big amount
  - name: ring_device
    when: device_id == "ring-dev"
    action: FLAG
    reason: a device of a known ring
"""

#: id, amount, device, fraud label (None: unlabelled)
SENT = [
    ("b1", 50.0, "ring-dev", True),
    ("b2", 500.0, "dev-2", True),
    ("b3", 250.0, "ring-dev", False),
    ("b4", 20.0, "dev-4", None),
    ("b5", 30.0, "dev-5", True),
]


def _history(client: TestClient) -> dict[str, str]:
    """Scores and labels :data:`SENT`; the live decision of each."""
    live = {}
    for i, (tid, amount, device, _) in enumerate(SENT):
        answer = client.post(
            "/v1/score", json=tx(tid, f"C-{i}", minutes_ago=30 - i, amount=amount, device_id=device)
        )
        assert answer.status_code == 200, answer.text
        live[tid] = answer.json()["decision"]
    for tid, _, _, fraud in SENT:
        if fraud is not None:
            label = {"transaction_id": tid, "is_fraud": fraud, "label_time": NOW.isoformat()}
            assert client.post("/v1/labels", json=label).status_code < 300
    return live


def _check(report: dict[str, Any], live: dict[str, str]) -> None:
    assert (report["rows"], report["labelled"], report["fraud"], report["fraud_amount"]) == (5, 4, 3, 580.0)
    rules = {r["name"]: r for r in report["rules"]}
    # big: b2 (fraud) and b3 (legitimate); ring_device: b1 (fraud) and b3
    assert rules["big"] == {
        "name": "big", "action": "BLOCK", "shadow": False, "hits": 2, "fraud_hits": 1, "unlabelled_hits": 0,
        "precision": 0.5, "recall": 1 / 3, "fraud_amount": 500.0,
    }  # fmt: skip
    assert (rules["ring_device"]["hits"], rules["ring_device"]["fraud_amount"]) == (2, 50.0)
    # b2 and b3 are BLOCKed by the candidate: a change wherever they were not BLOCKed live
    blocked = {c["to"]: c for c in report["changes"]}.get("BLOCK")
    expected = sorted(t for t in ("b2", "b3") if live[t] != "BLOCK")
    assert sorted(blocked["examples"] if blocked else []) == expected
    assert report["live"] == {d: list(live.values()).count(d) for d in DECISIONS}
    assert report["candidate"]["BLOCK"] >= 2


def test_post_rules_backtest_reports_rules_on_the_stored_decisions(api: Api) -> None:
    client, _, _ = api
    live = _history(client)
    answer = client.post("/v1/rules/backtest", json={"rules": CANDIDATE, "since": "7d"})
    assert answer.status_code == 200, answer.text
    _check(answer.json(), live)
    as_json = {"rules": [{"name": "big", "when": "amount > 100", "action": "BLOCK", "reason": "big"}]}
    same = client.post("/v1/rules/backtest", json={"rules": as_json}).json()
    assert [(r["name"], r["hits"]) for r in same["rules"]] == [("big", 2)]


def test_an_invalid_candidate_or_window_is_a_422_naming_the_rule_or_field(api: Api) -> None:
    client, _, _ = api
    typo = "rules:\n  - {name: night_big, when: amout > 1, action: FLAG, reason: r}\n"
    answer = client.post("/v1/rules/backtest", json={"rules": typo})
    assert answer.status_code == 422
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "rules"] and detail["ctx"] == {"rule": "night_big"}
    assert "rule 'night_big'" in detail["msg"] and "did you mean 'amount'" in detail["msg"]
    broken = client.post("/v1/rules/backtest", json={"rules": "rules: [unclosed"})
    assert broken.status_code == 422 and "invalid YAML" in broken.json()["detail"][0]["msg"]
    window = client.post("/v1/rules/backtest", json={"rules": "rules: []", "since": "a month"})
    assert window.status_code == 422 and window.json()["detail"][0]["loc"] == ["body", "since"]
    for field, value in (("since", "99999999w"), ("until", "0001-01-01T00:00:00")):
        far = client.post("/v1/rules/backtest", json={"rules": "rules: []", field: value})
        assert far.status_code == 422 and far.json()["detail"][0]["loc"] == ["body", field]


def test_fraudstream_rules_backtest_reports_the_same_from_the_command_line(api: Api, tmp_path: Path) -> None:
    client, services, _ = api
    live = _history(client)
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(CANDIDATE)
    settings = services.settings
    env = {"FRAUD_DATABASE_URL": settings.db_url, "FRAUD_MODEL_PATH": str(settings.model_path)}
    done = runner.invoke(app, ["rules", "backtest", str(candidate), "--since", "7d", "--json"], env=env)
    assert done.exit_code == 0, done.output
    _check(json.loads(done.stdout), live)
    table = runner.invoke(app, ["rules", "backtest", str(candidate)], env=env)
    assert table.exit_code == 0 and "ring_device" in table.stdout and "big" in table.stdout
    candidate.write_text("rules:\n  - {name: bad_one, when: amount >, action: FLAG, reason: r}\n")
    refused = runner.invoke(app, ["rules", "backtest", str(candidate)], env=env)
    assert refused.exit_code == 2 and "rule 'bad_one'" in refused.stderr
    wrong = runner.invoke(app, ["rules", "backtest", str(candidate), "--since", "soon"], env=env)
    assert wrong.exit_code == 2 and "--since" in wrong.stderr
    too_long = runner.invoke(app, ["rules", "backtest", str(candidate), "--since", "99999999999w"], env=env)
    assert too_long.exit_code == 2 and "at most 3660 days" in too_long.stderr


BOMB = (
    "".join(
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
        for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
    )
    + "rules: *i\n"
)
"""A rules text of 440 bytes whose aliases expand to nine to the ninth strings (a "billion laughs")."""


def test_a_rules_text_with_aliases_is_refused_without_expanding_it(api: Api) -> None:
    client, _, _ = api
    assert len(BOMB) < 500
    for answer in (
        client.post("/v1/rules/backtest", json={"rules": BOMB}),
        client.post("/v1/rules/backtest", json={"rules": "rules: []\n" + "#" * 300_000}),
    ):
        assert answer.status_code == 422
        detail = answer.json()["detail"][0]
        assert len(answer.text) < 1_000  # the refusal says what is wrong, and echoes no expansion
        assert "anchors and aliases" in detail["msg"] or "at most" in detail["msg"]


def test_rules_are_compiled_off_the_event_loop(api: Api, monkeypatch: Any) -> None:
    """While a candidate is being compiled (held here), the other routes go on answering."""
    import threading

    from fraudstream.api.routes import rules as route

    client, _, _ = api
    release, started = threading.Event(), threading.Event()
    real = route.compile_candidate

    def held(*args: Any) -> Any:
        started.set()
        release.wait(30)
        return real(*args)

    monkeypatch.setattr(route, "compile_candidate", held)
    answers: list[int] = []
    backtest = threading.Thread(
        target=lambda: answers.append(
            client.post("/v1/rules/backtest", json={"rules": CANDIDATE}).status_code
        )
    )
    backtest.start()
    try:
        assert started.wait(30)
        assert client.get("/health").status_code == 200
        assert client.post("/v1/score", json=tx("while-compiling")).status_code == 200
        assert not release.is_set() and answers == []  # both answered while the compile was held
    finally:
        release.set()
        backtest.join(60)
    assert answers == [200]


def test_rules_holding_an_integer_beyond_64_bits_get_a_422_not_a_500(api: Api) -> None:
    client, _, _ = api
    rules = {"rules": [{"name": "big", "when": "amount > 1", "action": "FLAG", "reason": "r", "x": 2**100}]}
    answer = client.post("/v1/rules/backtest", json={"rules": rules})
    assert answer.status_code == 422, answer.text
    assert "unknown key 'x'" in answer.text
