"""The keys of the environment as callers: their roles and names, before any database is opened."""

from __future__ import annotations

from fraudstream.api.keyring import ANONYMOUS, Keyring, offered_keys
from fraudstream.config import Settings
from fraudstream.storage.keys import Role


def test_environment_keys_are_analyst_and_ingest_or_admin_and_named_by_a_digest() -> None:
    keyring = Keyring(Settings(api_keys="user-key-1, ", admin_keys="admin-key-1"))
    assert keyring.enabled()
    user, admin = keyring.identify(["user-key-1"]), keyring.identify(["admin-key-1"])
    assert user is not None and admin is not None
    assert user.role == "analyst+ingest" and user.may({Role.INGEST}) and user.may({Role.ANALYST})
    assert not user.may({Role.ADMIN})
    assert admin.role == "admin" and admin.may({Role.INGEST}) and admin.may({Role.ADMIN})
    for caller, key in ((user, "user-key-1"), (admin, "admin-key-1")):
        assert caller.name.startswith("env:") and len(caller.name) == 12 and key[:4] not in caller.name
    assert keyring.identify(["wrong", ""]) is None
    assert keyring.identify(["wrong", "admin-key-1"]) == admin  # the first known key of those offered


def test_without_keys_and_without_a_database_authentication_is_off() -> None:
    keyring = Keyring(Settings(api_keys="", admin_keys=""))
    assert not keyring.enabled() and keyring.identify(["anything"]) is None
    assert ANONYMOUS.may({Role.ADMIN}) and ANONYMOUS.may({Role.INGEST})


def test_offered_keys_read_both_headers_and_only_bearer_authorization() -> None:
    headers = {b"x-api-key": b"k1", b"authorization": b"Bearer  k2 "}
    assert offered_keys(headers) == ["k1", "k2"]
    assert offered_keys({b"authorization": b"Basic k3"}) == []
    assert offered_keys({}) == []
