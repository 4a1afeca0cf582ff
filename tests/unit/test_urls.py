"""Our own URL options, and URLs as messages show them."""

from __future__ import annotations

import socket

import pytest

from fraudstream._urls import split_prefix, url_option, without_password
from fraudstream.brokers.base import BrokerError
from fraudstream.state.base import StateError


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_prefix_option_is_taken_out_of_the_url() -> None:
    target, prefix = split_prefix("redis://h:1/0?protocol=3&prefix=team-a:")
    assert (target, prefix) == ("redis://h:1/0?protocol=3", "team-a:")
    assert split_prefix("redis://h:1/0") == ("redis://h:1/0", None)
    assert url_option("kafka://h:1?prefix=&x=1", "prefix") == ""


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:s3cret@h/0?prefix=x", "redis://user:***@h/0?prefix=x"),
        ("postgresql://user:p%40ss@h/db", "postgresql://user:***@h/db"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("postgresql://user@h/db", "postgresql://user@h/db"),
    ],
)
def test_messages_never_show_a_password(url: str, shown: str) -> None:
    assert without_password(url) == shown


def test_an_unreachable_redis_is_named_without_its_password() -> None:
    pytest.importorskip("redis")
    from fraudstream.brokers.redis import RedisStreamsBroker
    from fraudstream.state.redis import RedisFeatureState

    url = f"redis://user:s3cret@127.0.0.1:{closed_port()}/0"
    with pytest.raises(BrokerError) as broker_error:
        RedisStreamsBroker(url)
    with pytest.raises(StateError) as state_error:
        RedisFeatureState(url, retention=60.0)
    for error in (broker_error.value, state_error.value):
        assert "s3cret" not in str(error)
        assert "user:***@127.0.0.1" in str(error)
