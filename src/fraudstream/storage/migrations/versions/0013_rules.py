"""``rule_versions``: the analysts' rules kept in the database, one row per saved version; and
``decisions.rules_version``: the rules version a decision used (null on rows stored before it, and
where the rules came from a file, whose short hash it then holds).

Versions count up from 1 and are never changed or deleted: the newest is the one in use, and an older
one is put back by saving its text again as a new version. The version is the primary key, so two
concurrent saves cannot both take the same number.

Hand-written to match ``fraudstream.storage.tables``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rule_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_rule_versions"),
    )
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("rules_version", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("rules_version")
    op.drop_table("rule_versions")
