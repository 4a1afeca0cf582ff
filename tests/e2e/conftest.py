"""What the end-to-end tests share: a working folder a command line user would have."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fraudstream.api import create_app
from fraudstream.config import Settings
from fraudstream.runtime import Services, open_services
from tests.e2e.apitools import Api


@pytest.fixture
def make_api(tmp_path: Path, bundle_path: Path) -> Iterator[Callable[..., Api]]:
    """Build an app on a fresh database: ``make_api(run_worker=..., **settings)``."""
    opened: list[tuple[TestClient, Services]] = []

    def make(*, run_worker: bool = False, **overrides: Any) -> Api:
        folder = tmp_path / f"api{len(opened)}"
        values: dict[str, Any] = {
            "data_dir": folder,
            "database_url": f"sqlite:///{folder}/t.db",
            "model_path": bundle_path,
            "api_keys": "",
            "max_wait": 0.01,
            "batch_size": 200,
            **overrides,
        }
        settings = Settings(**values)
        services = open_services(settings)
        app = create_app(settings, services, run_worker=run_worker)
        client = TestClient(app)
        client.__enter__()
        opened.append((client, services))
        return client, services, app

    yield make
    for client, services in reversed(opened):
        client.__exit__(None, None, None)
        services.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


@pytest.fixture
def worker_api(make_api: Callable[..., Api]) -> Api:
    return make_api(run_worker=True)
