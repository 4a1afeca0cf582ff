"""The API's routers: one per resource. Everything under ``/v1`` requires an API key when keys are set."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from fraudstream.api.deps import require_api_key
from fraudstream.api.routes import (
    alerts,
    customers,
    dead_letters,
    decisions,
    drift,
    health,
    labels,
    model,
    models,
    reports,
    score,
    simulations,
    stats,
    stream,
    transactions,
)

v1_router = APIRouter(
    dependencies=[Depends(require_api_key)],
    responses={401: {"description": "missing API key"}, 403: {"description": "invalid API key"}},
)
for module in (score, transactions, decisions, stats, customers, labels, simulations, model, stream):
    v1_router.include_router(module.router)
v1_router.include_router(alerts.router)
v1_router.include_router(reports.router)
v1_router.include_router(dead_letters.router)
v1_router.include_router(models.router)
v1_router.include_router(drift.router)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(v1_router)

__all__ = ["api_router"]
