"""Rate limits counted in Redis (``FRAUD_RATE_LIMIT_STORAGE=redis://…``): shared by every API process,
and never in the way of traffic when Redis cannot be reached."""

from __future__ import annotations

import logging
import secrets

import pytest

from fraudstream.api.limits import RateLimits
from fraudstream.config import Settings


@pytest.mark.redis
def test_processes_pointed_at_one_redis_share_their_counts(redis_url: str) -> None:
    key, address = f"key-{secrets.token_hex(6)}", f"10.{secrets.randbelow(250)}.0.{secrets.randbelow(250)}"
    settings = Settings(
        api_keys=key,
        rate_limit_key="3/minute",
        rate_limit_failed_auth="2/minute",
        rate_limit_storage=redis_url,
    )
    one, two = RateLimits(settings), RateLimits(settings)  # as two API processes would hold them
    assert [one.admit("192.0.2.1", key), one.admit("192.0.2.2", key), two.admit("192.0.2.3", key)] == [
        None
    ] * 3
    refused = two.admit("192.0.2.4", key)
    assert refused is not None and refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60

    one.failed_auth(address)
    two.failed_auth(address)
    blocked = one.admit(address)
    assert blocked is not None and b"failed authentications" in bytes(blocked.body)
    assert two.admit(f"{address}1") is None  # another address is not


def test_an_unreachable_redis_lets_requests_through_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    limits = RateLimits(Settings(rate_limit_address="1/minute", rate_limit_storage="redis://127.0.0.1:9/0"))
    with caplog.at_level(logging.WARNING, logger="fraudstream.api.limits"):
        assert [limits.admit("192.0.2.9") for _ in range(3)] == [None] * 3
    warnings = [r.getMessage() for r in caplog.records if "rate limits are not enforced" in r.getMessage()]
    assert len(warnings) == 1  # said once, not once a request
