"""A running server follows a moved challenger alias, against a real MLflow server: registering a new
version (which moves ``challenger``) makes later decisions' shadow version the new one, while the
champion keeps deciding."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from fraudstream.config import Settings
from fraudstream.models.bundle import load_bundle
from fraudstream.registry import register
from tests.e2e.apitools import Api, tx
from tests.integration.conftest import MLFLOW_URL, require
from tests.waiting import wait_for

pytestmark = pytest.mark.mlflow
NEW = "follow-new-challenger"


def test_registering_a_new_challenger_changes_the_shadow_version_of_later_decisions(
    make_api: Callable[..., Api], tmp_path: Path, bundle_path: Path
) -> None:
    url = require(MLFLOW_URL, "The MLflow tracking server")
    name = f"fs-follow-{secrets.token_hex(4)}"
    settings = Settings(data_dir=tmp_path / "reg", mlflow_tracking_uri=url, model_registry_name=name)
    old = load_bundle(bundle_path)
    register(bundle_path, {"average_precision": 0.6}, settings=settings)  # version 1: both aliases
    client, services, _ = make_api(
        mlflow_tracking_uri=url,
        model_registry_name=name,
        model_uri=f"models:/{name}@champion",
        challenger_uri=f"models:/{name}@challenger",
        model_poll_seconds=1,
    )
    client.post("/v1/score", json=tx("f-1"))
    (first,) = services.store.decisions.get_many(["f-1"]).values()
    assert first.shadow_version == old.manifest.version

    new = copy.copy(old)
    new.manifest = copy.deepcopy(old.manifest)
    new.manifest.version = NEW
    new.manifest.weights = {"xgboost": 0.2, "logistic": 0.5, "isolation_forest": 0.3}
    register(new.save(tmp_path / "new.fsb"), {"average_precision": 0.7}, settings=settings)  # challenger: 2

    wait_for(
        lambda: client.get("/v1/model").json()["challenger"]["registry_version"] == "2",
        "the new challenger shadowing",
        30,
    )
    assert client.get("/v1/model").json()["challenger"]["version"] == NEW
    client.post("/v1/score", json=tx("f-2"))
    (second,) = services.store.decisions.get_many(["f-2"]).values()
    assert (second.model_version, second.shadow_version) == (old.manifest.version, NEW)
