"""Liveness, readiness and metrics: open without an API key, for orchestrators and Prometheus."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fraudstream.api.deps import MetricsDep, ServicesDep
from fraudstream.api.schemas import CheckOut, HealthOut, ReadyOut
from fraudstream.checks import check_running
from fraudstream.runtime import Services
from fraudstream.storage.errors import StorageError
from fraudstream.worker.worker import TRANSACTIONS

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
async def health() -> HealthOut:
    """Alive: the process answers. Restart it when this fails; do not route traffic on it (see /ready)."""
    return HealthOut()


def _checks(services: Services) -> dict[str, CheckOut]:
    return {c.name: CheckOut(ok=c.ok, detail=c.detail) for c in check_running(services)}


@router.get("/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
async def ready(request: Request, response: Response, services: ServicesDep) -> ReadyOut:
    """Ready for traffic: the database, broker and feature state answer, a model is loaded and, if
    embedded, the worker runs — the checks of ``fraudstream check``.

    503 names the failing check, so a load balancer stops sending traffic and an operator sees why.
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
    return ReadyOut(status="ready" if ok else "unavailable", checks=checks)


def _queue_lag(services: Services) -> float:
    try:
        return float(services.store.pending(TRANSACTIONS))
    except StorageError as error:
        log.warning("metrics: cannot read the queue lag: %s", error)
        return float("nan")


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(metrics: MetricsDep, services: ServicesDep) -> Response:
    """Prometheus exposition of this process's metrics; the queue lag is read from the database now."""
    metrics.queue_lag.set(await run_in_threadpool(_queue_lag, services))
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
