"""``/v1/cases``: the analysts' queue, and ``/v1/audit``: who did what to which case, and when.

Every FLAG, HOLD and BLOCK joins the open case of its customer (``FRAUD_CASE_GROUP_BY``), or opens
one; the queue is read by priority (``FRAUD_CASE_PRIORITY``). An analyst claims a case (or is assigned
one), writes notes, and gives a verdict: fraud or legitimate writes a label for each transaction of
the case (source ``case``, the verdict time as label time), which the feature state learns at once,
as from ``POST /v1/labels``; inconclusive writes none. The verdict also resolves the case's held
payments (``/v1/holds``): fraud rejects them, legitimate releases them, inconclusive gives them
``FRAUD_HOLD_DEFAULT``. Each action is in the audit log under the acting key's name.
``GET /v1/cases/{id}/report`` exports a case whole (its decisions with their explanations and the rules
that fired, the entity's history, notes, verdict and audit trail) as JSON or as a self-contained HTML
page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse, Response

from fraudstream.api.deps import CallerDep, DeciderDep, ScorerDep, SettingsDep, StoreDep
from fraudstream.api.routes.entities import EntityOut
from fraudstream.api.routes.labels import feed_state
from fraudstream.api.schemas import HoldOut, StoredDecisionOut
from fraudstream.features.spec import seconds
from fraudstream.reports.case import case_html
from fraudstream.storage.cases import Case, CaseError

router = APIRouter(prefix="/v1/cases", tags=["cases"])
audit_router = APIRouter(prefix="/v1/audit", tags=["cases"])

MAX_ID = 2**63 - 1  # a BIGINT, on both databases
MAX_AGE = timedelta(days=36_500)
CaseId = Annotated[int, Path(ge=1, le=MAX_ID, description="the case's id")]
Verdict = Literal["fraud", "legitimate", "inconclusive"]
Status = Literal["open", "in_review", "closed"]


class CaseOut(BaseModel):
    """A case in the queue: whose it is, how urgent, how old, where it stands."""

    id: int
    group_key: str = Field(description="what the case groups by (FRAUD_CASE_GROUP_BY), e.g. customer_id")
    group_value: str = Field(description="the customer (or device, IP, merchant) the case is about")
    status: Status
    assignee: str | None
    priority: float = Field(
        description="by FRAUD_CASE_PRIORITY: expected loss (probability × amount) by default"
    )
    expected_loss: float
    transactions: int = Field(description="FLAG, HOLD and BLOCK decisions in the case")
    amount: float
    max_probability: float
    opened_at: datetime = Field(description="when its first decision was made")
    age_seconds: float
    updated_at: datetime
    closed_at: datetime | None
    verdict: Verdict | None

    @classmethod
    def of(cls, case: Case) -> CaseOut:
        now = datetime.now(case.opened_at.tzinfo)
        values = {k: v for k, v in case.__dict__.items() if k not in ("decisions", "notes", "holds")}
        return cls(**values, age_seconds=round((now - case.opened_at).total_seconds(), 3))


class NoteOut(BaseModel):
    id: int
    author: str
    text: str
    created_at: datetime


class CaseDecisionOut(BaseModel):
    transaction_id: str
    decision: str
    probability: float
    amount: float
    decided_at: datetime


class CaseDetailOut(CaseOut):
    """A case with its decisions (newest first) and notes (oldest first)."""

    decisions: list[CaseDecisionOut]
    notes: list[NoteOut]


class CasesOut(BaseModel):
    items: list[CaseOut]


class AssignIn(BaseModel):
    assignee: str = Field(min_length=1, max_length=128, description="who takes the case (a key's name)")


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=10_000)


class VerdictIn(BaseModel):
    verdict: Verdict
    note: str | None = Field(
        None, min_length=1, max_length=10_000, description="kept as the case's last note"
    )


class BulkVerdictIn(VerdictIn):
    case_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        min_length=1, max_length=1000, description="the cases to close alike"
    )


class VerdictOut(BaseModel):
    """The closed cases, what their labels changed (as ``POST /v1/labels`` counts them), and the held
    payments the verdict resolved."""

    cases: list[CaseOut]
    holds: list[HoldOut] = Field(description="the pending holds of the cases, now released or rejected")
    labels_accepted: int
    labels_superseded: int
    labels_ignored: int


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="the acting key's name")
    action: str = Field(description="claim, assign, note or verdict")
    subject: str = Field(description="what was acted on, e.g. case:12")
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class CaseReportOut(BaseModel):
    """A case whole, as one document for an audit or a suspicious-activity report."""

    generated_at: datetime = Field(description="when the report was made")
    case: CaseOut = Field(description="the case: whom it is about, where it stands, its verdict")
    decisions: list[StoredDecisionOut] = Field(
        description="its decisions, newest first, each with its reasons (the rules that fired among them), "
        "the rules recorded and its explanation"
    )
    history: EntityOut | None = Field(
        description="the entity the case is about (its customer, by default): its recent transactions "
        "with their decisions and labels, and the customers sharing its devices or IP addresses; null "
        "when none of its transactions is stored"
    )
    notes: list[NoteOut] = Field(description="oldest first")
    audit: list[AuditOut] = Field(description="every analyst action on the case, oldest first")


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such case"},
    409: {"description": "the case is closed, or claimed by someone else"},
}


def _refuse(error: CaseError) -> HTTPException:
    return HTTPException(error.status, str(error))


@router.get("", response_model=CasesOut)
async def list_cases(
    store: StoreDep,
    settings: SettingsDep,
    status_: Annotated[
        list[Status] | None, Query(alias="status", description="default: open and in_review")
    ] = None,
    assignee: Annotated[str | None, Query(max_length=128)] = None,
    min_priority: Annotated[
        float | None, Query(allow_inf_nan=False, description="only cases at least this urgent")
    ] = None,
    older_than: Annotated[
        str | None, Query(max_length=32, description="only cases opened at least this long ago: 30m, 4h, 2d")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> CasesOut:
    """The queue, most urgent first (then oldest): decisions stored since the last look are grouped
    into cases first, so a FLAG is in the queue as soon as it is stored."""
    from fastapi.exceptions import RequestValidationError

    age = None
    if older_than is not None:
        try:
            age = timedelta(seconds=seconds(older_than))
            if age > MAX_AGE:
                raise ValueError(f"at most {MAX_AGE.days} days")
        except (ValueError, OverflowError) as e:
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("query", "older_than"), "msg": str(e), "input": older_than}]
            ) from None
    await run_in_threadpool(store.cases.sync, settings.case_group_by)
    cases = await run_in_threadpool(
        store.cases.list,
        status=list(status_) if status_ else None,
        assignee=assignee,
        min_priority=min_priority,
        older_than=age,
        priority=settings.case_priority,
        limit=limit,
        offset=offset,
    )
    return CasesOut(items=[CaseOut.of(c) for c in cases])


@router.get("/{case_id:int}", response_model=CaseDetailOut, responses=ERRORS)
async def get_case(case_id: CaseId, store: StoreDep, settings: SettingsDep) -> CaseDetailOut:
    """A case with its decisions and notes; the transactions' reasons and the customer are at
    ``GET /v1/decisions`` and ``GET /v1/customers/{id}``."""
    try:
        case = await run_in_threadpool(store.cases.get, case_id, settings.case_priority)
    except CaseError as e:
        raise _refuse(e) from None
    return CaseDetailOut(
        **CaseOut.of(case).model_dump(),
        decisions=[CaseDecisionOut(**d) for d in case.decisions],
        notes=[NoteOut(**{k: n[k] for k in ("id", "author", "text", "created_at")}) for n in case.notes],
    )


HISTORY = 100
"""The entity's most recent transactions a report lists."""


@router.get(
    "/{case_id:int}/report",
    response_model=CaseReportOut,
    responses={
        200: {
            "content": {"text/html": {"schema": {"type": "string"}}},
            "description": "the report as JSON (CaseReportOut), or as a self-contained HTML page",
        },
        404: ERRORS[404],
    },
)
async def case_report(
    case_id: CaseId,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    scorer: ScorerDep,
    format_: Annotated[
        Literal["html", "json"] | None,
        Query(
            alias="format",
            description="html or json; without it, the Accept header chooses: HTML when it prefers "
            "text/html to application/json (a browser), JSON otherwise",
        ),
    ] = None,
) -> Response:
    """The case whole, for an audit or a suspicious-activity report: its decisions with their
    explanations (each contribution against the entity's usual value, in words), the rules that fired,
    the entity's history and links, the notes, the verdict and the audit trail. As JSON, or as one
    HTML page that needs nothing else to show (inline style, no scripts, no external files, every
    text escaped)."""
    retention = timedelta(seconds=scorer.engine.feature_set.retention)
    try:
        report = await run_in_threadpool(_report, store, case_id, settings.case_priority, retention)
    except CaseError as e:
        raise _refuse(e) from None
    if (format_ or _preferred(request.headers.get("accept", ""))) == "html":
        return HTMLResponse(case_html(report.model_dump(mode="json")))
    return Response(report.model_dump_json(), media_type="application/json")


def _report(store: Any, case_id: int, priority: str, retention: timedelta) -> CaseReportOut:
    case = store.cases.get(case_id, priority)
    ids = [str(d["transaction_id"]) for d in case.decisions]
    found = store.decisions.get_many(ids)
    entity = store.entities.get(case.group_key, case.group_value, retention, HISTORY)
    audit = store.cases.audit(subject=f"case:{case_id}", limit=100_000)
    history = None
    if entity is not None and entity.since is not None:
        history = EntityOut.of(case.group_key, case.group_value, entity)
    return CaseReportOut(
        generated_at=datetime.now(UTC),
        case=CaseOut.of(case),
        decisions=[StoredDecisionOut.from_record(found[i]) for i in ids if i in found],
        history=history,
        notes=[NoteOut(**{k: n[k] for k in ("id", "author", "text", "created_at")}) for n in case.notes],
        audit=[AuditOut(**row) for row in reversed(audit)],
    )


def _preferred(accept: str) -> str:
    """``html`` when the Accept header ranks text/html above application/json, else ``json``."""
    quality = {"html": 0.0, "json": 0.0}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        for kind, types in (
            ("html", ("text/html", "text/*", "*/*")),
            ("json", ("application/json", "application/*", "*/*")),
        ):
            if media.lower() in types:
                exact = media.lower() == types[0]
                quality[kind] = max(quality[kind], q + (0.001 if exact else 0.0))
    return "html" if quality["html"] > quality["json"] else "json"


@router.post("/{case_id:int}/claim", response_model=CaseOut, responses=ERRORS)
async def claim_case(case_id: CaseId, store: StoreDep, caller: CallerDep) -> CaseOut:
    """Take the case: it goes in review under the calling key's name. 409 when another holds it."""
    try:
        case = await run_in_threadpool(store.cases.assign, case_id, caller.name, caller.name, claim=True)
    except CaseError as e:
        raise _refuse(e) from None
    return CaseOut.of(case)


@router.post("/{case_id:int}/assign", response_model=CaseOut, responses=ERRORS)
async def assign_case(case_id: CaseId, body: AssignIn, store: StoreDep, caller: CallerDep) -> CaseOut:
    """Give the case to someone (it goes in review), whoever held it."""
    try:
        case = await run_in_threadpool(store.cases.assign, case_id, body.assignee, caller.name)
    except CaseError as e:
        raise _refuse(e) from None
    return CaseOut.of(case)


@router.post(
    "/{case_id:int}/notes", response_model=NoteOut, status_code=status.HTTP_201_CREATED, responses=ERRORS
)
async def add_note(case_id: CaseId, body: NoteIn, store: StoreDep, caller: CallerDep) -> NoteOut:
    """Write what was found; notes are kept, in order, with their author."""
    try:
        note = await run_in_threadpool(store.cases.note, case_id, body.text, caller.name)
    except CaseError as e:
        raise _refuse(e) from None
    return NoteOut(**{k: note[k] for k in ("id", "author", "text", "created_at")})


@router.post("/{case_id:int}/verdict", response_model=VerdictOut, responses=ERRORS)
async def give_verdict(
    case_id: CaseId,
    body: VerdictIn,
    store: StoreDep,
    decider: DeciderDep,
    caller: CallerDep,
    settings: SettingsDep,
) -> VerdictOut:
    """Close the case: fraud or legitimate labels each of its transactions (feeding the features and
    retraining at once); inconclusive closes it without labels. Its held payments are rejected (fraud),
    released (legitimate) or given FRAUD_HOLD_DEFAULT (inconclusive). 409 when already closed."""
    return await _verdict([case_id], body, store, decider, caller.name, settings)


@router.post(
    "/verdicts",
    response_model=VerdictOut,
    responses={**ERRORS, 404: {"description": "a case does not exist; nothing was changed"}},
)
async def give_verdicts(
    body: Annotated[BulkVerdictIn, Body()],
    store: StoreDep,
    decider: DeciderDep,
    caller: CallerDep,
    settings: SettingsDep,
) -> VerdictOut:
    """The same verdict for many cases at once, all or nothing: an unknown or closed case refuses the
    whole request before anything is written."""
    return await _verdict(body.case_ids, body, store, decider, caller.name, settings)


async def _verdict(
    ids: list[int], body: VerdictIn, store: Any, decider: Any, actor: str, settings: Any
) -> VerdictOut:
    try:
        cases, changes, _ = await run_in_threadpool(
            partial(store.cases.verdict, hold_default=settings.hold_default),
            ids,
            body.verdict,
            actor,
            body.note,
        )
    except CaseError as e:
        raise _refuse(e) from None
    if changes.fraud:
        await run_in_threadpool(feed_state, decider, changes.fraud)
    return VerdictOut(
        cases=[CaseOut.of(c) for c in cases],
        holds=[HoldOut.of(h, settings.hold_timeout_seconds) for c in cases for h in c.holds],
        labels_accepted=changes.accepted,
        labels_superseded=changes.superseded,
        labels_ignored=changes.ignored,
    )


@audit_router.get("", response_model=list[AuditOut])
async def audit_log(
    store: StoreDep,
    subject: Annotated[str | None, Query(max_length=160, description="e.g. case:12")] = None,
    actor: Annotated[str | None, Query(max_length=128, description="a key's name")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    """Analyst actions, newest first: who, what, on which case, the state before and after."""
    rows = await run_in_threadpool(store.cases.audit, subject=subject, actor=actor, limit=limit)
    return [AuditOut(**row) for row in rows]
