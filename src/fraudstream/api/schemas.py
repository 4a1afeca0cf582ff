"""Request and response models of the HTTP API: the contract clients code against (see ``/docs``).

Responses are their own models rather than the storage records, so a storage change cannot silently
change the API. Transactions and labels come in as the canonical :mod:`fraudstream.events` models.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fraudstream.config import Settings
from fraudstream.events.decision import DecisionRecord
from fraudstream.events.transaction import Label
from fraudstream.monitoring.rule_guard import GuardStatus, guard_limits
from fraudstream.rules.guard import STATES, expected_rate
from fraudstream.storage.challenges import IS_FRAUD, Challenge
from fraudstream.storage.guard import Baseline, Guard
from fraudstream.storage.holds import PENDING, Hold
from fraudstream.storage.store import LATENCY_SAMPLE, RECENT_SECONDS

DecisionName = Literal["APPROVE", "FLAG", "CHALLENGE", "HOLD", "BLOCK"]
"""The outcomes, mildest first (see :data:`fraudstream.events.transaction.DECISIONS`)."""
LabelIn = Label


class ContributionOut(BaseModel):
    """One feature's contribution to a decision's fraud score, against the entity's usual value."""

    feature: str = Field(description="the feature's name")
    description: str = Field(description="what the feature is, from the feature spec")
    value: float | None = Field(description="its value for this transaction")
    contribution: float = Field(
        description="what it added to the explaining model's score (log-odds; a negative one lowered the"
        " risk), rounded to 4 places"
    )
    usual: float | None = Field(
        description="the usual value: the entity's own (its 30-day median or average, when the feature spec"
        " keeps one for that quantity) or else the training data's median; null when neither is known"
    )
    usual_basis: str | None = Field(
        description="what 'usual' is: e.g. \"this customer's 30-day average\" or \"median of the training"
        ' data"'
    )
    sentence: str = Field(description="the contribution in words, for people")


class ExplanationOut(BaseModel):
    """The explaining model's largest contributions to a decision, both ways: every decision has one
    (APPROVE too) when its model explains (XGBoost's approximate contributions, or the logistic model's
    terms), at most three each way, a missing value never among them."""

    model: str = Field(description="the explaining model: xgboost or logistic")
    raises: list[ContributionOut] = Field(description="those that raised the risk most, largest first")
    lowers: list[ContributionOut] = Field(description="those that lowered it most, largest first")


class DecisionOut(BaseModel):
    """A decision: what was decided for a transaction, why, by which model, and how fast."""

    transaction_id: str
    customer_id: str
    amount: float
    timestamp: datetime = Field(description="the transaction's own time")
    decision: DecisionName = Field(
        description="APPROVE; FLAG (approved, for an analyst to look at); CHALLENGE (ask the customer for "
        "step-up authentication, then POST /v1/challenges/{transaction_id}); HOLD (the payment waits for a "
        "case's verdict or the hold timeout); BLOCK"
    )
    probability: float = Field(description="ensemble fraud probability, 0 to 1")
    reasons: list[dict[str, Any]] = Field(
        description="every outcome but APPROVE: the top model contributions, each {code, value, contribution,"
        " source, description, direction: raises_risk}; then every fired rule, {code, reason, source: rules,"
        " direction: raises_risk or lowers_risk}. An APPROVE lists no model contributions, and a missing"
        " feature value is never one",
        examples=[
            [
                {
                    "code": "ip_secs_since_first",
                    "value": 31047.0,
                    "contribution": 0.8123,
                    "source": "xgboost",
                    "description": "IP address: seconds since first seen",
                    "direction": "raises_risk",
                },
                {
                    "code": "night_spree",
                    "reason": "many payments at night",
                    "source": "rules",
                    "direction": "raises_risk",
                },
            ]
        ],
    )
    rules: list[str] = Field(
        description="names of the rules that fired, then snoozed:<name> for each rule that fired but an "
        "analyst's snooze covers (POST /v1/snoozes), then shadow:<name> for each shadow rule that fired "
        "(snoozed and shadow hits are recorded only: they changed nothing)"
    )
    model_version: str
    latency_ms: dict[str, float] = Field(description="time per scoring stage; 'total' is the sum")
    decided_at: datetime
    duplicate: bool = Field(False, description="true when this is the stored decision of a replayed id")
    explanation: ExplanationOut | None = Field(
        None,
        description="the model's largest contributions both ways, each with the entity's usual value and a "
        "sentence; null when no model of the bundle explains (or for decisions stored before explanations)",
        examples=[
            {
                "model": "xgboost",
                "raises": [
                    {
                        "feature": "amount",
                        "description": "amount",
                        "value": 250.0,
                        "contribution": 1.2034,
                        "usual": 52.1,
                        "usual_basis": "this customer's 30-day average",
                        "sentence": "amount 250.00, 4.8× this customer's 30-day average (52.10)",
                    }
                ],
                "lowers": [
                    {
                        "feature": "customer_secs_since_first",
                        "description": "customer: seconds since first seen",
                        "value": 3542400.0,
                        "contribution": -0.6521,
                        "usual": 669992.8,
                        "usual_basis": "median of the training data",
                        "sentence": "customer first seen 41 days ago, usually 7.8 days ago",
                    }
                ],
            }
        ],
    )

    @classmethod
    def from_record(cls, record: DecisionRecord, *, duplicate: bool = False) -> DecisionOut:
        return cls(
            transaction_id=record.transaction_id,
            customer_id=record.customer_id,
            amount=record.amount,
            timestamp=record.timestamp,
            decision=record.decision,
            probability=record.probability,
            reasons=record.reasons,
            rules=record.rules,
            model_version=record.model_version,
            latency_ms=record.latency_ms,
            decided_at=record.decided_at,
            duplicate=duplicate,
            explanation=None if record.explanation is None else record.explanation.as_dict(),
        )


class ShadowOut(BaseModel):
    """The other model scored beside the one that decided: the challenger in shadow, or, for a
    customer the challenger decided (A/B), the champion. Its decision did not act."""

    version: str
    probability: float | None
    decision: str | None


class StoredDecisionOut(DecisionOut):
    """A stored decision as reviewers read it: the answer, and the model scored beside it."""

    shadow: ShadowOut | None = Field(
        None, description="the other model's probability and decision, when a challenger was configured"
    )
    rules_version: str | None = Field(
        None,
        description="the rules version applied: a saved version's number, or a rules file's short hash; "
        "null for decisions stored before versions were recorded",
    )
    aggregates: dict[str, float | None] | None = Field(
        None,
        description="the runtime aggregates the rules version declared, as its rules read them for this "
        "transaction (docs/rules.md); null when the version declared none",
    )

    @classmethod
    def from_record(cls, record: DecisionRecord, *, duplicate: bool = False) -> StoredDecisionOut:
        out = cls.model_validate(DecisionOut.from_record(record, duplicate=duplicate), from_attributes=True)
        out.rules_version = record.rules_version
        out.aggregates = None if record.aggregates is None else dict(record.aggregates)
        if record.shadow_version is not None:
            out.shadow = ShadowOut(
                version=record.shadow_version,
                probability=record.shadow_probability,
                decision=record.shadow_decision,
            )
        return out


class AcceptedOut(BaseModel):
    """Which ids were queued for a decision, and which were already known (or repeated) and ignored."""

    accepted: list[str]
    duplicates: list[str]
    decisions: list[DecisionOut] | None = Field(
        None,
        description="with ?wait=: every transaction's decision, by the worker or, past the budget, the API",
    )
    decided_by_api: list[str] | None = Field(
        None, description="with ?wait=: ids the API scored itself because the budget ran out"
    )


class ConflictOut(BaseModel):
    """409: transactions sent under ids already received with a different body."""

    detail: str = Field(description="which ids, and that an id names one transaction")
    transaction_ids: list[str] = Field(description="the ids already received with a different body")


CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ConflictOut,
        "description": "an id already received with a different body (another amount, customer, ...): "
        "an id names one transaction; nothing of the request was stored",
    }
}


class HoldOut(BaseModel):
    """A payment decided HOLD: waiting for a case's verdict (or the timeout's default), or how it ended."""

    transaction_id: str
    customer_id: str
    amount: float
    held_at: datetime = Field(description="when it was decided HOLD")
    status: Literal["pending", "released", "rejected"] = Field(
        description="pending: waiting; released: APPROVE after all; rejected: BLOCK after all"
    )
    outcome: Literal["APPROVE", "BLOCK"] | None = Field(description="the final outcome, once resolved")
    resolution: Literal["verdict", "timeout"] | None = Field(
        description="what resolved it: the verdict of its case, or FRAUD_HOLD_TIMEOUT_SECONDS passing"
    )
    resolved_at: datetime | None
    resolved_by: str | None = Field(description="the analyst whose verdict resolved it, or 'timeout'")
    case_id: int | None = Field(description="the case its transaction is in, once grouped")
    waited_seconds: float = Field(description="how long it waited, or has waited so far")
    times_out_at: datetime | None = Field(
        description="while pending: when FRAUD_HOLD_DEFAULT applies if no verdict comes first"
    )

    @classmethod
    def of(cls, hold: Hold, timeout_seconds: float) -> HoldOut:
        """``hold`` as the API shows it, with a pending hold's wait so far and its timeout time."""
        pending = hold.status == PENDING
        waited = hold.waited_seconds
        if waited is None:
            waited = max((datetime.now(UTC) - hold.held_at).total_seconds(), 0.0)
        return cls(
            **{k: v for k, v in vars(hold).items() if k in cls.model_fields},
            waited_seconds=round(waited, 3),
            times_out_at=hold.held_at + timedelta(seconds=timeout_seconds) if pending else None,
        )


class ChallengeOut(BaseModel):
    """The result of a CHALLENGE decision's step-up authentication, as posted back."""

    transaction_id: str
    result: Literal["passed", "failed", "abandoned"]
    completed_at: datetime = Field(description="when the customer finished: the label's label_time")
    answered_at: datetime = Field(description="when the result was posted")
    answered_by: str = Field(description="the posting key's name")
    is_fraud: bool | None = Field(
        description="the label the result makes (source 'challenge'): failed is fraud, passed legitimate; "
        "null for abandoned, which makes none"
    )

    @classmethod
    def of(cls, challenge: Challenge) -> ChallengeOut:
        return cls(**vars(challenge), is_fraud=IS_FRAUD[challenge.result])


class TransactionStatusOut(BaseModel):
    transaction_id: str
    status: Literal["queued", "decided", "dead"]
    decision: StoredDecisionOut | None = None
    hold: HoldOut | None = Field(
        None, description="for a HOLD decision: whether the payment still waits, and how it ended"
    )
    challenge: ChallengeOut | None = Field(
        None, description="for a CHALLENGE decision: its result, once posted back"
    )


class DecisionPage(BaseModel):
    """One page of decisions, newest first; pass ``next_cursor`` back as ``cursor`` for the next."""

    items: list[StoredDecisionOut]
    next_cursor: str | None = None


class StatsOut(BaseModel):
    since: datetime
    window_s: float
    total: int
    by_decision: dict[str, int]
    flagged_rate: float = Field(description="share of decisions other than APPROVE")
    latency_ms: dict[str, float | None] = Field(
        description=f"p50/p95/p99 of total scoring latency, newest {LATENCY_SAMPLE:,} decisions in the window"
    )
    throughput_per_s: float = Field(
        description="decisions per second, averaged from the window's first decision on (at least a second)"
    )
    recent_throughput_per_s: float = Field(
        description="decisions per second over the window's last recent_s seconds: the rate flowing now"
    )
    recent_s: float = Field(
        description=f"seconds the recent rate covers: {RECENT_SECONDS:g}, or the window if shorter"
    )
    labelled_fraud: int = Field(description="fraud labels received in the window")
    queue_lag: int = Field(description="accepted transactions not yet decided")
    model_version: str


class LabelOut(BaseModel):
    """A source's current verdict on a transaction."""

    transaction_id: str
    is_fraud: bool
    label_time: datetime
    source: str
    received_at: datetime


class LabelsOut(BaseModel):
    """What a batch of labels changed; each label counts under one of the three."""

    accepted: int = Field(description="first verdicts of their (transaction, source)")
    superseded: int = Field(
        description="changed verdicts: each replaced its source's earlier one (kept in the label history)"
    )
    ignored: int = Field(
        description="the source's current verdict sent again, or a different one with an older label_time"
    )


class SupersededLabelOut(LabelOut):
    """A verdict its source later changed, as it was."""

    superseded_at: datetime


class TransactionLabelsOut(BaseModel):
    """A transaction's labels: each source's current verdict, the verdict they add up to, and the history."""

    transaction_id: str
    is_fraud: bool | None = Field(
        description="fraud when any source's current verdict says fraud (a chargeback outranks "
        "'legitimate'), legitimate when every one says so; null without labels"
    )
    labels: list[LabelOut] = Field(description="each source's current verdict, oldest label_time first")
    history: list[SupersededLabelOut] = Field(description="verdicts their sources changed, oldest first")


class CustomerOut(BaseModel):
    """A customer's risk profile: feature values as of now, recent decisions and labels."""

    customer_id: str
    as_of: datetime
    features: dict[str, float | None]
    decisions: list[StoredDecisionOut]
    labels: list[LabelOut]


class SimulationIn(BaseModel):
    """Start or stop streaming simulated traffic into ``POST /v1/transactions``' outbox."""

    model_config = ConfigDict(strict=True)  # JSON types as the schema says: no "7" or true for 7

    action: Literal["start", "stop"]
    source: str = Field("generator", min_length=1, max_length=64, description="'generator' or a dataset")
    rate: float = Field(100.0, gt=0, le=10_000, description="transactions per second")
    limit: int | None = Field(None, ge=1, le=10_000_000, description="send at most this many")
    duration: float | None = Field(None, gt=0, le=86_400, description="stop after this many seconds")
    seed: int = Field(7, ge=0, le=2**32 - 1)
    customers: int = Field(500, ge=1, le=100_000)
    days: float = Field(7.0, gt=0, le=90)


class SimulationOut(BaseModel):
    running: bool
    source: str | None = None
    name: str | None = None
    sent: int | None = None
    total: int | None = None
    errors: int | None = None
    last_error: str | None = None
    target_rate: float | None = None
    actual_rate: float | None = None
    elapsed_s: float | None = None


class CheckOut(BaseModel):
    ok: bool
    detail: str | None = Field(
        None,
        description="what answered and its version, or why it failed; with an API key only, if keys are set",
    )


class ReadyOut(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, CheckOut]


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class BaselineOut(BaseModel):
    """A rule's hits in the backtest of its rules version: its expected hit rate."""

    hits: int
    decisions: int = Field(description="the stored decisions backtested")
    rate: float | None = Field(
        description="the expected rate: hits (at least 1) / decisions; null when not usable (see note)"
    )
    period_start: datetime | None = Field(description="the backtest's event times, from")
    period_end: datetime | None = Field(description="to, exclusive")
    computed_at: datetime
    computed_by: str = Field(description="the key's name that saved or backtested the version")
    note: str | None = Field(description="why the figures cannot serve as the rule's expected rate, if so")

    @classmethod
    def of(cls, baseline: Baseline) -> BaselineOut:
        values = {k: v for k, v in baseline.__dict__.items() if k in cls.model_fields}
        return cls(**values, rate=expected_rate(baseline))


class GuardOut(BaseModel):
    """A rule the guard moved to shadow (in force while ``released_at`` is null)."""

    id: int
    rule: str
    rules_version: str = Field(description="the rules version in use when it tripped")
    tripped_at: datetime
    hits: int = Field(description="its hits in the window when it tripped")
    decisions: int = Field(description="the window's decisions it was counted over")
    expected_hits: int
    expected_decisions: int
    multiple: float = Field(description="FRAUD_RULE_GUARD_MULTIPLE when it tripped")
    released_at: datetime | None = Field(description="when an admin re-enabled the rule")
    released_by: str | None
    release_reason: str | None

    @classmethod
    def of(cls, guard: Guard) -> GuardOut:
        return cls(**guard.__dict__)


class RuleGuardOut(BaseModel):
    name: str
    action: str
    state: str = Field(description=f"one of {', '.join(STATES)}")
    says: str = Field(description="the state in words: why, and the figures")
    hits: int = Field(description="its hits in the window, since it was last re-enabled")
    decisions: int = Field(description="the window's decisions it is counted over")
    rate: float | None = Field(description="hits / decisions; null without decisions")
    expected_rate: float | None = Field(description="from its baseline; null without a usable one")
    baseline: BaselineOut | None = Field(description="null when its rules version was never backtested")


class GuardStatusOut(BaseModel):
    """The rule guard's view of the rules in use, now."""

    enabled: bool = Field(description="FRAUD_RULE_GUARD: whether it trips rules (it always reports)")
    multiple: float = Field(description="FRAUD_RULE_GUARD_MULTIPLE")
    min_hits: int = Field(description="FRAUD_RULE_GUARD_MIN_HITS")
    window: int = Field(description="FRAUD_RULE_GUARD_WINDOW: the newest stored decisions counted")
    exempt: list[str] = Field(description="FRAUD_RULE_GUARD_EXEMPT")
    rules_version: str = Field(description="the rules version in use")
    decisions: int = Field(description="of the window's decisions, those made under this version")
    rules: list[RuleGuardOut] = Field(description="per rule of the version, in its order")
    in_force: list[GuardOut] = Field(description="every rule moved to shadow now, of this version or not")
    last_error: str | None = Field(description="why this server's last check failed, if it did")

    @classmethod
    def of(cls, status: GuardStatus, settings: Settings, last_error: str | None = None) -> GuardStatusOut:
        """The guard's ``status`` under ``settings``' limits; ``last_error`` is a server's own."""
        limits = guard_limits(settings)
        rules = [
            RuleGuardOut(
                name=v.rule,
                action=v.action,
                state=v.state,
                says=v.says,
                hits=v.live.hits,
                decisions=v.live.decisions,
                rate=v.live.rate,
                expected_rate=v.expected_rate,
                baseline=BaselineOut.of(v.expected) if isinstance(v.expected, Baseline) else None,
            )
            for v in status.verdicts
        ]
        return cls(
            enabled=settings.rule_guard,
            multiple=limits.multiple,
            min_hits=limits.min_hits,
            window=limits.window,
            exempt=sorted(limits.exempt),
            rules_version=status.rules_version,
            decisions=status.decisions,
            rules=rules,
            in_force=[GuardOut.of(g) for g in status.in_force],
            last_error=last_error,
        )
