"""Servers of one test alone: Redis, PostgreSQL and Kafka started by ``services/run.sh`` in a temporary
directory on free ports (as ``make services`` starts the shared ones, which such tests never touch), for
tests that restart, kill or flush them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "services" / "run.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing(reason: str) -> None:
    """Skip, or fail under ``FRAUD_REQUIRE_SERVICES=1`` (CI), as the shared services' fixtures do."""
    if os.environ.get("FRAUD_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def gone(pid: int) -> bool:
    """Whether the process has exited, every thread of it: a zombie its parent has not reaped yet
    counts once it is the last of its threads. The main thread of a killed JVM turns zombie while its
    other threads still exit, holding its ports, which ``services/run.sh start`` would take for the
    server still running."""
    try:
        zombie = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
        return zombie and len(os.listdir(f"/proc/{pid}/task")) <= 1
    except (FileNotFoundError, ProcessLookupError):
        return True


def accepting(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Private:
    """Servers of this test alone, started and stopped by ``services/run.sh`` under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = {name: free_port() for name in ("redis", "postgres", "kafka", "controller")}
        self.env = os.environ | {
            "FRAUD_SERVICES_DIR": str(root),
            "FRAUD_SERVICES_REDIS_PORT": str(self.ports["redis"]),
            "FRAUD_SERVICES_POSTGRES_PORT": str(self.ports["postgres"]),
            "FRAUD_SERVICES_KAFKA_PORT": str(self.ports["kafka"]),
            "FRAUD_SERVICES_KAFKA_CONTROLLER_PORT": str(self.ports["controller"]),
            "FRAUD_SERVICES_TIMEOUT": "60",
        }
        self.started: set[str] = set()

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    @property
    def kafka_url(self) -> str:
        return f"kafka://127.0.0.1:{self.ports['kafka']}"

    def run(self, action: str, name: str) -> None:
        done = subprocess.run(
            [str(SCRIPT), action, name],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"services/run.sh {action} {name}: {done.stdout}{done.stderr}"

    def start(self, name: str) -> None:
        self.run("start", name)
        self.started.add(name)

    def stop(self, name: str) -> None:
        self.run("stop", name)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash or the OOM killer would, and wait until it is gone and its port closed."""
        pid = int((self.root / name / f"{name}.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not gone(pid) or (name in self.ports and accepting(self.ports[name])):
            assert time.monotonic() < deadline, f"{name} (pid {pid}) outlived SIGKILL"
            time.sleep(0.05)

    def close(self) -> None:
        for name in self.started:
            subprocess.run(
                [str(SCRIPT), "stop", name], env=self.env, capture_output=True, timeout=120, check=False
            )
