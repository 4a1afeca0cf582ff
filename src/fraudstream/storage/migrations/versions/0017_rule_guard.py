"""``rule_baselines`` and ``rule_guards``: each rule's backtested hit rate per rules version, and the
rules the rule guard moved to shadow (a released guard keeps its row with ``released_at``, ``released_by``
and the reason).

Hand-written to match ``fraudstream.storage.tables``.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_FORCE = "released_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "rule_baselines",
        sa.Column("rules_version", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("decisions", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("computed_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("rules_version", "rule", name="pk_rule_baselines"),
    )
    op.create_table(
        "rule_guards",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("rules_version", sa.String(64), nullable=False),
        sa.Column("tripped_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("decisions", sa.Integer(), nullable=False),
        sa.Column("expected_hits", sa.Integer(), nullable=False),
        sa.Column("expected_decisions", sa.Integer(), nullable=False),
        sa.Column("multiple", sa.Float(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(128), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rule_guards"),
    )
    op.create_index(
        "uq_rule_guards_rule_in_force",
        "rule_guards",
        ["rule"],
        unique=True,
        sqlite_where=sa.text(IN_FORCE),
        postgresql_where=sa.text(IN_FORCE),
    )


def downgrade() -> None:
    op.drop_index("uq_rule_guards_rule_in_force", table_name="rule_guards")
    op.drop_table("rule_guards")
    op.drop_table("rule_baselines")
