"""The worker's heartbeat file: shared data dirs and unwritable paths never stop a worker."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fraudstream.worker.health import check_health, write_health


def test_workers_sharing_a_heartbeat_file_never_fail(tmp_path: Path) -> None:
    path = tmp_path / "worker-health.json"
    errors: list[BaseException] = []

    def beat(n: int) -> None:
        try:
            for i in range(200):
                write_health(path, {"decided": n * 1000 + i})
        except BaseException as error:  # pragma: no cover - the failure this test guards against
            errors.append(error)

    threads = [threading.Thread(target=beat, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert check_health(path)[0]


def test_an_unwritable_heartbeat_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_health(tmp_path / "missing" / "worker-health.json", {"decided": 1})
    assert "cannot write the worker heartbeat" in caplog.text
