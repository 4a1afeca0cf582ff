"""The keys of the environment as callers: their roles and names, before any database is opened."""

from __future__ import annotations

import pytest

from fraudstream.api.keyring import ANONYMOUS, Keyring, offered_keys
from fraudstream.config import Settings
from fraudstream.storage.keys import Role


def test_environment_keys_are_analyst_and_ingest_or_admin_and_named_without_a_trace_of_the_key() -> None:
    keyring = Keyring(Settings(api_keys="user-key-1-01234, ", admin_keys="admin-key-1-0123"))
    assert keyring.enabled()
    user, admin = keyring.identify(["user-key-1-01234"]), keyring.identify(["admin-key-1-0123"])
    assert user is not None and admin is not None
    assert user.role == "analyst+ingest" and user.may({Role.INGEST}) and user.may({Role.ANALYST})
    assert not user.may({Role.ADMIN})
    assert admin.role == "admin" and admin.may({Role.INGEST}) and admin.may({Role.ADMIN})
    assert (user.name, admin.name) == ("env:api-1", "env:admin-1")
    assert keyring.identify(["wrong", ""]) is None
    assert keyring.identify(["wrong", "admin-key-1-0123"]) == admin  # the first known key of those offered


def test_without_keys_and_without_a_database_authentication_is_off() -> None:
    keyring = Keyring(Settings(api_keys="", admin_keys=""))
    assert not keyring.enabled() and keyring.identify(["anything"]) is None
    assert ANONYMOUS.may({Role.ADMIN}) and ANONYMOUS.may({Role.INGEST})


def test_offered_keys_read_both_headers_and_only_bearer_authorization() -> None:
    headers = {b"x-api-key": b"k1", b"authorization": b"Bearer  k2 "}
    assert offered_keys(headers) == ["k1", "k2"]
    assert offered_keys({b"authorization": b"Basic k3"}) == []
    assert offered_keys({}) == []


def test_environment_keys_may_be_named_and_must_be_long() -> None:
    from pydantic import ValidationError

    keyring = Keyring(
        Settings(api_keys="billing:0123456789abcdef, fedcba9876543210", admin_keys="ops:0123456789abcdefXX")
    )
    assert keyring.identify(["0123456789abcdef"]).name == "env:billing"  # type: ignore[union-attr]
    assert keyring.identify(["fedcba9876543210"]).name == "env:api-2"  # type: ignore[union-attr]
    assert keyring.identify(["0123456789abcdefXX"]).name == "env:ops"  # type: ignore[union-attr]
    for bad, why in (
        ("short-key", "at least 16"),
        ("a:0123456789abcdef,a:0123456789abcdeX", "given to two keys"),
    ):
        with pytest.raises(ValidationError, match=why) as refused:
            Settings(api_keys=bad)
        assert "short-key" not in str(refused.value)  # a key is never echoed in the error
