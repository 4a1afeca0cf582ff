"""``decisions.explainer`` and ``decisions.explanation``: each decision's explanation, as the picked
features' columns and contributions; ``explainers``: the words that read them, once per explaining
model.

Hand-written to match ``fraudstream.storage.tables``.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "explainers",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("words", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_explainers"),
    )
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("explainer", sa.String(32), nullable=True))
        batch.add_column(sa.Column("explanation", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("explanation")
        batch.drop_column("explainer")
    op.drop_table("explainers")
