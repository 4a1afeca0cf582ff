"""``/v1/challenges``: the result of a CHALLENGE decision's step-up authentication, posted back.

A CHALLENGE asks the customer to prove who they are (3-D Secure, a one-time code) before the payment
goes through. The client runs the challenge, then posts what came of it: ``passed``, ``failed`` or
``abandoned``. The result is a label source (``challenge``), through the same path as
``POST /v1/labels``: failed is a fraud label and passed a legitimate one, with ``completed_at`` (when the
customer finished) as the label time, so the fraud features see a failed challenge from then on.
Abandoned makes no label: a customer who gives up may be either. A passed challenge does not clear a
transaction for good: where sources disagree fraud wins, so a chargeback later still makes it fraud.

A transaction has one result: the same result posted again is answered as the first (a client may
retry) and its label applied again, which changes nothing; another result is a 409. An unknown
transaction is a 404, and one that was not decided CHALLENGE a 409.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from fraudstream.api.deps import CallerDep, DeciderDep, StoreDep
from fraudstream.api.routes.labels import feed_state
from fraudstream.api.schemas import ChallengeOut
from fraudstream.events.transaction import ID_PATTERN, MAX_ID_LENGTH, Label, UTCTime
from fraudstream.pipeline.decider import Decider
from fraudstream.storage.challenges import IS_FRAUD, LABEL_SOURCE, Challenge, ChallengeError
from fraudstream.storage.store import Store

router = APIRouter(prefix="/v1/challenges", tags=["outcomes"])

TransactionId = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description="the challenged payment"),
]


class ChallengeIn(BaseModel):
    """What came of the step-up authentication."""

    model_config = ConfigDict(extra="forbid")

    result: Literal["passed", "failed", "abandoned"] = Field(
        description="passed: the customer proved who they are (a legitimate label); failed: they could "
        "not (a fraud label); abandoned: they gave up (no label)"
    )
    completed_at: UTCTime | None = Field(
        None,
        description="when the customer finished the challenge, not before the transaction's own time: the "
        "label's label_time; default: now (or the transaction's own time, when that is later)",
    )


def _completed_at(timestamp: datetime, given: datetime | None) -> datetime:
    """``given``, or now (the transaction's own ``timestamp`` when that is later); a 422 naming
    ``completed_at`` when ``given`` is before ``timestamp``."""
    if given is None:
        return max(datetime.now(UTC), timestamp)
    completed_at = given
    if completed_at < timestamp:
        raise RequestValidationError(
            [
                {
                    "type": "completed_before_transaction",
                    "loc": ("body", "completed_at"),
                    "msg": f"completed_at is before the transaction's timestamp ({timestamp.isoformat()})",
                    "input": completed_at.isoformat(),
                }
            ]
        )
    return completed_at


def record_challenge(
    store: Store, decider: Decider, transaction_id: str, result: str, completed_at: datetime, by: str
) -> tuple[Challenge, bool]:
    """The one transition of a challenge: store its result (once) and apply the label it makes
    (fraud labels reach the feature state at once); the stored challenge and whether it is new.
    :class:`ChallengeError` when another result was stored first."""
    challenge, new = store.challenges.answer(transaction_id, result, completed_at, by)
    is_fraud = IS_FRAUD[challenge.result]
    if is_fraud is not None:  # applied on every post: a retry after a crash between the two writes
        label = Label(
            transaction_id=transaction_id,
            is_fraud=is_fraud,
            label_time=challenge.completed_at,
            source=LABEL_SOURCE,
        )
        changes = store.labels.apply([label])
        if changes.fraud:
            feed_state(decider, changes.fraud)
    return challenge, new


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no transaction with this id is known"},
    409: {"description": "the transaction was not decided CHALLENGE, or its challenge has another result"},
    422: {"description": "an invalid result, or completed_at before the transaction"},
}


@router.post("/{transaction_id}", response_model=ChallengeOut, responses=ERRORS)
def answer_challenge(
    transaction_id: TransactionId,
    body: ChallengeIn,
    store: StoreDep,
    decider: DeciderDep,
    caller: CallerDep,
) -> ChallengeOut:
    """Post the result of a CHALLENGE decision's step-up authentication; it becomes a label (source
    ``challenge``): failed is fraud, passed legitimate, abandoned none. Idempotent: the same result
    again is answered as the first. 404 for an unknown transaction; 409 for one not decided CHALLENGE,
    or already answered with another result."""
    decision = store.decisions.get(transaction_id)
    if decision is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown transaction {transaction_id!r}")
    if decision.decision != "CHALLENGE":
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"transaction_id: transaction {transaction_id!r} was decided {decision.decision}, not CHALLENGE: "
            "it has no challenge to answer",
        )
    completed_at = _completed_at(decision.timestamp, body.completed_at)
    try:
        challenge, _ = record_challenge(
            store, decider, transaction_id, body.result, completed_at, caller.name
        )
    except ChallengeError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    return ChallengeOut.of(challenge)
