"""Dependencies shared by the routers: the running services, and who the caller is and may do.

Everything lives on ``app.state`` (set by the lifespan in :mod:`fraudstream.api.app`), so that routes
take what they need as ``Annotated`` parameters and tests can build any number of independent apps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from fraudstream.api.batcher import ScoreBatcher
from fraudstream.api.keyring import ANONYMOUS, Caller, Keyring
from fraudstream.api.metrics import ApiMetrics
from fraudstream.api.waiters import Waiters
from fraudstream.config import Settings
from fraudstream.pipeline.decider import Decider
from fraudstream.pipeline.scorer import Scorer
from fraudstream.runtime import Services
from fraudstream.storage.keys import Role
from fraudstream.storage.store import Store

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="an API key: a stored key's token, or one of FRAUD_API_KEYS or FRAUD_ADMIN_KEYS",
)
bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:  # only between process start and the end of the lifespan's start-up
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the service is not started")
    return services


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]


async def get_store(services: ServicesDep) -> Store:
    return services.store


async def get_scorer(services: ServicesDep) -> Scorer:
    return services.scorer


async def get_decider(services: ServicesDep) -> Decider:
    return services.decider


async def get_waiters(request: Request) -> Waiters:
    waiters: Waiters = request.app.state.waiters
    return waiters


async def get_batcher(request: Request, services: ServicesDep) -> ScoreBatcher:
    batcher: ScoreBatcher = request.app.state.batcher
    return batcher


StoreDep = Annotated[Store, Depends(get_store)]
ScorerDep = Annotated[Scorer, Depends(get_scorer)]
DeciderDep = Annotated[Decider, Depends(get_decider)]
BatcherDep = Annotated[ScoreBatcher, Depends(get_batcher)]
WaitersDep = Annotated[Waiters, Depends(get_waiters)]


def _offered(api_key: str | None, credentials: HTTPAuthorizationCredentials | None) -> list[str]:
    return [key for key in (api_key, credentials.credentials if credentials else None) if key]


def _required(
    api_key: str | None, credentials: HTTPAuthorizationCredentials | None, what: str = "it"
) -> list[str]:
    """The keys offered; a 401 saying how to send ``what`` when there are none."""
    offered = _offered(api_key, credentials)
    if not offered:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"missing API key: send {what} as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return offered


def get_keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


async def authenticate(keyring: Keyring, offered: list[str]) -> Caller:
    """Who offers these keys (see :mod:`.keyring`): with no keys at all (neither in the environment nor
    stored) everyone is :data:`ANONYMOUS`, an admin (the embedded demo; the app logs a warning at
    start-up). No key is 401, an unknown or revoked one 403. Every route authenticates through this."""
    if not await keyring.enabled_async():
        return ANONYMOUS
    if not offered:
        _required(None, None)
    caller = await keyring.identify_async(offered)
    if caller is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")
    return caller


async def get_caller(
    request: Request,
    api_key: Annotated[str | None, Security(api_key_header)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Caller:
    """Who sent the request (``X-API-Key`` or ``Authorization: Bearer``): :func:`authenticate`."""
    return await authenticate(get_keyring(request), _offered(api_key, credentials))


#: The caller of a request, for routes that record who acted (its ``name``) or depend on its ``role``.
CallerDep = Annotated[Caller, Depends(get_caller)]


def refuse_role(caller: Caller, needed: Iterable[Role]) -> HTTPException | None:
    """The 403 for a ``caller`` who holds none of the ``needed`` roles, naming them and the key; or
    ``None`` when it may go on."""
    if caller.may(needed):
        return None
    roles = " or ".join(sorted(needed))
    hint = ""
    if Role.ADMIN in needed and caller.name.startswith("env:"):
        hint = " (admin keys: FRAUD_ADMIN_KEYS, or 'fraudstream keys create NAME --role admin')"
    return HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"this needs the {roles} role, and the key {caller.name!r} has the role {caller.role}{hint}",
    )


def allow(*needed: Role) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency letting through the callers holding one of the ``needed`` roles (403 otherwise);
    admin holds every role."""
    roles = frozenset(needed)

    async def check_role(caller: CallerDep) -> Caller:
        refused = refuse_role(caller, roles)
        if refused is not None:
            raise refused
        return caller

    return check_role


async def optional_api_key(
    request: Request,
    api_key: Annotated[str | None, Security(api_key_header)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> bool:
    """Whether the request may see what only key holders see: True with a valid key (any role), or
    when no keys are set; False without a key. A wrong key is still 403, so that an endpoint open to
    anyone cannot serve to try keys without the failures being counted (see :mod:`fraudstream.api.limits`)."""
    keyring = get_keyring(request)
    if not await keyring.enabled_async():
        return True
    offered = _offered(api_key, credentials)
    if not offered:
        return False
    if await keyring.identify_async(offered) is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")
    return True


KeyHolderDep = Annotated[bool, Depends(optional_api_key)]


async def require_admin_key(caller: Annotated[Caller, Depends(allow(Role.ADMIN))]) -> str:
    """Allow a request that may change the serving model: an ``admin`` key's (any request when no keys
    are set at all). Who it was, for the record: the key's name."""
    return caller.name


AdminDep = Annotated[str, Depends(require_admin_key)]
