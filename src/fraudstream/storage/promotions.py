"""The record of model promotions: each move of the registry's ``champion`` alias, kept in our database.

The model registry (MLflow) holds the aliases themselves and tags on its versions; this table is the audit
trail beside the decisions, so "which model decided this, and who put it there on what evidence" is
answered from one database, even when the registry is gone or was rewritten.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from fraudstream.storage import tables
from fraudstream.storage.database import Database

_p = tables.model_promotions

#: The actions a promotion record names.
ACTIONS = ("register", "promote", "rollback")


@dataclass(frozen=True)
class Promotion:
    """One move of ``champion``: ``from_version`` is ``None`` for the first champion of a model."""

    model_name: str
    action: str
    to_version: str
    promoted_by: str
    from_version: str | None = None
    comparison: dict[str, Any] | None = None
    promoted_at: datetime | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the time as ISO 8601 UTC."""
        out = dict(self.__dict__)
        out["promoted_at"] = self.promoted_at.isoformat() if self.promoted_at else None
        return out


class PromotionRepository:
    """Recording promotions and reading them back, newest first."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, promotion: Promotion) -> Promotion:
        """Record ``promotion`` (its time now, unless given); the stored record, with its id and time.

        Raises ``ValueError`` naming the field for an unknown action or empty versions or author."""
        if promotion.action not in ACTIONS:
            raise ValueError(f"action: expected one of {', '.join(ACTIONS)}, got {promotion.action!r}")
        for field in ("model_name", "to_version", "promoted_by"):
            if not str(getattr(promotion, field) or "").strip():
                raise ValueError(f"{field}: must not be empty")
        when = promotion.promoted_at or datetime.now(UTC)
        values = {k: v for k, v in promotion.__dict__.items() if k != "id"} | {"promoted_at": when}
        values["promoted_by"] = str(values["promoted_by"])[:160]
        with self._db.write() as conn:
            new_id = conn.execute(insert(_p).values(**values).returning(_p.c.id)).scalar_one()
        return Promotion(**(values | {"id": int(new_id), "promoted_at": when.astimezone(UTC)}))

    def list(self, model_name: str | None = None, limit: int = 50) -> builtins.list[Promotion]:
        """Promotions newest first (of ``model_name`` alone when given), at most ``limit``."""
        query = select(_p).order_by(_p.c.promoted_at.desc(), _p.c.id.desc()).limit(limit)
        if model_name is not None:
            query = query.where(_p.c.model_name == model_name)
        with self._db.read() as conn:
            return [Promotion(**dict(row)) for row in conn.execute(query).mappings()]
