"""Helpers for the tests that drive the HTTP API: valid bodies, and reading answers and stored rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from fraudstream.runtime import Services


def daytime_now() -> datetime:
    """The latest instant up to now whose UTC hour is between 10 and 18: a model's score reads the
    hour of the day, so the tests' transactions happen in daytime whatever the hour they run at (at
    most 16 hours back, so windows of a day counted from now still hold them)."""
    now = datetime.now(UTC)
    if 10 <= now.hour < 18:
        return now
    day = now if now.hour >= 18 else now - timedelta(days=1)
    return day.replace(hour=17, minute=59, second=0, microsecond=0)


NOW = daytime_now()
Api = tuple[TestClient, Services, FastAPI]


def tx(
    transaction_id: str, customer_id: str = "C1", minutes_ago: float = 10, **fields: Any
) -> dict[str, Any]:
    """A valid transaction body, timestamped shortly before now so that 24-hour features count it."""
    return {
        "transaction_id": transaction_id,
        "timestamp": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "customer_id": customer_id,
        "amount": 42.5,
        **fields,
    }


def stored(services: Services) -> int:
    """Decisions in the table itself."""
    from sqlalchemy import func, select

    from fraudstream.storage.tables import decisions

    return int(services.store.query(select(func.count()).select_from(decisions))[0][0])


def customer_feature(client: TestClient, customer_id: str, name: str) -> float | None:
    response = client.get(f"/v1/customers/{customer_id}")
    assert response.status_code == 200, response.text
    value: float | None = response.json()["features"][name]
    return value


def metric(client: TestClient, line_start: str, headers: dict[str, str] | None = None) -> float:
    for line in client.get("/metrics", headers=headers).text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric line starts with {line_start!r}")
