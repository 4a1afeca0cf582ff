"""What a worker has done, and its heartbeat file, which ``fraudstream worker --check`` (a container
health check) reads."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HEALTH_FILE = "worker-health.json"
"""The heartbeat's name in FRAUD_DATA_DIR, written by ``fraudstream worker`` and the Spark streaming job
alike, so one container health check serves both."""


@dataclass
class WorkerStats:
    """What a worker has done, for its health check and summaries."""

    batches: int = 0
    decided: int = 0
    duplicates: int = 0
    dead: int = 0
    errors: int = 0
    started_at: float = field(default_factory=time.time)
    heartbeat: float = field(default_factory=time.time)

    def health(self, *, stopping: bool, stale_after: float) -> dict[str, Any]:
        """Alive when the loop has beaten within ``stale_after`` seconds and is not stopping."""
        age = time.time() - self.heartbeat
        return {
            "alive": age < stale_after and not stopping,
            "heartbeat_age_s": round(age, 3),
            "batches": self.batches,
            "decided": self.decided,
            "duplicates": self.duplicates,
            "dead_letters": self.dead,
            "errors": self.errors,
        }


def write_health(path: Path, health: dict[str, Any]) -> None:
    """Atomically replace the heartbeat file another process (``fraudstream worker --check``) reads."""
    tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")  # never shared by two writers
    try:
        tmp.write_text(json.dumps({**health, "written_at": time.time()}))
        tmp.replace(path)
    except OSError as error:  # a heartbeat that cannot be written must not stop the worker
        log.warning("cannot write the worker heartbeat %s: %s", path, error)


def check_health(path: Path, stale_after: float = 30.0) -> tuple[bool, str]:
    """Whether the worker writing ``path`` beat within ``stale_after`` seconds, and a line saying so."""
    try:
        health = json.loads(path.read_text())
    except (OSError, ValueError):
        return False, f"no worker heartbeat at {path}: is a worker running with this FRAUD_DATA_DIR?"
    age = time.time() - float(health.get("written_at", 0))
    if age > stale_after:
        return (
            False,
            f"worker heartbeat is {age:.0f} s old (limit {stale_after:.0f} s): the worker is stuck or gone",
        )
    return True, f"worker alive: beat {age:.1f} s ago, {health.get('decided', 0):,} decided"
