"""A real ``fraudstream serve``-like server for the fuzzing suite: uvicorn on a free loopback port,
the embedded defaults (SQLite, in-process worker), a trained model and an API key."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from fraudstream.api import create_app
from fraudstream.config import Settings

KEY = "fuzz-key"


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
    app = create_app(settings, run_worker=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield Served(f"http://127.0.0.1:{port}", {"X-API-Key": KEY})
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()
