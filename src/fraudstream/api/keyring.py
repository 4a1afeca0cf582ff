"""Who a request's key belongs to: the keys of the environment and the named keys in the database.

``FRAUD_ADMIN_KEYS`` act as ``admin``; ``FRAUD_API_KEYS`` as ``analyst`` and ``ingest`` together (what they
could do before keys had roles). Each is named ``env:`` and the name the operator gave it (``NAME:KEY``)
or its place in the list (``env:api-2``): nothing of the key, not even a digest one could test
guesses against.
Stored keys (``fraudstream keys create``) carry their own name and role.

The API asks on every request, so what the database says is cached in the process for
``FRAUD_KEY_CACHE_SECONDS``: a token's key (or that it has none), and whether any key was ever stored.
A revoked key therefore stops working within that time, and the score path queries the database at
most once per key and interval. With no keys at all, neither in the environment nor stored,
authentication is off (the local demo), and every caller acts as admin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from fraudstream.config import Settings, named_keys
from fraudstream.storage.database import Database
from fraudstream.storage.errors import StorageError
from fraudstream.storage.keys import GRANTS, KeyRepository, Role, digest

#: At most this many tokens are remembered (found or not): a client trying keys cannot fill memory.
MAX_CACHED = 10_000


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the key's ``name`` (what records say acted) and its ``role``.

    ``role`` is one of ``ingest``, ``analyst``, ``admin``, or ``analyst+ingest`` for a key of
    ``FRAUD_API_KEYS``; :meth:`may` says whether it covers a role a route needs."""

    name: str
    role: str
    grants: frozenset[Role] = frozenset(Role)

    def may(self, needed: Iterable[Role]) -> bool:
        """Whether this caller holds one of the ``needed`` roles."""
        return not self.grants.isdisjoint(needed)


ANONYMOUS = Caller("anonymous (no API keys set)", Role.ADMIN.value)
_ENV_BOTH = frozenset({Role.ANALYST, Role.INGEST})


def offered_keys(headers: Mapping[bytes, bytes]) -> list[str]:
    """The keys raw ASGI ``headers`` carry, as ``X-API-Key`` or ``Authorization: Bearer``."""
    offered = [headers.get(b"x-api-key", b"")]
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() == b"bearer":
        offered.append(token.strip())
    return [key.decode("latin-1") for key in offered if key]


class Keyring:
    """Resolves offered keys to a :class:`Caller`: the environment's keys at once, the stored ones
    once :meth:`open` gave it the database (until then only the environment's keys count)."""

    def __init__(self, settings: Settings) -> None:
        self.ttl = settings.key_cache_seconds
        self._db: Database | None = None
        admins = named_keys(settings.admin_keys, "admin")
        self._env: dict[str, Caller] = {
            digest(key): Caller(f"env:{name}", "analyst+ingest", _ENV_BOTH)
            for name, key in named_keys(settings.api_keys, "api").items()
            if key not in admins.values()
        }
        self._env |= {digest(key): Caller(f"env:{name}", Role.ADMIN.value) for name, key in admins.items()}
        self._cache: dict[str, tuple[Caller | None, float]] = {}
        self._stored: tuple[bool, float] = (False, -1.0)
        self._lock = threading.Lock()

    def open(self, db: Database) -> None:
        """Read stored keys from ``db`` from now on (a fresh cache)."""
        self._db, self._cache, self._stored = db, {}, (False, -1.0)

    def close(self) -> None:
        """Forget the database and what was read from it."""
        self._db, self._cache, self._stored = None, {}, (False, -1.0)

    def forget(self) -> None:
        """Forget what was read about stored keys (after a change made through this process)."""
        with self._lock:
            self._cache = {}
            self._stored = (False, -1.0)

    # --- what may be answered from memory ---------------------------------------------------------

    def cached_enabled(self) -> bool | None:
        """Whether authentication is on, or ``None`` when the database must be asked."""
        if self._env:
            return True
        stored, until = self._stored
        return stored if time.monotonic() < until else None

    def cached(self, token: str) -> tuple[bool, Caller | None]:
        """``(known, caller)``: ``known`` is false when the database must be asked about ``token``."""
        hashed = digest(token)
        env = self._env.get(hashed)  # a dict lookup on a digest: its timing says nothing of the key
        if env is not None:
            return True, env
        found = self._cache.get(hashed)
        if found is not None and time.monotonic() < found[1]:
            return True, found[0]
        return False, None

    # --- what may ask the database ---------------------------------------------------------------

    def enabled(self) -> bool:
        """Whether authentication is on: keys in the environment, or any key ever stored."""
        known = self.cached_enabled()
        if known is not None:
            return known
        db = self._db
        if db is None:
            return False
        try:
            stored = KeyRepository(db).exist()
        except StorageError:
            stored = True  # fail closed: a database that cannot say keeps the keys required
            self._stored = (stored, 0.0)
            return stored
        self._stored = (stored, time.monotonic() + self.ttl)
        return stored

    def lookup(self, token: str) -> Caller | None:
        """The caller ``token`` belongs to, or ``None`` for an unknown or revoked key."""
        known, caller = self.cached(token)
        if known:
            return caller
        db = self._db
        if db is None:
            return None
        key = KeyRepository(db).find(token)
        caller = None if key is None else Caller(key.name, key.role.value, GRANTS[key.role])
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[digest(token)] = (caller, time.monotonic() + self.ttl)
        return caller

    def identify(self, offered: Iterable[str]) -> Caller | None:
        """The caller of the first offered key that is known, or ``None``."""
        for token in offered:
            caller = self.lookup(token)
            if caller is not None:
                return caller
        return None

    async def enabled_async(self) -> bool:
        """:meth:`enabled`, asking the database (when it must) outside the event loop."""
        known = self.cached_enabled()
        return known if known is not None else await run_in_threadpool(self.enabled)

    async def identify_async(self, offered: list[str]) -> Caller | None:
        """:meth:`identify`, asking the database (when it must) outside the event loop."""
        for token in offered:
            known, caller = self.cached(token)
            if not known:
                caller = await run_in_threadpool(self.lookup, token)
            if caller is not None:
                return caller
        return None
