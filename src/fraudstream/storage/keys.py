"""Named API keys with roles, kept in the database as SHA-256 digests of their tokens.

A token is 32 random bytes (URL-safe text, prefixed ``fsk_``): guessing one is hopeless, so a plain
SHA-256 of it is as good as a slow password hash, and it lets the API find a key by one indexed
lookup. The token itself is returned once, by :meth:`KeyRepository.create`, and stored nowhere.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from fraudstream.storage import tables
from fraudstream.storage.database import Database

_k = tables.api_keys

TOKEN_PREFIX = "fsk_"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


class Role(StrEnum):
    """What a key may do: ``ingest`` sends transactions and reads their status, ``analyst`` reads
    everything and writes labels and cases, ``admin`` does everything (models, rules, keys too)."""

    INGEST = "ingest"
    ANALYST = "analyst"
    ADMIN = "admin"


#: The roles each role grants: admin includes the others.
GRANTS: dict[Role, frozenset[Role]] = {
    Role.INGEST: frozenset({Role.INGEST}),
    Role.ANALYST: frozenset({Role.ANALYST}),
    Role.ADMIN: frozenset(Role),
}


class KeyRefused(ValueError):
    """A key operation refused: the message names the field and the reason."""


def digest(token: str) -> str:
    """The stored form of ``token``: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    """``name`` when it is a valid key name; otherwise :class:`KeyRefused` saying why."""
    if not _NAME.match(name):
        raise KeyRefused(
            f"name: {name!r} must be 1-64 letters, digits or '._@-', starting with a letter or digit"
        )
    return name


def check_role(role: str) -> Role:
    """``role`` as a :class:`Role`; otherwise :class:`KeyRefused` listing the roles."""
    try:
        return Role(role)
    except ValueError:
        raise KeyRefused(f"role: expected one of {', '.join(Role)}, got {role!r}") from None


@dataclass(frozen=True)
class StoredKey:
    """A key as the database keeps it: never its token."""

    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _key(row: dict[str, object]) -> StoredKey:
    return StoredKey(
        name=str(row["name"]),
        role=Role(str(row["role"])),
        created_at=row["created_at"],  # type: ignore[arg-type]
        revoked_at=row["revoked_at"],  # type: ignore[arg-type]
        last_used_at=row["last_used_at"],  # type: ignore[arg-type]
    )


_COLUMNS = (_k.c.name, _k.c.role, _k.c.created_at, _k.c.revoked_at, _k.c.last_used_at)


class KeyRepository:
    """Creating, listing, revoking and finding the stored keys."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, name: str, role: str) -> tuple[StoredKey, str]:
        """A new key and its token (the only time the token exists outside the caller's hands).

        Raises :class:`KeyRefused` for a bad name or role, or a name already taken (revoked keys keep
        their names, so that records naming them stay unambiguous)."""
        check_name(name)
        chosen = check_role(role)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        values = {"name": name, "role": chosen.value, "token_sha256": digest(token), "created_at": now}
        try:
            with self._db.write() as conn:
                conn.execute(insert(_k).values(**values))
        except IntegrityError:
            raise KeyRefused(f"name: a key named {name!r} exists already") from None
        return StoredKey(name=name, role=chosen, created_at=now), token

    def list(self, *, revoked: bool = True) -> builtins.list[StoredKey]:
        """The keys by name (the revoked ones too unless ``revoked`` is false)."""
        query = select(*_COLUMNS).order_by(_k.c.name)
        if not revoked:
            query = query.where(_k.c.revoked_at.is_(None))
        with self._db.read() as conn:
            return [_key(dict(row)) for row in conn.execute(query).mappings()]

    def revoke(self, name: str) -> StoredKey:
        """Revoke the key ``name`` (revoking a revoked key keeps its first revocation time).

        Raises :class:`KeyRefused` when no key has that name."""
        with self._db.write() as conn:
            conn.execute(
                update(_k)
                .where(_k.c.name == name, _k.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            row = conn.execute(select(*_COLUMNS).where(_k.c.name == name)).mappings().first()
        if row is None:
            raise KeyRefused(f"name: no key named {name!r}")
        return _key(dict(row))

    def find(self, token: str, *, touch: bool = True) -> StoredKey | None:
        """The active key whose token is ``token``, or ``None``; with ``touch`` its last use is set now."""
        hashed = digest(token)
        query = select(*_COLUMNS).where(_k.c.token_sha256 == hashed, _k.c.revoked_at.is_(None))
        with self._db.read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        if touch:
            with self._db.write() as conn:
                conn.execute(
                    update(_k).where(_k.c.token_sha256 == hashed).values(last_used_at=datetime.now(UTC))
                )
        return _key(dict(row))

    def exist(self) -> bool:
        """Whether any key was ever stored, revoked or not: once one was, authentication stays on."""
        with self._db.read() as conn:
            return bool(conn.execute(select(func.count()).select_from(_k)).scalar_one())
