"""``/v1/rules``: analysts' rules. ``POST /v1/rules/backtest`` tries candidate rules on stored history.

A backtest reads the decisions stored for the window with the feature vectors logged at decision time
(nothing is recomputed), rebuilds each model decision from its stored probability and the serving
model's thresholds, applies the candidate rules, and reports per rule its hits, precision and recall
against the labels known now and the fraud amount caught, and the decisions that would change against
those made live. A candidate that does not compile is refused with 422, naming the rule and the problem.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, field_validator

from fraudstream.api.deps import ScorerDep, StoreDep
from fraudstream.features.spec import seconds
from fraudstream.rules.backtest import backtest_names, run_backtest
from fraudstream.rules.errors import RulesError
from fraudstream.rules.loader import parse_rules, rules_from_bytes
from fraudstream.rules.ruleset import RuleSet

router = APIRouter(prefix="/v1/rules", tags=["rules"])

SOURCE = "candidate"


class BacktestIn(BaseModel):
    """Candidate rules and the stored history to try them on."""

    rules: str | dict[str, Any] = Field(
        description="the candidate rules: the YAML text of a rules file, or the same as a JSON object "
        "(rules, allow, deny)",
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
        seconds(value)  # a ValueError saying what a duration looks like
        return value

    @field_validator("rules")
    @classmethod
    def _size(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(value, str) and len(value) > 1_000_000:
            raise ValueError("at most 1,000,000 characters of rules")
        return value


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
    entry = {"type": "value_error", "loc": ("body", field), "msg": str(exc), "input": value}
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
    try:
        rules = compile_candidate(body.rules, backtest_names(names, scorer.engine.feature_set))
    except RulesError as exc:
        raise _invalid("rules", exc, body.rules) from None
    window = timedelta(seconds=seconds(body.since))
    until = body.until
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)  # naive times are UTC, as everywhere in the API
    try:
        report = await run_in_threadpool(
            run_backtest, store, rules, manifest.thresholds, manifest.version, window, until
        )
    except RulesError as exc:  # a rule that compiles but cannot read the stored columns
        raise _invalid("rules", exc, body.rules) from None
    return report.to_dict()
