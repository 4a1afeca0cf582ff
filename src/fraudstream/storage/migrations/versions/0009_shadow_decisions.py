"""``decisions.shadow_*``: the challenger scored in shadow beside the champion.

Its registry (or bundle) version, its probability and the decision it would have made, which did not
act; all null for decisions made without a challenger, so existing rows need no backfill.

Hand-written to match ``fraudstream.storage.tables``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("shadow_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("shadow_probability", sa.Float(), nullable=True))
        batch.add_column(sa.Column("shadow_decision", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("shadow_decision")
        batch.drop_column("shadow_probability")
        batch.drop_column("shadow_version")
