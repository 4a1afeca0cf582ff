"""Rules kept as versions in the database: saved over HTTP by an admin, checked first, used at once by the
server that saved them and, without a restart, by another server on the same database."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.storage import open_store
from fraudstream.storage.rules import RulesRepository
from tests.e2e.apitools import Api, tx

runner = CliRunner()

SEED = "rules:\n  - {name: tiny, when: 'amount < 1', action: FLAG, reason: tiny amount}\n"
BIG = "rules:\n  - {name: big, when: 'amount > 1000', action: BLOCK, reason: big amount, alert: false}\n"


def test_an_admin_saves_a_version_that_every_server_uses_without_a_restart(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    seed = tmp_path / "rules.yaml"
    seed.write_text(SEED, encoding="utf-8")
    url = f"sqlite:///{tmp_path}/shared.db"
    key = "env-key-0123456789"
    common = {"database_url": url, "rules_path": seed, "rules_source": "database", "api_keys": key}
    common |= {"key_cache_seconds": 0, "rate_limits": False}
    first, services, _ = make_api(**common)
    other, _, _ = make_api(**common, rules_poll_seconds=0.1)
    keys = services.store.keys
    admin = {"X-API-Key": keys.create("lead", "admin")[1]}
    analyst = {"X-API-Key": keys.create("ana", "analyst")[1]}

    seeded = first.get("/v1/rules", headers=analyst).json()
    assert (seeded["source"], seeded["version"], seeded["created_by"]) == ("database", "1", "seed:rules.yaml")
    assert [r["name"] for r in seeded["rules"]] == ["tiny"] and seeded["text"] == SEED

    assert first.put("/v1/rules", json={"rules": BIG}, headers=analyst).status_code == 403
    typo = "rules:\n  - {name: huge, when: amout > 1, action: BLOCK, reason: r}\n"
    refused = first.put("/v1/rules", json={"rules": typo}, headers=admin)
    assert refused.status_code == 422 and refused.json()["detail"][0]["ctx"] == {"rule": "huge"}
    assert first.get("/v1/rules", headers=analyst).json()["version"] == "1"

    saved = first.put("/v1/rules", json={"rules": BIG}, headers=admin)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["version"], body["created_by"], body["text"]) == ("2", "lead", BIG)
    assert [(v["version"], v["created_by"]) for v in body["versions"]] == [
        (2, "lead"),
        (1, "seed:rules.yaml"),
    ]
    answer = first.post("/v1/score", json=tx("v1", "C-1", amount=5000.0), headers=admin).json()
    assert answer["decision"] == "BLOCK" and answer["rules"] == ["big"]  # at once on the saving server
    stored = first.get("/v1/transactions/v1", headers=admin).json()["decision"]
    assert stored["rules_version"] == "2"  # the version that decided it

    deadline, rules = time.monotonic() + 30, []
    while time.monotonic() < deadline and rules != ["big"]:
        time.sleep(0.2)  # the other server polls every 0.1 s
        rules = other.post(
            "/v1/score", json=tx(f"o{time.monotonic_ns()}", "C-2", amount=5000.0), headers=admin
        ).json()["rules"]
    assert rules == ["big"]
    assert other.get("/v1/rules", headers=analyst).json()["version"] == "2"

    as_json = {"rules": [{"name": "mid", "when": "amount > 100", "action": "FLAG", "reason": "mid"}]}
    posted = first.post("/v1/rules", json={"rules": as_json}, headers=admin)
    assert posted.status_code == 201 and posted.json()["version"] == "3"
    assert "name: mid" in posted.json()["text"]


def test_with_rules_from_a_file_saving_a_version_is_refused(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api()
    shown = client.get("/v1/rules").json()
    assert shown["source"] == "file" and shown["versions"] == [] and shown["rules"]
    assert client.post("/v1/score", json=tx("f1", "C-1")).status_code == 200
    stored = client.get("/v1/transactions/f1").json()["decision"]
    assert stored["rules_version"] == shown["version"]  # the file's short hash
    refused = client.post("/v1/rules", json={"rules": BIG})
    assert refused.status_code == 409 and "FRAUD_RULES_SOURCE" in refused.json()["detail"]


def test_rules_export_writes_a_saved_version_and_rules_versions_lists_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/rules.db"
    env = {"FRAUD_DATABASE_URL": url}
    empty = runner.invoke(app, ["rules", "export"], env=env)
    assert empty.exit_code == 2 and "no rules version is stored" in empty.stderr
    with open_store(url) as store:
        store.migrate()
        repo = RulesRepository(store.db)
        repo.seed(SEED, "seed:rules.yaml")
        repo.save(BIG, "lead")
    assert runner.invoke(app, ["rules", "export"], env=env).stdout == BIG
    target = tmp_path / "out.yaml"
    written = runner.invoke(app, ["rules", "export", "--version", "1", "-o", str(target)], env=env)
    assert written.exit_code == 0 and target.read_text(encoding="utf-8") == SEED
    listed = json.loads(runner.invoke(app, ["rules", "versions", "--json"], env=env).stdout)
    assert [(v["version"], v["created_by"]) for v in listed["versions"]] == [
        (2, "lead"),
        (1, "seed:rules.yaml"),
    ]


def test_a_running_worker_decides_with_a_version_saved_on_another_server(
    make_api: Callable[..., Api], tmp_path: Path
) -> None:
    seed = tmp_path / "rules.yaml"
    seed.write_text(SEED, encoding="utf-8")
    common = {
        "database_url": f"sqlite:///{tmp_path}/shared.db",
        "rules_path": seed,
        "rules_source": "database",
    }
    saving, _, _ = make_api(**common)
    working, _, _ = make_api(**common, run_worker=True, rules_poll_seconds=0.1)
    assert saving.put("/v1/rules", json={"rules": BIG}).json()["version"] == "2"
    deadline, decided = time.monotonic() + 30, {}
    while time.monotonic() < deadline and decided.get("rules_version") != "2":
        tid = f"w{time.monotonic_ns()}"
        assert working.post("/v1/transactions", json=tx(tid, "C-9", amount=5000.0)).status_code == 202
        decided = working.get(f"/v1/transactions/{tid}", params={"wait": 30}).json()["decision"] or {}
    assert (decided.get("rules_version"), decided.get("decision"), decided.get("rules")) == (
        "2",
        "BLOCK",
        ["big"],
    )
