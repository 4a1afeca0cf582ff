"""``/v1/models`` and ``fraudstream models`` as an operator meets them: only admin keys change the model,
and against a real MLflow server, serving ``models:/NAME@champion``, promoting and rolling back."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fraudstream.cli import app as cli
from fraudstream.config import Settings
from fraudstream.registry import register
from tests.e2e.apitools import Api
from tests.integration.conftest import MLFLOW_URL, require

USER, ADMIN = "user-key-1-01234", "admin-key-1-0123"


def as_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def test_only_admin_keys_may_change_the_model(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api(api_keys=USER, admin_keys=ADMIN, mlflow_tracking_uri=None)
    refused = client.post("/v1/models/rollback", headers=as_key(USER))
    assert refused.status_code == 403 and "FRAUD_ADMIN_KEYS" in refused.json()["detail"]
    assert client.post("/v1/models/rollback").status_code == 401
    assert client.post("/v1/models/rollback", headers=as_key("wrong")).status_code == 403
    # The admin key passes the check (and is an API key too); no registry is configured here.
    allowed = client.post("/v1/models/promote", json={"challenger": True}, headers=as_key(ADMIN))
    assert allowed.status_code == 409 and "FRAUD_MLFLOW_TRACKING_URI" in allowed.json()["detail"]
    assert client.get("/v1/model", headers=as_key(ADMIN)).status_code == 200
    listed = client.get("/v1/models", headers=as_key(USER))
    assert listed.status_code == 200 and listed.json()["registry"] is None and listed.json()["versions"] == []


def test_without_admin_keys_no_api_key_may_change_the_model(make_api: Callable[..., Api]) -> None:
    client, _, _ = make_api(api_keys=USER)
    refused = client.post("/v1/models/promote", json={"version": "2"}, headers=as_key(USER))
    assert refused.status_code == 403 and "needs the admin role" in refused.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"version": "1", "challenger": True},
        {"version": "x"},
        {"version": "0"},
        {"challenger": True, "y": 1},
    ],
)
def test_a_promotion_must_name_one_version_or_the_challenger(
    make_api: Callable[..., Api], body: dict
) -> None:
    client, _, _ = make_api()
    answer = client.post("/v1/models/promote", json=body)
    assert answer.status_code == 422, answer.text


@pytest.fixture
def registered(tmp_path: Path, bundle_path: Path) -> Settings:
    """A model of this test alone with two versions: 1 is champion, 2 the challenger."""
    url = require(MLFLOW_URL, "The MLflow tracking server")
    name = f"fs-e2e-{secrets.token_hex(4)}"
    settings = Settings(data_dir=tmp_path / "reg", mlflow_tracking_uri=url, model_registry_name=name)
    register(bundle_path, {"average_precision": 0.6}, settings=settings)
    register(bundle_path, {"average_precision": 0.7}, settings=settings)
    return settings


@pytest.mark.mlflow
def test_serve_the_champion_then_promote_and_roll_back_over_http(
    make_api: Callable[..., Api], registered: Settings
) -> None:
    name = registered.model_registry_name
    client, _, _ = make_api(
        api_keys=USER,
        admin_keys=ADMIN,
        mlflow_tracking_uri=registered.mlflow_tracking_uri,
        model_registry_name=name,
        model_uri=f"models:/{name}@champion",
    )
    served = client.get("/v1/model", headers=as_key(USER)).json()["registry"]
    assert served == {"name": name, "version": "1", "uri": f"models:/{name}@champion", "alias": "champion"}
    listed = client.get("/v1/models", headers=as_key(USER)).json()
    assert [(v["version"], v["aliases"]) for v in listed["versions"]] == [
        ("2", ["challenger"]),
        ("1", ["champion"]),
    ]
    assert listed["versions"][0]["metrics"]["test.average_precision"] == pytest.approx(0.7)

    assert (
        client.post("/v1/models/promote", json={"challenger": True}, headers=as_key(USER)).status_code == 403
    )
    body = {"challenger": True, "by": "carol", "comparison": {"delta": {"average_precision": 0.1}}}
    done = client.post("/v1/models/promote", json=body, headers=as_key(ADMIN))
    assert done.status_code == 200, done.text
    promoted = done.json()
    assert (promoted["from_version"], promoted["to_version"], promoted["action"]) == ("1", "2", "promote")
    assert promoted["promoted_by"].startswith("carol (env:") and ADMIN not in promoted["promoted_by"]
    missing = client.post("/v1/models/promote", json={"version": "99"}, headers=as_key(ADMIN))
    assert missing.status_code == 404

    back = client.post("/v1/models/rollback", headers=as_key(ADMIN))
    assert back.status_code == 200 and (back.json()["from_version"], back.json()["to_version"]) == ("2", "1")
    again = client.post("/v1/models/rollback", headers=as_key(ADMIN))
    assert again.status_code == 409 and "promote a version" in again.json()["detail"]
    history = client.get("/v1/models", headers=as_key(USER)).json()["promotions"]
    assert [p["action"] for p in history] == ["rollback", "promote"]
    assert history[1]["comparison"] == body["comparison"]


@pytest.mark.mlflow
def test_the_models_commands_list_promote_and_roll_back(
    registered: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("FRAUD_MLFLOW_TRACKING_URI", str(registered.mlflow_tracking_uri))
    monkeypatch.setenv("FRAUD_MODEL_REGISTRY_NAME", registered.model_registry_name)
    runner = CliRunner()
    comparison = tmp_path / "comparison.json"
    comparison.write_text(json.dumps({"delta": {"roc_auc": 0.01}}))

    listed = runner.invoke(cli, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [v["aliases"] for v in json.loads(listed.stdout)["versions"]] == [["challenger"], ["champion"]]

    done = runner.invoke(
        cli, ["models", "promote", "2", "--by", "dave", "--comparison", str(comparison), "--json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["comparison"] == {"delta": {"roc_auc": 0.01}}
    table = runner.invoke(cli, ["models", "list"])
    assert table.exit_code == 0 and "promote" in table.stdout and "by dave" in table.stdout

    back = runner.invoke(cli, ["models", "rollback"])
    assert back.exit_code == 0 and "champion 2 → 1" in back.stdout and "swap it in" in back.stdout
    again = runner.invoke(cli, ["models", "rollback"])
    assert again.exit_code == 2 and "no previous champion" in again.stderr
    neither = runner.invoke(cli, ["models", "promote"])
    assert neither.exit_code == 2 and "--challenger" in neither.stderr


def test_an_unreachable_registry_is_503_saying_what_to_do(make_api: Callable[..., Api]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client, _, _ = make_api(mlflow_tracking_uri=f"http://127.0.0.1:{port}")
    answer = client.get("/v1/models")
    assert answer.status_code == 503 and "make services" in answer.json()["detail"]


def test_train_register_needs_the_tracking_uri(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "--register"])
    assert result.exit_code == 2 and "FRAUD_MLFLOW_TRACKING_URI" in result.stderr


@pytest.mark.mlflow
def test_train_register_makes_the_first_version_champion(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = require(MLFLOW_URL, "The MLflow tracking server")
    name = f"fs-train-{secrets.token_hex(4)}"
    monkeypatch.setenv("FRAUD_MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("FRAUD_MODEL_REGISTRY_NAME", name)
    runner = CliRunner()
    made = runner.invoke(cli, ["generate", "--customers", "200", "--merchants", "30", "--days", "30"])
    assert made.exit_code == 0, made.output
    trained = runner.invoke(cli, ["train", "--trials", "0", "--folds", "2", "--register", "--json"])
    assert trained.exit_code == 0, trained.output
    registered = json.loads(trained.stdout)["registered"]
    assert registered["uri"] == f"models:/{name}/1" and set(registered["aliases"]) == {
        "champion",
        "challenger",
    }
    listed = json.loads(runner.invoke(cli, ["models", "list", "--json"]).stdout)
    assert listed["versions"][0]["model_version"] == json.loads(trained.stdout)["version"]
    assert [(p["action"], p["to_version"]) for p in listed["promotions"]] == [("register", "1")]
