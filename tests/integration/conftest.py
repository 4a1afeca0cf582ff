"""Real services for the integration suites: where they are, and what to do when they are absent.

``make services`` starts Redis, PostgreSQL, Kafka and MLflow on the loopback ports below; the ``FRAUD_TEST_*``
variables point the suites elsewhere. Without a service its tests skip with the reason; under
``FRAUD_REQUIRE_SERVICES=1`` (as ``.ci/run`` sets) a missing service fails them instead.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from fraudstream.storage import Store, open_store

REDIS_URL = os.environ.get("FRAUD_TEST_REDIS_URL", "redis://127.0.0.1:6380/0")
POSTGRES_URL = os.environ.get(
    "FRAUD_TEST_DATABASE_URL", "postgresql://fraudstream:fraudstream@127.0.0.1:5433/fraudstream"
)
KAFKA_URL = os.environ.get("FRAUD_TEST_KAFKA_URL", "kafka://127.0.0.1:9093")
MLFLOW_URL = os.environ.get("FRAUD_TEST_MLFLOW_URL", "http://127.0.0.1:5050")
REGISTRY_URL = os.environ.get("FRAUD_TEST_SCHEMA_REGISTRY_URL", "http://127.0.0.1:8085/apis/ccompat/v7")


def reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether something listens at the URL's host and port (the real check is the backend's own)."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), timeout):
            return True
    except OSError:
        return False


def require(url: str, what: str) -> str:
    """``url`` when its service is up; otherwise skip, or fail under ``FRAUD_REQUIRE_SERVICES=1``."""
    if reachable(url):
        return url
    reason = f"{what} is not reachable at {url}: run `make services` (or set the FRAUD_TEST_* URL)"
    if os.environ.get("FRAUD_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require(REDIS_URL, "Redis")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return require(POSTGRES_URL, "PostgreSQL")


@pytest.fixture(scope="session")
def kafka_url() -> str:
    return require(KAFKA_URL, "Kafka")


@pytest.fixture(scope="session")
def schema_registry_url() -> str:
    return require(REGISTRY_URL, "The schema registry")


@pytest.fixture(scope="session")
def mlflow_url() -> str:
    return require(MLFLOW_URL, "The MLflow tracking server")


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``server_url``; dropped on exit."""
    from fraudstream.storage.database import normalize_url

    server = normalize_url(server_url)
    name = f"fs_test_{secrets.token_hex(5)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        _drop(admin, name)
        admin.dispose()


def _drop(admin: Any, name: str, attempts: int = 50) -> None:
    """Drop a scratch database. A plain DROP also stops an autovacuum worker on it (which ``FORCE``
    may not: that needs rights over the superuser's process); ``FORCE`` ends connections a test left."""
    for _ in range(attempts):
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            return
        except OperationalError:  # still being accessed by other users
            time.sleep(0.1)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store of its own on each database: a SQLite file, or a scratch PostgreSQL database
    dropped afterwards. A module that needs another store defines its own ``store``."""
    if request.param == "sqlite":
        with open_store(f"sqlite:///{tmp_path}/fraud.db") as s:
            s.migrate()
            yield s
        return
    with scratch_database(request.getfixturevalue("postgres_url")) as url, open_store(url) as s:
        s.migrate()
        yield s
