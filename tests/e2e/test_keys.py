"""``fraudstream keys`` and the API as a key holder meets them: a token printed once and stored only as
its hash, roles enforced on stored keys, a revoked key refused once the cache has forgotten it, and
rate limits counted per stored key."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fraudstream.cli import app as cli
from tests.e2e.apitools import Api, tx

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_keys_create_list_revoke_from_the_command_line(workdir: Path) -> None:
    code, out, err = run("keys", "create", "alice", "--role", "analyst")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("fsk_") and len(token) > 40 and "shown this once" in err

    code, out, err = run("keys", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)["keys"]
    assert [(k["name"], k["role"], k["revoked_at"]) for k in listed] == [("alice", "analyst", None)]
    assert token not in out and "token" not in listed[0]

    database = (workdir / "data" / "fraudstream.db").read_bytes()
    assert token.encode() not in database and b"alice" in database  # stored, but only hashed

    code, _, err = run("keys", "create", "alice", "--role", "admin")
    assert code == 2 and "name: a key named 'alice' exists already" in err
    code, _, err = run("keys", "create", "bob", "--role", "boss")
    assert code == 2 and "role: expected one of ingest, analyst, admin, got 'boss'" in err
    code, _, err = run("keys", "create", "no spaces", "--role", "ingest")
    assert code == 2 and "name: 'no spaces' must be" in err

    code, out, err = run("keys", "revoke", "alice")
    assert code == 0 and "revoked 'alice' (analyst)" in out, err
    code, out, _ = run("keys", "list", "--active", "--json")
    assert json.loads(out)["keys"] == []
    code, out, _ = run("keys", "list")
    assert "alice" in out and token not in out
    code, _, err = run("keys", "revoke", "carol")
    assert code == 2 and "no key named 'carol'" in err


def test_stored_keys_act_with_their_role_and_a_revoked_key_is_refused(make_api: Callable[..., Api]) -> None:
    client, services, _ = make_api(key_cache_seconds=0)
    keys = services.store.keys
    _, feeder = keys.create("feeder", "ingest")
    _, alice = keys.create("alice", "analyst")
    _, root = keys.create("root", "admin")

    assert client.post("/v1/score", json=tx("s-1")).status_code == 401  # a stored key turns auth on
    assert client.post("/v1/score", json=tx("s-1"), headers={"X-API-Key": feeder}).status_code == 200
    assert (
        client.get("/v1/transactions/s-1", headers={"Authorization": f"Bearer {feeder}"}).status_code == 200
    )
    refused = client.get("/v1/stats", headers={"X-API-Key": feeder})
    assert refused.status_code == 403
    assert refused.json()["detail"] == "this needs the analyst role, and the key 'feeder' has the role ingest"
    refused = client.post("/v1/score", json=tx("s-2"), headers={"X-API-Key": alice})  # the fast path too
    assert refused.status_code == 403 and "needs the ingest role" in refused.json()["detail"]
    assert client.get("/v1/stats", headers={"X-API-Key": alice}).status_code == 200
    assert client.post("/v1/score", json=tx("s-3"), headers={"X-API-Key": root}).status_code == 200

    keys.revoke("feeder")
    answer = client.post("/v1/score", json=tx("s-4"), headers={"X-API-Key": feeder})
    assert answer.status_code == 403 and answer.json()["detail"] == "invalid API key"
    last_used = {k.name: k.last_used_at for k in keys.list()}
    assert last_used["alice"] is not None and last_used["root"] is not None


def test_a_revoked_key_works_until_the_cache_forgets_it(make_api: Callable[..., Api]) -> None:
    client, services, _ = make_api(key_cache_seconds=3600)
    keys = services.store.keys
    _, token = keys.create("feeder", "ingest")
    assert client.post("/v1/score", json=tx("c-1"), headers={"X-API-Key": token}).status_code == 200
    keys.revoke("feeder")  # within FRAUD_KEY_CACHE_SECONDS the server still trusts what it read
    assert client.post("/v1/score", json=tx("c-2"), headers={"X-API-Key": token}).status_code == 200


def test_environment_keys_keep_working_beside_stored_ones(make_api: Callable[..., Api]) -> None:
    client, services, _ = make_api(api_keys="env-key-1-012345", admin_keys="env-admin-1-0123")
    _, stored = services.store.keys.create("feeder", "ingest")
    for key in ("env-key-1-012345", "env-admin-1-0123", stored):
        assert client.post("/v1/score", json=tx(f"e-{key}"), headers={"X-API-Key": key}).status_code == 200
    assert client.get("/v1/stats", headers={"X-API-Key": "env-key-1-012345"}).status_code == 200
    refused = client.post("/v1/models/rollback", headers={"X-API-Key": "env-key-1-012345"})
    assert refused.status_code == 403 and "FRAUD_ADMIN_KEYS" in refused.json()["detail"]
    assert "env-key-1-012345" not in refused.json()["detail"]  # named by a digest, never by the key


@pytest.mark.parametrize("path", ["/v1/score", "/v1/transactions/r-1"])
def test_rate_limits_count_each_stored_key_on_its_own(make_api: Callable[..., Api], path: str) -> None:
    client, services, _ = make_api(rate_limit_key="2/minute", key_cache_seconds=0)
    keys = services.store.keys
    _, one = keys.create("one", "ingest")
    _, two = keys.create("two", "ingest")

    def send(token: str, n: int) -> int:
        headers = {"X-API-Key": token}
        if path == "/v1/score":
            return client.post(path, json=tx(f"r-{token[-6:]}-{n}"), headers=headers).status_code
        return client.get(path, headers=headers).status_code

    admitted = 200 if path == "/v1/score" else 404  # r-1 was never sent
    assert [send(one, n) for n in range(2)] == [admitted, admitted]
    refused = client.post("/v1/score", json=tx("r-x"), headers={"X-API-Key": one})
    assert refused.status_code == 429 and "too many requests for this API key" in refused.json()["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert send(two, 9) == admitted  # another key's budget is its own


def test_revoking_the_last_stored_key_does_not_open_the_api(make_api: Callable[..., Api]) -> None:
    client, services, _ = make_api(key_cache_seconds=0)
    assert client.get("/v1/stats").status_code == 200  # no keys at all: the open demo
    keys = services.store.keys
    _, token = keys.create("only", "analyst")
    assert client.get("/v1/stats").status_code == 401
    keys.revoke("only")
    assert client.get("/v1/stats").status_code == 401  # still closed, to everyone
    assert client.get("/v1/stats", headers={"X-API-Key": token}).status_code == 403
    assert client.get("/health").status_code == 200


def test_admins_manage_keys_over_http(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api(admin_keys="env-admin-1-0123", key_cache_seconds=3600)
    admin = {"X-API-Key": "env-admin-1-0123"}
    made = client.post("/v1/keys", json={"name": "feeder", "role": "ingest"}, headers=admin)
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert made.json()["role"] == "ingest" and made.json()["revoked_at"] is None
    assert client.post("/v1/score", json=tx("h-1"), headers={"X-API-Key": token}).status_code == 200

    listed = client.get("/v1/keys", headers=admin)
    assert [k["name"] for k in listed.json()["keys"]] == ["feeder"] and token not in listed.text
    again = client.post("/v1/keys", json={"name": "feeder", "role": "admin"}, headers=admin)
    assert again.status_code == 409 and "exists already" in again.json()["detail"]
    bad = client.post("/v1/keys", json={"name": "no spaces", "role": "boss"}, headers=admin)
    assert bad.status_code == 422
    assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {("body", "name"), ("body", "role")}
    assert client.get("/v1/keys", headers={"X-API-Key": token}).status_code == 403  # an ingest key

    revoked = client.post("/v1/keys/feeder/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    # refused at once by the server that revoked it, however long its cache
    assert client.post("/v1/score", json=tx("h-2"), headers={"X-API-Key": token}).status_code == 403
    assert client.post("/v1/keys/nobody/revoke", headers=admin).status_code == 404
    assert client.get("/v1/keys?active=true", headers=admin).json() == {"keys": []}
