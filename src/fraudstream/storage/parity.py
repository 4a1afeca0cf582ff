"""The record of online/offline feature parity checks, so that a serving process can report the last.

``fraudstream parity`` computes features again offline, which is work for a batch job, not for a
process that scores; it stores what it found here, and every API process reports the newest check on
``/metrics`` (:mod:`fraudstream.monitoring.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select

from fraudstream.storage import tables
from fraudstream.storage.database import Database

_p = tables.parity_checks


@dataclass(frozen=True)
class ParityCheck:
    """One check: of the decisions on the transactions of ``[period_start, period_end)`` made by
    ``model_version``'s features, how many were ``compared`` and how many ``differing``, in all and
    per feature group."""

    checked_at: datetime
    period_start: datetime
    period_end: datetime
    model_version: str
    compared: int
    differing: int
    groups: dict[str, int]


class ParityRepository:
    """Recording parity checks and reading the newest."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, check: ParityCheck) -> None:
        with self._db.write() as conn:
            conn.execute(insert(_p).values(**check.__dict__))

    def latest(self) -> ParityCheck | None:
        """The newest check, or ``None`` before the first."""
        query = select(_p).order_by(_p.c.checked_at.desc(), _p.c.id.desc()).limit(1)
        with self._db.read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        values = {k: v for k, v in row.items() if k != "id"}
        for name in ("checked_at", "period_start", "period_end"):
            values[name] = values[name].astimezone(UTC)
        return ParityCheck(**values)
