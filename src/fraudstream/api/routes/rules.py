"""``/v1/rules``: analysts' rules — the rules in use, new versions saved (admin), and backtests.

``GET /v1/rules`` shows the rules this server applies now and where they come from. With
``FRAUD_RULES_SOURCE=database``, ``POST`` or ``PUT /v1/rules`` checks a new rule set (422 naming the
rule) and saves it as the next version, which the answering server uses at once and every other server
and worker within ``FRAUD_RULES_POLL_SECONDS`` (a version declaring new aggregates once they are computed
from stored history); with the file source they answer 409.

``POST /v1/rules/backtest`` tries candidate rules on stored history.

A backtest reads the decisions stored for the window with the feature vectors logged at decision time
(the aggregates the candidate declares are computed over the stored transactions), rebuilds each model
decision from its stored probability and the serving model's thresholds, applies the candidate rules,
and reports per rule its hits, precision and recall against the labels known now and the fraud amount
caught, and the decisions that would change against those made live. A candidate that does not compile
is refused with 422, naming the rule and the problem.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import yaml
from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, field_validator

from fraudstream.api.deps import CallerDep, ScorerDep, ServicesDep, StoreDep
from fraudstream.api.routes.rule_guard import keep_baseline
from fraudstream.events.transaction import MAX_TIMESTAMP, MIN_TIMESTAMP
from fraudstream.features.spec import seconds
from fraudstream.rules.errors import RulesError
from fraudstream.rules.loader import MAX_TEXT, parse_rules, rules_from_bytes
from fraudstream.rules.names import default_known_names
from fraudstream.rules.reload import DatabaseRules
from fraudstream.rules.ruleset import RuleSet
from fraudstream.runtime import Services
from fraudstream.training.rule_backtest import MAX_SINCE, backtest_names, run_backtest

router = APIRouter(prefix="/v1/rules", tags=["rules"])

SOURCE = "candidate"


def _bounded(value: str | dict[str, Any]) -> str | dict[str, Any]:
    """The rules as given, when their text (or their JSON) is at most :data:`MAX_TEXT` bytes."""
    size = len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else _json_size(value)
    if size > MAX_TEXT:
        raise ValueError(f"the rules are {size:,} bytes; at most {MAX_TEXT:,}")
    return value


def _json_size(value: dict[str, Any]) -> int:
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, or text that is not UTF-8: the slow way
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


class RulesIn(BaseModel):
    """A new version of the rules."""

    rules: str | dict[str, Any] = Field(
        description="the rules: the YAML text of a rules file, or the same as a JSON object "
        "(rules, allow, deny, aggregates)",
        examples=[
            "rules:\n  - name: big\n    when: amount > 1000\n    action: FLAG\n    reason: big amount\n"
        ],
    )

    @field_validator("rules")
    @classmethod
    def _size(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        return _bounded(value)


class RuleOut(BaseModel):
    name: str
    when: str
    action: str
    reason: str
    alert: bool
    shadow: bool


class AggregatesOut(BaseModel):
    """The runtime aggregates this server computes for its rules (docs/rules.md)."""

    names: list[str] = Field(
        description="the aggregates the rules in use declare, computed for every decision"
    )
    retention_seconds: float | None = Field(description="how far back in event time they look")
    warming: str | None = Field(
        description="a newer version whose other aggregates are being computed from stored history: "
        "the version in use applies until they are"
    )
    last_error: str | None = Field(description="why a newer version's aggregates could not be warmed, if so")


class VersionOut(BaseModel):
    version: int
    created_at: datetime
    created_by: str = Field(description="the name of the key that saved it, or seed:<file>")


class RulesOut(BaseModel):
    """The rules this server applies now."""

    source: str = Field(description="file (FRAUD_RULES_PATH) or database (FRAUD_RULES_SOURCE)")
    version: str = Field(description="the version decisions record: a number, or the file's short hash")
    rules: list[RuleOut]
    allow: dict[str, list[str]]
    deny: dict[str, list[str]]
    text: str | None = Field(description="the version's text as saved (database source)")
    created_at: datetime | None = None
    created_by: str | None = None
    last_error: str | None = Field(
        description="why a newer version or edit is not in use (it does not compile here), if so"
    )
    versions: list[VersionOut] = Field(
        description="the newest saved versions, newest first (database source)"
    )
    aggregates: AggregatesOut | None = Field(
        None, description="the runtime aggregates computed for the rules, and a version being warmed"
    )


class BacktestIn(BaseModel):
    """Candidate rules and the stored history to try them on."""

    rules: str | dict[str, Any] = Field(
        description="the candidate rules: the YAML text of a rules file, or the same as a JSON object "
        "(rules, allow, deny, aggregates)",
        examples=[
            "rules:\n  - name: big\n    when: amount > 1000\n    action: FLAG\n    reason: big amount\n"
        ],
    )
    since: str = Field(
        "30d", max_length=32, description="how far back from `until`: e.g. 30d, 12h, 2w", examples=["30d"]
    )
    until: datetime | None = Field(
        None, description="end of the history, exclusive; default just after the newest stored decision"
    )

    @field_validator("since")
    @classmethod
    def _duration(cls, value: str) -> str:
        if seconds(value) > MAX_SINCE.total_seconds():  # seconds() says what a duration looks like
            raise ValueError(f"at most {MAX_SINCE.days} days")
        return value

    @field_validator("until")
    @classmethod
    def _within(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # naive times are UTC
        if not MIN_TIMESTAMP <= value <= MAX_TIMESTAMP:
            raise ValueError(f"must lie in {MIN_TIMESTAMP:%Y-%m-%d} to {MAX_TIMESTAMP:%Y-%m-%d}")
        return value

    @field_validator("rules")
    @classmethod
    def _size(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        return _bounded(value)


class RuleStatsOut(BaseModel):
    name: str = Field(description="the rule's name, or deny_list:<field> / allow_list:<field>")
    action: str
    shadow: bool = Field(description="a shadow rule: its hits are recorded, it changes no decision")
    hits: int = Field(description="stored decisions the rule fires on")
    fraud_hits: int = Field(description="hits labelled fraud by any source")
    unlabelled_hits: int = Field(description="hits no source has labelled yet (counted as not fraud)")
    precision: float | None = Field(description="fraud_hits / hits; null without hits")
    recall: float | None = Field(description="fraud_hits / the window's known fraud; null without fraud")
    fraud_amount: float = Field(description="the amount of the fraud hits")


class ChangeOut(BaseModel):
    from_: str = Field(alias="from", description="the decision made live")
    to: str = Field(description="the decision under the candidate rules")
    count: int
    examples: list[str] = Field(description="a few of their transaction ids")


class BacktestOut(BaseModel):
    """What the candidate rules would have done over ``[start, end)``."""

    start: datetime
    end: datetime
    rules_version: str = Field(description="a short hash of the candidate")
    thresholds: dict[str, float] = Field(description="the flag and block thresholds the model decisions used")
    thresholds_version: str = Field(description="the model version the thresholds come from: the serving one")
    rows: int = Field(description="stored decisions in the window")
    other_model_rows: int = Field(description="of them, decided by another model version")
    labelled: int = Field(description="decisions with a label from any source")
    fraud: int = Field(description="decisions labelled fraud by any source")
    fraud_amount: float
    rules: list[RuleStatsOut] = Field(
        description="per rule in the candidate's order, then the lists that hit"
    )
    changes: list[ChangeOut] = Field(description="decisions that would change, commonest first")
    live: dict[str, int] = Field(description="the decisions made live, by outcome")
    candidate: dict[str, int] = Field(description="the decisions under the candidate rules, by outcome")


def _invalid(field: str, exc: RulesError, value: Any) -> RequestValidationError:
    """422 naming the rule and the problem; the rules themselves are echoed only in their first lines."""
    shown = value[:200] if isinstance(value, str) else None
    entry: dict[str, Any] = {"type": "value_error", "loc": ("body", field), "msg": str(exc), "input": shown}
    if exc.rule is not None:
        entry["ctx"] = {"rule": exc.rule}
    return RequestValidationError([entry])


def compile_candidate(rules: str | dict[str, Any], known: dict[str, str]) -> RuleSet:
    """The candidate as a rule set; :class:`RulesError` naming the rule when it does not compile."""
    if isinstance(rules, str):
        return rules_from_bytes(rules, known, SOURCE)
    return parse_rules(rules, known, SOURCE)


@router.post("/backtest", response_model=BacktestOut, response_model_by_alias=True)
async def backtest(body: BacktestIn, store: StoreDep, scorer: ScorerDep) -> dict[str, Any]:
    """Try candidate rules on the stored decisions of the last ``since``: per rule its hits, precision,
    recall and fraud amount caught, and the decisions that would change against those made live."""
    manifest = scorer.bundle.manifest
    names = await run_in_threadpool(store.history.feature_names)
    try:  # compiled off the event loop, like the backtest itself
        known = backtest_names(names, scorer.engine.feature_set)
        rules = await run_in_threadpool(compile_candidate, body.rules, known)
    except RulesError as exc:
        raise _invalid("rules", exc, body.rules) from None
    window = timedelta(seconds=seconds(body.since))
    try:
        report = await run_in_threadpool(
            run_backtest,
            store,
            rules,
            manifest.thresholds,
            manifest.version,
            window,
            body.until,
            scorer.bands,
        )
    except RulesError as exc:  # a rule that compiles but cannot read the stored columns
        raise _invalid("rules", exc, body.rules) from None
    return report.to_dict()


def _current(services: Services) -> dict[str, Any]:
    live = services.rules
    rules = live.current()
    computed = services.aggregates
    out: dict[str, Any] = {
        "source": services.settings.rules_source,
        "version": rules.version,
        "rules": [
            {"name": r.name, "when": r.when, "action": r.action, "reason": r.reason, "alert": r.alert,
             "shadow": r.shadow}
            for r in rules.rules
        ],
        "allow": {k: sorted(v) for k, v in rules.allow.items()},
        "deny": {k: sorted(v) for k, v in rules.deny.items()},
        "text": None,
        "last_error": live.last_error,
        "versions": [],
        "aggregates": None if computed is None else computed.status(),
    }  # fmt: skip
    if isinstance(live, DatabaseRules):
        repository = services.store.rules
        stored = repository.get(int(rules.version)) if rules.version.isdigit() else None
        if stored is not None:
            out.update(text=stored.text, created_at=stored.created_at, created_by=stored.created_by)
        out["versions"] = [v.__dict__ for v in repository.versions()]
    return out


@router.get("", response_model=RulesOut)
async def current(services: ServicesDep) -> dict[str, Any]:
    """The rules this server applies now, their version and source, and the newest saved versions."""
    return await run_in_threadpool(_current, services)


async def _save(body: RulesIn, services: Services, scorer: Any, caller: Any) -> dict[str, Any]:
    live = services.rules
    if not isinstance(live, DatabaseRules):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "this server reads its rules from the file FRAUD_RULES_PATH (FRAUD_RULES_SOURCE=file): edit the "
            "file, or set FRAUD_RULES_SOURCE=database to keep versions in the database",
        )
    try:  # compiled off the event loop: the routes beside it go on answering
        rules = await run_in_threadpool(
            compile_candidate, body.rules, default_known_names(scorer.engine.feature_set)
        )
    except RulesError as exc:
        raise _invalid("rules", exc, body.rules) from None
    text = body.rules if isinstance(body.rules, str) else yaml.safe_dump(body.rules, sort_keys=False)
    repository = services.store.rules
    saved = await run_in_threadpool(repository.save, text, caller.name)
    await run_in_threadpool(live.refresh)
    numbered = dataclasses.replace(rules, version=str(saved.version))  # the rule guard's expected rates
    await run_in_threadpool(keep_baseline, services, scorer, numbered, caller.name)
    return await run_in_threadpool(_current, services)


CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "the rules come from a file (FRAUD_RULES_SOURCE=file)"}
}


@router.post("", response_model=RulesOut, status_code=status.HTTP_201_CREATED, responses=CONFLICT)
async def save(body: RulesIn, services: ServicesDep, scorer: ScorerDep, caller: CallerDep) -> dict[str, Any]:
    """Check the rules and save them as the next version: in use here at once, and on every other
    server and worker within FRAUD_RULES_POLL_SECONDS; a version declaring other aggregates once they
    are computed from stored history (`aggregates.warming` meanwhile). 422 naming the rule when they do
    not compile. The version is backtested over the newest stored decisions for the rule guard (see
    ``GET /v1/rules/guard``)."""
    return await _save(body, services, scorer, caller)


@router.put("", response_model=RulesOut, responses=CONFLICT)
async def replace(
    body: RulesIn, services: ServicesDep, scorer: ScorerDep, caller: CallerDep
) -> dict[str, Any]:
    """As ``POST /v1/rules``: replace the rules in use by a new version (the older ones are kept)."""
    return await _save(body, services, scorer, caller)
