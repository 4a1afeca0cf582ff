"""Dependencies shared by the routers: the running services, and API-key authentication.

Everything lives on ``app.state`` (set by the lifespan in :mod:`fraudstream.api.app`), so that routes
take what they need as ``Annotated`` parameters and tests can build any number of independent apps.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from fraudstream.api.batcher import ScoreBatcher
from fraudstream.api.metrics import ApiMetrics
from fraudstream.config import Settings
from fraudstream.runtime import Services
from fraudstream.scoring.scorer import Scorer
from fraudstream.storage.store import Store

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="one of the keys in FRAUD_API_KEYS"
)
bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <one of FRAUD_API_KEYS>")


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


async def get_batcher(request: Request, services: ServicesDep) -> ScoreBatcher:
    batcher: ScoreBatcher = request.app.state.batcher
    return batcher


StoreDep = Annotated[Store, Depends(get_store)]
BatcherDep = Annotated[ScoreBatcher, Depends(get_batcher)]
ScorerDep = Annotated[Scorer, Depends(get_scorer)]


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


async def require_api_key(
    settings: SettingsDep,
    api_key: Annotated[str | None, Security(api_key_header)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    """Allow the request when it carries a configured key (``X-API-Key`` or ``Authorization: Bearer``).

    With no keys configured everything is allowed (the embedded demo; the app logs a warning at
    start-up). A missing key is 401, a wrong one 403. Keys are compared in constant time.
    """
    keys = settings.api_key_set
    if not keys:
        return
    offered = _required(api_key, credentials)
    if not key_matches(offered, keys):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")


async def optional_api_key(
    settings: SettingsDep,
    api_key: Annotated[str | None, Security(api_key_header)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> bool:
    """Whether the request may see what only key holders see: True with a configured key, or when no
    keys are set; False without a key. A wrong key is still 403, so that an endpoint open to anyone
    cannot serve to try keys without the failures being counted (see :mod:`fraudstream.api.limits`)."""
    keys = settings.api_key_set
    if not keys:
        return True
    offered = _offered(api_key, credentials)
    if not offered:
        return False
    if not key_matches(offered, keys):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")
    return True


KeyHolderDep = Annotated[bool, Depends(optional_api_key)]


def key_label(key: str) -> str:
    """How a key appears in records: a short digest, never the key itself."""
    return f"api key {hashlib.sha256(key.encode()).hexdigest()[:8]}"


async def require_admin_key(
    settings: SettingsDep,
    api_key: Annotated[str | None, Security(api_key_header)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> str:
    """Allow a request that may change the serving model: one carrying a key of ``FRAUD_ADMIN_KEYS``,
    or any request when no keys are set at all. Who it was, for the record (:func:`key_label`).

    A missing key is 401; a valid API key that is not an admin key, or any key when no admin keys are
    set, is 403 saying so; a wrong key is 403 as everywhere.
    """
    if not settings.api_key_set:
        return "anonymous (no API keys set)"
    offered = _required(api_key, credentials, "an admin key")
    admin = matching_key(offered, settings.admin_key_set)
    if admin is not None:
        return key_label(admin)
    if not key_matches(offered, settings.api_key_set):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")
    if not settings.admin_key_set:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "changing models needs an admin key, and none is set: FRAUD_ADMIN_KEYS"
        )
    raise HTTPException(
        status.HTTP_403_FORBIDDEN, "this API key may not change models: use one of FRAUD_ADMIN_KEYS"
    )


AdminDep = Annotated[str, Depends(require_admin_key)]


def matching_key(offered: Iterable[str | bytes], keys: frozenset[str]) -> str | None:
    """The configured key among ``offered``, or ``None``. Each offered key is compared with every
    configured key (no early exit), so the timing does not reveal which key matched."""
    for key in offered:
        raw = key.encode() if isinstance(key, str) else key
        if not raw:
            continue
        found = [k for k in keys if secrets.compare_digest(raw, k.encode())]
        if found:
            return found[0]
    return None


def key_matches(offered: Iterable[str | bytes], keys: frozenset[str]) -> bool:
    """Whether one of the ``offered`` keys is configured (see :func:`matching_key`)."""
    return matching_key(offered, keys) is not None


def key_in_headers(headers: Mapping[bytes, bytes], keys: frozenset[str]) -> str | None:
    """The configured key that raw ASGI ``headers`` carry as ``X-API-Key`` or ``Authorization: Bearer``,
    or ``None``: the same reading as :func:`require_api_key`, for the code in front of FastAPI."""
    offered = [headers.get(b"x-api-key", b"")]
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() == b"bearer":
        offered.append(token.strip())
    return matching_key(offered, keys)
