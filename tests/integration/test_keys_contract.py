"""The stored keys on SQLite and PostgreSQL: only the token's hash is kept, names are unique for good,
a revoked key is found no more, and once any key was stored authentication stays on. And the rate
limits of a stored key, shared through Redis by its name."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from fraudstream.api.limits import RateLimits
from fraudstream.config import Settings
from fraudstream.storage import Store
from fraudstream.storage.keys import KeyRefused, Role, digest
from fraudstream.storage.tables import api_keys
from tests.integration.test_storage_contract import postgres_database, store

__all__ = ["postgres_database", "store"]  # the fixtures, over both databases


def test_keys_are_stored_hashed_found_by_token_and_revoked(store: Store) -> None:
    keys = store.keys
    assert not keys.exist() and keys.list() == []
    made, token = keys.create("feeder", "ingest")
    assert made.role is Role.INGEST and made.active and keys.exist()

    rows = store.query(select(api_keys.c.name, api_keys.c.token_sha256))
    assert [tuple(r) for r in rows] == [("feeder", digest(token))]  # never the token itself

    found = keys.find(token)
    assert found is not None and found.name == "feeder" and found.role is Role.INGEST
    assert keys.list()[0].last_used_at is not None
    assert keys.find(token + "x") is None

    with pytest.raises(KeyRefused, match="name: a key named 'feeder' exists already"):
        keys.create("feeder", "analyst")
    revoked = keys.revoke("feeder")
    assert revoked.revoked_at is not None and keys.find(token) is None
    assert keys.revoke("feeder").revoked_at == revoked.revoked_at  # the first revocation stands
    with pytest.raises(KeyRefused, match="name: a key named 'feeder' exists already"):
        keys.create("feeder", "ingest")  # a revoked key keeps its name
    assert keys.exist() and keys.list(revoked=False) == []
    with pytest.raises(KeyRefused, match="no key named 'nobody'"):
        keys.revoke("nobody")


@pytest.mark.redis
def test_a_stored_key_s_limit_is_shared_by_every_process_through_redis(redis_url: str) -> None:
    name = f"feeder-{secrets.token_hex(4)}"
    settings = Settings(rate_limit_key="2/minute", rate_limit_storage=redis_url)
    one, two = RateLimits(settings), RateLimits(settings)  # as two API processes would hold them
    assert [one.admit("192.0.2.1", name), two.admit("192.0.2.2", name)] == [None, None]
    refused = one.admit("192.0.2.3", name)
    assert (
        refused is not None and refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    )
    assert two.admit("192.0.2.3", f"{name}-other") is None  # another key's budget is its own
