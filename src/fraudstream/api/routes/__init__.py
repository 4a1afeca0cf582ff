"""The API's routers: one per resource. Every route under ``/v1`` needs a role when keys are set,
the one :data:`~fraudstream.api.roles.ROLES` gives it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request

from fraudstream.api.deps import Caller, allow, refuse_role
from fraudstream.api.roles import ROLES, roles_for
from fraudstream.api.routes import (
    alerts,
    cases,
    challenges,
    customers,
    dead_letters,
    decisions,
    drift,
    entities,
    health,
    holds,
    keys,
    labels,
    me,
    model,
    models,
    reports,
    rule_guard,
    rules,
    score,
    simulations,
    snoozes,
    stats,
    stream,
    transactions,
    webhooks,
)
from fraudstream.storage.keys import Role


async def authorize(request: Request, caller: Annotated[Caller, Depends(allow(*Role))]) -> None:
    """Let the request through when its caller holds one of the roles :data:`ROLES` gives its route."""
    route = request.scope.get("route")
    # the template without convertors: /v1/cases/{case_id}, not /v1/cases/{case_id:int}
    needed = roles_for(request.method, getattr(route, "path_format", getattr(route, "path", "")))
    refused = refuse_role(caller, needed)
    if refused is not None:
        raise refused


V1_DEPENDENCIES = [Depends(authorize)]
V1_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing API key"},
    403: {"description": "invalid API key, or a role lacking"},
}

v1_router = APIRouter(dependencies=V1_DEPENDENCIES, responses=V1_RESPONSES)
for module in (transactions, decisions, stats, customers, labels, simulations, model, stream):
    v1_router.include_router(module.router)
v1_router.include_router(alerts.router)
v1_router.include_router(reports.router)
v1_router.include_router(dead_letters.router)
v1_router.include_router(models.router)
v1_router.include_router(drift.router)
v1_router.include_router(cases.router)
v1_router.include_router(cases.audit_router)
v1_router.include_router(entities.router)
v1_router.include_router(me.router)
v1_router.include_router(keys.router)
v1_router.include_router(rules.router)
v1_router.include_router(rule_guard.router)
v1_router.include_router(snoozes.router)
v1_router.include_router(challenges.router)
v1_router.include_router(holds.router)
v1_router.include_router(webhooks.router)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(v1_router)


def include_routes(app: FastAPI) -> None:
    """Every route on ``app``; ``POST /v1/score`` first and on the app itself, with the same
    dependencies and documented answers as the other ``/v1`` routes. FastAPI matches a request
    against an included router by walking that router's whole tree, on every request: the route
    called hundreds of times a second is not behind the tree."""
    app.include_router(score.router, dependencies=V1_DEPENDENCIES, responses=V1_RESPONSES)
    app.include_router(api_router)


__all__ = ["ROLES", "api_router", "include_routes", "roles_for"]
