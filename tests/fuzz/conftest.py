"""A real ``fraudstream serve``-like server for the fuzzing suite: uvicorn on a free loopback port,
the embedded defaults (SQLite, in-process worker), a trained model and an API key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fraudstream.api import create_app
from fraudstream.config import Settings
from tests.serving import uvicorn_thread

KEY = "fuzz-key-0123456"


@dataclass
class Served:
    url: str
    headers: dict[str, str]


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, bundle_path: Path) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("fuzz")
    settings = Settings(
        data_dir=folder,
        database_url=f"sqlite:///{folder}/fuzz.db",
        datasets_dir=folder / "no-datasets",
        model_path=bundle_path,
        api_keys=KEY,
        rate_limits=False,  # the suite sends hundreds of requests a second from one address
    )
    with uvicorn_thread(create_app(settings, run_worker=True)) as url:
        yield Served(url, {"X-API-Key": KEY})
