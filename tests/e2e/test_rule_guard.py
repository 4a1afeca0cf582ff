"""The rule guard over HTTP: a rule whose backtested rate is low starts firing on every transaction; the
running server moves it to shadow (later decisions record it as a shadow hit and are not decided by it),
an alert names it and the audit log has the trip; an admin re-enables it and its count starts afresh.
Another server on the same database applies the guard without a restart."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fraudstream.cli import app
from tests.e2e.apitools import Api, metric, tx

SEED = "rules:\n  - {name: tiny, when: 'amount < 1', action: FLAG, reason: tiny amount}\n"
RULES = (
    "rules:\n"
    "  - {name: big, when: 'amount > 1000', action: BLOCK, reason: big amount}\n"
    "  - {name: watch, when: 'amount > 1000', action: FLAG, reason: watched, shadow: true}\n"
)
BIG, SMALL = 5000.0, 20.0
GUARD = {"rule_guard_min_hits": 10, "rule_guard_window": 500, "rule_guard_multiple": 5.0}


def settings(tmp_path: Path) -> dict[str, Any]:
    """A server's settings: rules versions in a database under ``tmp_path``, seeded from a file."""
    seed = tmp_path / "rules.yaml"
    seed.write_text(SEED, encoding="utf-8")
    return {
        "database_url": f"sqlite:///{tmp_path}/shared.db", "rules_path": seed, "rules_source": "database",
        "api_keys": "env-key-0123456789", "key_cache_seconds": 0, "rate_limits": False,
        "rules_poll_seconds": 0.1, **GUARD,
    }  # fmt: skip


def server(make_api: Callable[..., Api], tmp_path: Path) -> tuple[TestClient, dict[str, dict[str, str]]]:
    client, services, _ = make_api(**settings(tmp_path))
    keys = services.store.keys
    made = {role: {"X-API-Key": keys.create(name, role)[1]} for name, role in
            (("lead", "admin"), ("ana", "analyst"), ("feed", "ingest"))}  # fmt: skip
    return client, made


def score(client: TestClient, headers: dict[str, str], tid: str, amount: float) -> dict[str, Any]:
    answer = client.post("/v1/score", json=tx(tid, f"C-{tid}", amount=amount), headers=headers)
    assert answer.status_code == 200, answer.text
    out: dict[str, Any] = answer.json()
    return out


def state(client: TestClient, headers: dict[str, str], rule: str) -> dict[str, Any]:
    answer = client.get("/v1/rules/guard", headers=headers)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = next(r for r in answer.json()["rules"] if r["name"] == rule)
    return found


def until(condition: Callable[[], Any], what: str, seconds: float = 60.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = condition()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds:g} s: {what}")


def test_a_misfiring_rule_is_moved_to_shadow_named_in_an_alert_and_re_enabled_by_an_admin(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    client, keys = server(make_api, tmp_path)
    lead, ana, feed = keys["admin"], keys["analyst"], keys["ingest"]
    for i in range(59):  # the history: one big payment in sixty
        score(client, feed, f"h{i}", SMALL)
    score(client, feed, "h-big", BIG)

    saved = client.put("/v1/rules", json={"rules": RULES}, headers=lead)  # backtested over that history
    assert saved.status_code == 200 and saved.json()["version"] == "2", saved.text
    big = state(client, ana, "big")
    assert (big["state"], big["hits"], big["baseline"]["hits"], big["baseline"]["decisions"]) == (
        "watched",
        0,
        1,
        60,
    )
    assert big["baseline"]["computed_by"] == "lead" and abs(big["expected_rate"] - 1 / 60) < 1e-9
    assert state(client, ana, "watch")["state"] == "shadow"

    blocked = score(client, feed, "m0", BIG)  # the rule now fires on everything
    assert (blocked["decision"], blocked["rules"]) == ("BLOCK", ["big", "shadow:watch"])
    sent = iter(range(1, 10_000))

    def guarded() -> dict[str, Any] | None:
        answer = score(client, feed, f"m{next(sent)}", BIG)
        return answer if "shadow:big" in answer["rules"] else None

    after = until(guarded, "the guard moves big to shadow")
    assert after["rules"] == ["shadow:big", "shadow:watch"] and after["decision"] != "BLOCK"
    assert "big" not in [r["code"] for r in after["reasons"]]
    stored = client.get(f"/v1/transactions/{after['transaction_id']}", headers=feed).json()["decision"]
    assert stored["rules"] == ["shadow:big", "shadow:watch"] and stored["rules_version"] == "2"

    status = client.get("/v1/rules/guard", headers=ana).json()
    assert [(g["rule"], g["rules_version"], g["released_at"]) for g in status["in_force"]] == [
        ("big", "2", None)
    ]
    tripped = status["in_force"][0]
    assert tripped["hits"] >= 10 and tripped["expected_hits"] == 1 and tripped["expected_decisions"] == 60
    assert state(client, ana, "big")["state"] == "guarded"
    assert metric(client, "fraudstream_rules_guarded ", ana) == 1
    assert metric(client, 'fraudstream_rule_guarded{rule="big"}', ana) == 1

    def alert() -> dict[str, Any] | None:
        alerts = client.get("/v1/alerts", headers=ana).json()
        return next((a for a in alerts if a["kind"] == "rule_guard"), None)

    named = until(alert, "an alert names the rule")
    assert named["entity"] == "rule:big" and named["message"].startswith(
        "Rule big moved to shadow by the rule guard"
    )
    assert named["details"]["rules_version"] == "2" and named["details"]["guard_id"] == tripped["id"]
    audit = client.get("/v1/audit", params={"subject": "rule:big"}, headers=ana).json()
    assert [(a["action"], a["actor"]) for a in audit] == [("guard", "rule-guard")]

    reason = {"reason": "the feed sent amounts in cents; fixed"}
    assert client.post("/v1/rules/guard/big/reenable", json=reason, headers=ana).status_code == 403
    assert client.post("/v1/rules/guard/tiny/reenable", json=reason, headers=lead).status_code == 404
    refused = client.post("/v1/rules/guard/big/reenable", json={"reason": ""}, headers=lead)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == "reason"
    released = client.post("/v1/rules/guard/big/reenable", json=reason, headers=lead)
    assert released.status_code == 200, released.text
    assert (released.json()["released_by"], released.json()["release_reason"]) == ("lead", reason["reason"])

    for i in range(5):  # it acts again at once, and its count starts afresh: not tripped again
        assert score(client, feed, f"r{i}", BIG)["rules"] == ["big", "shadow:watch"]
    time.sleep(0.3)  # a few checks of the guard
    assert score(client, feed, "r5", BIG)["decision"] == "BLOCK"
    again = state(client, ana, "big")
    assert again["state"] == "watched" and again["hits"] == again["decisions"] == 6
    assert client.get("/v1/rules/guard", headers=ana).json()["in_force"] == []
    assert metric(client, "fraudstream_rules_guarded ", ana) == 0
    assert "fraudstream_rule_guarded{" not in client.get("/metrics", headers=ana).text
    audit = client.get("/v1/audit", params={"subject": "rule:big"}, headers=ana).json()
    assert [(a["action"], a["actor"]) for a in audit] == [("reenable", "lead"), ("guard", "rule-guard")]


def test_a_seeded_version_has_no_baseline_until_an_admin_backtests_it(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    client, keys = server(make_api, tmp_path)
    tiny = state(client, keys["analyst"], "tiny")
    assert tiny["state"] == "no_baseline" and tiny["baseline"] is None
    assert tiny["says"] == "no baseline: rules version 1 was not backtested"

    assert client.post("/v1/rules/guard/baseline", headers=keys["analyst"]).status_code == 403
    done = client.post("/v1/rules/guard/baseline", headers=keys["admin"])
    assert done.status_code == 200, done.text
    tiny = next(r for r in done.json()["rules"] if r["name"] == "tiny")
    assert tiny["state"] == "no_baseline" and tiny["baseline"]["decisions"] == 0
    assert tiny["says"] == "no baseline: its backtest found no stored decisions"

    for i in range(20):
        score(client, keys["ingest"], f"h{i}", SMALL)
    done = client.post("/v1/rules/guard/baseline", headers=keys["admin"]).json()
    tiny = next(r for r in done["rules"] if r["name"] == "tiny")
    assert (tiny["state"], tiny["baseline"]["hits"], tiny["baseline"]["decisions"]) == ("watched", 0, 20)
    assert (done["multiple"], done["min_hits"], done["window"], done["enabled"]) == (5.0, 10, 500, True)


def test_another_server_applies_the_guard_and_the_command_line_re_enables_the_rule(
    make_api: Callable[..., Api], tmp_path: Path, bundle_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, keys = server(make_api, tmp_path)
    other, _, _ = make_api(**settings(tmp_path))  # another server on the same database
    lead, feed = keys["admin"], keys["ingest"]
    for i in range(60):
        score(client, feed, f"h{i}", SMALL)
    assert client.put("/v1/rules", json={"rules": RULES}, headers=lead).status_code == 200
    sent = iter(range(10_000))
    until(lambda: "shadow:big" in score(client, feed, f"m{next(sent)}", BIG)["rules"], "big is guarded")

    until(
        lambda: "shadow:big" in score(other, feed, f"o{next(sent)}", BIG)["rules"],
        "the other server applies it",
    )

    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/shared.db", "MODEL_PATH": str(bundle_path),
           "RULES_SOURCE": "database", "DATA_DIR": str(tmp_path / "cli")}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(f"FRAUD_{name}", value)
    shown = CliRunner().invoke(app, ["rules", "guard", "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"state": "guarded"' in shown.output
    told = client.get("/v1/rules/guard", headers=keys["analyst"]).json()
    baselines = {r["name"]: r["baseline"] for r in json.loads(shown.stdout)["rules"]}
    assert baselines["big"] is not None  # the CLI shows what the API shows
    assert baselines == {r["name"]: r["baseline"] for r in told["rules"]}
    done = CliRunner().invoke(app, ["rules", "reenable", "big", "--reason", "checked", "--by", "ops"])
    assert done.exit_code == 0, done.output
    assert "big re-enabled" in done.output
    until(
        lambda: score(other, feed, f"o{next(sent)}", BIG)["rules"] == ["big", "shadow:watch"], "it acts again"
    )
    audit = client.get("/v1/audit", params={"subject": "rule:big"}, headers=keys["analyst"]).json()
    assert audit[0]["action"] == "reenable" and audit[0]["actor"] == "ops"
    missing = CliRunner().invoke(app, ["rules", "reenable", "big", "--reason", "checked"])
    assert missing.exit_code != 0 and "not guarded" in missing.output
