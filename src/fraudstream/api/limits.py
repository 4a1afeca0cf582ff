"""Rate limits: requests per API key, per client address, and failed authentications per address.

Who counts what:

* a request with a valid API key counts against that key's name, wherever it comes from (a stored
  key's own name; ``env:`` and a name for the keys of the environment, see :mod:`.keyring`);
* any other request (every request when no keys are set; otherwise the endpoints open without a key,
  and the requests that will fail authentication) counts against its client address;
* every 401 or 403 answer counts against its address's failed authentications. Past that (much
  tighter) limit the address gets 429 for every request without a valid key until the window ends,
  so a client trying keys is stopped; a valid key is never refused for someone else's failures (the
  callers behind one proxy, one port mapping or the dashboard share an address).

The address is the connection's, or the one a trusted proxy forwards (FRAUD_FORWARDED_ALLOW_IPS, see
:mod:`fraudstream.api.server`): a forwarded address from anyone else is ignored, since any client can
claim one.

``GET /health`` is never limited: a liveness probe turned away by someone else's failures would get a
healthy process restarted. A refusal is a 429 with ``Retry-After`` (whole seconds until the window
ends) and a JSON ``detail``, like every other error of the API.

Built on the ``limits`` library: its rate notation, its fixed-window strategy, and its Redis storage
when several API processes must share their counts. Not on slowapi, which limits per decorated route
inside the framework: the limits apply to every request, once, before its body is read
(:class:`RateLimitMiddleware`).
"""

from __future__ import annotations

import logging
import math
import threading
import time

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraudstream.api.keyring import Caller, Keyring, offered_keys
from fraudstream.config import Settings
from fraudstream.storage.errors import StorageError as DatabaseError

log = logging.getLogger(__name__)

#: Set on the scope by whichever part of the app counted the request, so it is counted once.
ADMITTED = "fraudstream.rate_limited"
#: Never limited (see the module docstring).
UNLIMITED_PATHS = frozenset({"/health"})
#: A storage that fails is said so in the log at most this often; requests go on meanwhile.
WARN_EVERY = 60.0
_FAILED_AUTH = "failed-auth"


class ProcessStorage(Storage):
    """``limits`` storage for fixed windows, in a dict of this process and without a thread of its own.

    ``limits``' own memory storage expires its keys from a timer thread that it starts anew a hundredth
    of a second after the previous one ended, as long as requests arrive: a steady stream of thread
    starts in the server process, next to the event loop. Here an expired counter reads as zero and
    starts afresh when next hit, and the expired ones are swept out from the calls themselves, at most
    once every :attr:`SWEEP_SECONDS`, so memory follows the addresses seen within a window.
    """

    STORAGE_SCHEME = None  # not registered under a URL scheme: :func:`open_storage` builds it
    SWEEP_SECONDS = 10.0

    def __init__(self) -> None:
        super().__init__()
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    @property
    def base_exceptions(self) -> type[Exception]:
        return RuntimeError  # nothing here talks to a server

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
                self._next_sweep = now + self.SWEEP_SECONDS
            count, expires = self._counts.get(key, (0, 0.0))
            if expires <= now:
                count, expires = 0, now + expiry
            count += amount
            self._counts[key] = (count, expires)
            return count

    def get(self, key: str) -> int:
        found = self._counts.get(key)
        return found[0] if found is not None and found[1] > time.time() else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        found = self._counts.get(key)
        return found[1] if found is not None and found[1] > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            count = len(self._counts)
            self._counts.clear()
        return count

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)


def open_storage(url: str) -> Storage:
    """``memory://``: this process's :class:`ProcessStorage`; ``redis://…``: ``limits``' Redis storage,
    shared by every process pointed at it (its errors wrapped as ``limits.errors.StorageError``)."""
    if url.partition("://")[0] == "memory":
        return ProcessStorage()
    storage = storage_from_string(url, wrap_exceptions=True)
    assert isinstance(storage, Storage)
    return storage


def client_address(scope: Scope) -> str:
    """The client's address as the server saw it: the connection's, or behind a trusted proxy the one
    it forwards (see :func:`fraudstream.api.server.server_options`)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def too_many(detail: str, retry_after: int) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=429, headers={"Retry-After": str(retry_after)})


class RateLimits:
    """The limits of one app, from its settings; ``keyring`` tells the keys (the environment's alone
    when not given), ``storage`` overrides ``FRAUD_RATE_LIMIT_STORAGE``."""

    def __init__(
        self, settings: Settings, keyring: Keyring | None = None, storage: Storage | None = None
    ) -> None:
        self.per_key = parse(settings.rate_limit_key)
        self.per_address = parse(settings.rate_limit_address)
        self.failed = parse(settings.rate_limit_failed_auth)
        self.keyring = keyring or Keyring(settings)
        self.limiter = FixedWindowRateLimiter(storage or open_storage(settings.rate_limit_storage))
        self._warned = -math.inf

    async def caller_of(self, scope: Scope) -> Caller | None:
        """Whose valid key the request carries, or ``None`` (none offered, wrong, revoked, no keys at
        all, or a database that cannot say: the app answers that request itself)."""
        offered = offered_keys(dict(scope["headers"]))
        if not offered:
            return None
        try:
            if not await self.keyring.enabled_async():
                return None
            return await self.keyring.identify_async(offered)
        except DatabaseError:
            return None

    def admit(self, address: str, key: str | None = None) -> JSONResponse | None:
        """Count one request from ``address`` (with the valid key named ``key``, if any): ``None`` when
        it may go on, otherwise the 429 to answer. A storage that cannot be reached lets requests
        through. Keys are counted by name, so no shared storage ever holds a key itself. An address
        over its failed authentications is refused only for requests without a valid key."""
        try:
            if key is None and not self.limiter.test(self.failed, _FAILED_AUTH, address):
                return self._refusal(
                    self.failed, (_FAILED_AUTH, address), "too many failed authentications from this address"
                )
            if key is None:
                item, ids, whose = self.per_address, ("address", address), "this address"
            else:
                item, ids, whose = self.per_key, ("key", key), "this API key"
            if self.limiter.hit(item, *ids):
                return None
            return self._refusal(item, ids, f"too many requests for {whose}")
        except StorageError as error:
            self._storage_failed(error)
            return None

    def failed_auth(self, address: str) -> None:
        """Count a 401 or 403 answered to ``address``."""
        try:
            self.limiter.hit(self.failed, _FAILED_AUTH, address)
        except StorageError as error:
            self._storage_failed(error)

    def _refusal(self, item: RateLimitItem, ids: tuple[str, str], why: str) -> JSONResponse:
        reset = self.limiter.get_window_stats(item, *ids).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        return too_many(f"{why} (limit {item}); retry in {wait} s", wait)

    def _storage_failed(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning("rate limits are not enforced: their storage failed (%s)", error)


class RateLimitMiddleware:
    """Applies :class:`RateLimits` to every request not counted yet, and counts the
    401 and 403 answers as failed authentications of their address.

    A pure ASGI middleware, outside the body limit: a refused client's body is never read.
    """

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get(ADMITTED) or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        scope[ADMITTED] = True
        limits = self.limits
        address = client_address(scope)
        caller = await limits.caller_of(scope)
        refused = limits.admit(address, caller.name if caller is not None else None)
        if refused is not None:
            await refused(scope, receive, send)
            return

        async def counting_failures(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                limits.failed_auth(address)
            await send(message)

        await self.app(scope, receive, counting_failures)
