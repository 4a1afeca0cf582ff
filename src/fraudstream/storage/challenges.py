"""``ChallengeRepository``: the results of step-up challenges (3-D Secure, a one-time code) posted back
for CHALLENGE decisions.

A transaction has one result, the first posted: the same result again is answered with the stored one
(a client may retry), another one is refused. The label a result makes (failed: fraud, passed:
legitimate, abandoned: none) goes through the labels' own path (:mod:`._labels`, source
``challenge``); see ``POST /v1/challenges/{transaction_id}``. A result stored now emits the webhook
event ``challenge.result`` in the same transaction (see :mod:`.webhooks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from fraudstream.events.webhook import CHALLENGE_RESULT, WebhookEvent
from fraudstream.storage import tables
from fraudstream.storage.database import Database
from fraudstream.storage.webhooks import emit

_c = tables.challenges

PASSED, FAILED, ABANDONED = "passed", "failed", "abandoned"
RESULTS = (PASSED, FAILED, ABANDONED)
LABEL_SOURCE = "challenge"
#: What a result says of the transaction: failed is fraud, passed legitimate, abandoned nothing.
IS_FRAUD: dict[str, bool | None] = {FAILED: True, PASSED: False, ABANDONED: None}


class ChallengeError(ValueError):
    """A result that cannot be stored: another result was stored first (409)."""


@dataclass
class Challenge:
    """A challenge's result as stored: what, when the customer finished, when and by whom posted."""

    transaction_id: str
    result: str
    completed_at: datetime
    answered_at: datetime
    answered_by: str


class ChallengeRepository:
    """Storing and reading challenge results, one per transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, transaction_id: str) -> Challenge | None:
        """The result posted for a transaction, or ``None``."""
        with self._db.read() as conn:
            row = conn.execute(select(_c).where(_c.c.transaction_id == transaction_id)).mappings().first()
        return None if row is None else Challenge(**row)

    def answer(
        self, transaction_id: str, result: str, completed_at: datetime, answered_by: str
    ) -> tuple[Challenge, bool]:
        """Store ``result`` for ``transaction_id`` unless one is stored; the stored challenge and
        whether it was stored now. :class:`ChallengeError` when another result was stored first. The
        caller checks that the transaction was decided CHALLENGE."""
        if result not in RESULTS:
            raise ValueError(f"result: expected one of {', '.join(RESULTS)}, got {result!r}")
        mine = Challenge(transaction_id, result, completed_at, datetime.now(UTC), answered_by[:128])
        with self._db.write() as conn:
            new = bool(self._db.insert_ignore(conn, _c, [vars(mine)], "transaction_id"))
            if new:
                event = WebhookEvent(
                    CHALLENGE_RESULT, transaction_id, dict(vars(mine)), occurred=completed_at,
                    subject=transaction_id,
                )  # fmt: skip
                emit(conn, [event], now=mine.answered_at)
        stored = mine if new else self.get(transaction_id)
        if stored is None:  # a stored result is never deleted
            raise ChallengeError(f"the result of {transaction_id!r} vanished")
        if stored.result != result:
            raise ChallengeError(
                f"result: the challenge of transaction {transaction_id!r} was already answered "
                f"{stored.result!r} at {stored.answered_at.isoformat()}; a challenge has one result"
            )
        return stored, new


__all__ = [
    "ABANDONED",
    "FAILED",
    "IS_FRAUD",
    "LABEL_SOURCE",
    "PASSED",
    "RESULTS",
    "Challenge",
    "ChallengeError",
    "ChallengeRepository",
]
