"""``model_promotions``: every change of the serving model's alias in the model registry.

Who moved ``champion`` (promote, rollback, or the first registered version), when, from which registry
version to which, and the comparison it was based on: the audit trail of what decided when.

Hand-written to match ``fraudstream.storage.tables``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "model_promotions",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_version", sa.String(32), nullable=True),
        sa.Column("to_version", sa.String(32), nullable=False),
        sa.Column("promoted_by", sa.String(160), nullable=False),
        sa.Column("comparison", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_model_promotions"),
    )
    op.create_index(
        "ix_model_promotions_model_name_promoted_at", "model_promotions", ["model_name", "promoted_at"]
    )


def downgrade() -> None:
    op.drop_table("model_promotions")
