"""``/v1/models``: the registered model's versions, and moving ``champion`` (admin keys only).

The registry is MLflow's (``FRAUD_MLFLOW_TRACKING_URI``). Promoting and rolling back move aliases and
record who did it. This process swaps the new champion in at once, and the other servers started with
``FRAUD_MODEL_URI=models:/NAME@champion`` within ``FRAUD_MODEL_POLL_SECONDS``, between two batches (a
model on another feature set needs a restart).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fraudstream.api.deps import AdminDep, SettingsDep, StoreDep
from fraudstream.registry import (
    Registry,
    RegistryConflictError,
    RegistryError,
    RegistryUnavailableError,
    promote,
    registry_for,
    rollback,
)
from fraudstream.storage.promotions import Promotion

router = APIRouter(prefix="/v1/models", tags=["models"])
T = TypeVar("T")

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such version or alias in the registry"},
    409: {
        "description": "no model registry configured (FRAUD_MLFLOW_TRACKING_URI), or its state does not "
        "allow it (already champion, nothing to roll back)"
    },
    503: {"description": "the MLflow server does not answer"},
}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"description": "invalid API key, or a key that is not one of FRAUD_ADMIN_KEYS"},
}


class VersionOut(BaseModel):
    """One registered version of the model."""

    version: str
    aliases: list[str] = Field(description="champion (serving), challenger (newest), previous")
    model_version: str | None = Field(description="the bundle's own version, as decisions record it")
    created_at: datetime | None
    run_id: str | None
    metrics: dict[str, float] = Field(description="key metrics of the run that registered it")
    tags: dict[str, str]


class PromotionOut(BaseModel):
    """One move of ``champion``, as recorded."""

    id: int | None
    model_name: str
    action: str = Field(description="register (first champion), promote or rollback")
    from_version: str | None
    to_version: str
    promoted_by: str
    promoted_at: datetime | None
    comparison: dict[str, Any] | None


class ModelsOut(BaseModel):
    name: str
    registry: str | None = Field(
        description="the MLflow server (FRAUD_MLFLOW_TRACKING_URI); null: no registry, no versions"
    )
    versions: list[VersionOut] = Field(description="newest first")
    promotions: list[PromotionOut] = Field(description="recent promotions, newest first")


class PromoteIn(BaseModel):
    """Which version becomes champion: exactly one of ``version`` or ``challenger: true``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": ["version"], "properties": {"challenger": {"const": False}}},
                {
                    "required": ["challenger"],
                    "properties": {"challenger": {"const": True}, "version": {"type": "null"}},
                },
            ]
        },
    )

    version: str | None = Field(None, pattern=r"^[1-9][0-9]{0,9}$", description="version number")
    challenger: bool = Field(False, description="promote the version aliased challenger")
    by: str | None = Field(None, max_length=100, description="who asks, recorded beside the key's digest")
    comparison: dict[str, Any] | None = Field(None, description="the evidence, e.g. retrain's comparison")

    @model_validator(mode="after")
    def _one_of(self) -> PromoteIn:
        if (self.version is None) != self.challenger:
            raise ValueError("give a version, or challenger: true")
        return self


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(None, max_length=100, description="who asks, recorded beside the key's digest")


def _out(p: Promotion) -> PromotionOut:
    return PromotionOut(**p.__dict__)


async def _registry_call(settings: SettingsDep, fn: Callable[[Registry], T]) -> T:
    """Run ``fn`` on the registry off the event loop; registry errors become 404, 409 or 503."""
    if not settings.mlflow_tracking_uri:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "this server has no model registry: set FRAUD_MLFLOW_TRACKING_URI"
        )
    try:
        registry = registry_for(settings)
        return await run_in_threadpool(fn, registry)
    except RegistryUnavailableError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    except RegistryConflictError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except RegistryError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


def _author(admin: str, by: str | None) -> str:
    return f"{by} ({admin})" if by else admin


@router.get("", response_model=ModelsOut, responses=ERRORS)
async def list_models(
    settings: SettingsDep,
    store: StoreDep,
    history: int = Query(10, ge=0, le=1000, description="how many recent promotions to include"),
) -> ModelsOut:
    """Every version of the registered model with its aliases and key metrics, and recent promotions.
    Without a registry (no FRAUD_MLFLOW_TRACKING_URI) the list is empty and ``registry`` null."""
    versions = []
    if settings.mlflow_tracking_uri:
        versions = await _registry_call(settings, lambda r: r.versions())
    promotions = await run_in_threadpool(store.promotions.list, settings.model_registry_name, history)
    return ModelsOut(
        name=settings.model_registry_name,
        registry=settings.mlflow_tracking_uri,
        versions=[
            VersionOut(**{k: v for k, v in info.to_dict().items() if k in VersionOut.model_fields})
            for info in versions
        ],
        promotions=[_out(p) for p in promotions] if history else [],
    )


@router.post("/promote", response_model=PromotionOut, responses=ADMIN_ERRORS)
async def promote_model(
    body: PromoteIn, settings: SettingsDep, store: StoreDep, admin: AdminDep, request: Request
) -> PromotionOut:
    """Move ``champion`` to a version (or the challenger); the old champion becomes ``previous``.

    Recorded (who, when, from which version, the comparison) in the database and as version tags.
    This server, when it serves the alias, swaps the new version in before answering; other servers
    on the alias do within FRAUD_MODEL_POLL_SECONDS (a model on another feature set needs a restart)."""
    by = _author(admin, body.by)
    done = await _registry_call(
        settings, lambda r: promote(r, body.version, by=by, comparison=body.comparison, store=store)
    )
    await _follow(request)
    return _out(done)


@router.post("/rollback", response_model=PromotionOut, responses=ADMIN_ERRORS)
async def rollback_model(
    settings: SettingsDep, store: StoreDep, admin: AdminDep, request: Request, body: RollbackIn | None = None
) -> PromotionOut:
    """Give ``champion`` back to ``previous`` (one step); recorded like a promotion, and swapped in as
    a promotion is."""
    by = _author(admin, body.by if body else None)
    done = await _registry_call(settings, lambda r: rollback(r, by=by, store=store))
    await _follow(request)
    return _out(done)


async def _follow(request: Request) -> None:
    """Swap in the version the served alias now names, when this server follows one."""
    watcher = getattr(request.app.state, "model_watcher", None)
    if watcher is not None:
        await run_in_threadpool(watcher.check)


class CompareOut(BaseModel):
    """The models that decided or were scored in shadow, on the decisions of a period whose labels
    have arrived."""

    since: str = Field(description="start of the period (decision time), ISO 8601")
    labelled: int = Field(description="labelled decisions in the period")
    models: list[dict[str, Any]] = Field(
        description="per model version, over every labelled decision it scored: decided and in_shadow (how "
        "many it decided and scored in shadow), labelled, frauds, auc, average_precision, flag_rate, recall, "
        "recall_at_flag_rate, caught_fraud_amount, fraud_amount, false_positive_rate"
    )
    pairs: list[dict[str, Any]] = Field(
        description="per model that decided (decided_by) and model scored beside it (other): both models' "
        "metrics on the same labelled decisions (decided_by_metrics, other_metrics) and agreement, the share "
        "of those decisions on which both decided alike; with A/B routing, one pair per arm"
    )


@router.get(
    "/compare",
    response_model=CompareOut,
    responses={422: {"description": "since is neither a duration nor an ISO 8601 time"}},
)
async def compare_models(
    store: StoreDep,
    since: str = Query(
        "7d", max_length=64, description="decided since: a duration back from now (7d, 12h) or ISO 8601"
    ),
) -> CompareOut:
    """The serving model(s) and the challenger (in shadow or for its A/B share) compared on labelled
    production decisions: AUC, average precision, recall at the acting decisions' flag rate, caught
    fraud amount, false-positive rate, and how often the two decisions agree. Labels count as they are
    known now."""
    from fastapi.exceptions import RequestValidationError

    from fraudstream.training.shadow import compare, parse_since

    try:
        start = parse_since(since)
    except ValueError as error:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "since"), "msg": str(error), "input": since}]
        ) from None
    rows = await run_in_threadpool(store.comparison.labelled_decisions, start)
    return CompareOut(**compare(rows, start))
