"""Liveness, readiness and metrics, for orchestrators and Prometheus.

``/health`` and ``/ready`` answer without an API key, as probes must; what they show anyone is only
whether the process is alive and which checks pass. What answered and its version, which tells an
attacker what to aim at, is in ``/ready`` only for a key holder. ``/metrics`` (decision counts, routes,
latencies) needs an analyst or admin key when keys are set: Prometheus sends one as a bearer token
(``authorization: {credentials: <key>}`` in its scrape config).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fraudstream.api.deps import KeyHolderDep, MetricsDep, ServicesDep, allow
from fraudstream.api.schemas import CheckOut, HealthOut, ReadyOut
from fraudstream.checks import check_running
from fraudstream.runtime import Services
from fraudstream.storage.errors import StorageError
from fraudstream.storage.keys import Role
from fraudstream.worker.worker import TRANSACTIONS

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
async def health() -> HealthOut:
    """Alive: the process answers. Restart it when this fails; do not route traffic on it (see /ready).
    Never rate-limited, and it says nothing else."""
    return HealthOut()


def _checks(services: Services) -> dict[str, CheckOut]:
    return {c.name: CheckOut(ok=c.ok, detail=c.detail) for c in check_running(services)}


@router.get(
    "/ready",
    response_model=ReadyOut,
    response_model_exclude_none=True,
    responses={503: {"model": ReadyOut}, 403: {"description": "invalid API key"}},
)
async def ready(
    request: Request, response: Response, services: ServicesDep, key_holder: KeyHolderDep
) -> ReadyOut:
    """Ready for traffic: the database, broker and feature state answer, a model is loaded and, if
    embedded, the worker runs — the checks of ``fraudstream check``.

    503 names the failing check, so a load balancer stops sending traffic and an operator sees why;
    each check's detail (what answered, its version, or the error) is shown only with an API key
    when keys are set. A wrong key is 403.
    """
    checks = await run_in_threadpool(_checks, services)
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        thread = request.app.state.worker_thread
        beat = worker.health()
        alive = bool(beat["alive"]) and thread is not None and thread.is_alive()
        checks["worker"] = CheckOut(
            ok=alive, detail=f"heartbeat {beat['heartbeat_age_s']} s ago, {beat['decided']} decided"
        )
    ok = all(check.ok for check in checks.values())
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    if not key_holder:
        checks = {name: CheckOut(ok=check.ok) for name, check in checks.items()}
    return ReadyOut(status="ready" if ok else "unavailable", checks=checks)


def _queue_lag(services: Services) -> float:
    try:
        return float(services.store.queue.pending(TRANSACTIONS))
    except StorageError as error:
        log.warning("metrics: cannot read the queue lag: %s", error)
        return float("nan")


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(allow(Role.ANALYST))],
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}},
        401: {"description": "missing API key"},
        403: {"description": "invalid API key, or not an analyst or admin key"},
    },
)
async def metrics(metrics: MetricsDep, services: ServicesDep) -> Response:
    """Prometheus exposition of this process's metrics; the queue lag is read from the database now.
    Needs an analyst (or admin) key when keys are set (Prometheus: a bearer token in the scrape config)."""
    metrics.queue_lag.set(await run_in_threadpool(_queue_lag, services))
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
