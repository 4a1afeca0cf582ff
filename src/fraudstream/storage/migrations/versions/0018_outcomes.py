"""Outcomes beyond BLOCK: ``holds`` (held payments and how they were resolved), ``hold_waits`` (how long
resolved holds waited, per resolution, outcome and bucket), ``challenges`` (step-up results posted
back), and decision columns wide enough for ``CHALLENGE``.

The decision columns of ``decisions``, ``decision_minutes`` and ``case_transactions`` go from 8 to 16
characters. PostgreSQL widens a ``varchar`` in place, without rewriting the table; SQLite, which has no
ALTER COLUMN, copies each table (batch mode), so migrate a large SQLite database at a quiet time. The
partial index of FLAG decisions is dropped around the copy and built again, so it keeps its condition.

Hand-written to match ``fraudstream.storage.tables``.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FLAG_ONLY = "decision = 'FLAG'"
_FLAG_INDEX = "ix_decisions_flag_customer_id_timestamp"
_WIDENED = {
    "decisions": ("decision", "shadow_decision"),
    "decision_minutes": ("decision",),
    "case_transactions": ("decision",),
}


def _widen(old: int, new: int) -> None:
    op.drop_index(_FLAG_INDEX, table_name="decisions")
    for table, columns in _WIDENED.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(
                    column,
                    existing_type=sa.String(old),
                    type_=sa.String(new),
                    existing_nullable=column == "shadow_decision",
                )
    op.create_index(
        _FLAG_INDEX,
        "decisions",
        ["customer_id", "timestamp", "transaction_id"],
        sqlite_where=sa.text(_FLAG_ONLY),
        postgresql_where=sa.text(_FLAG_ONLY),
    )


def upgrade() -> None:
    _widen(8, 16)
    op.create_table(
        "holds",
        sa.Column("transaction_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("resolution", sa.String(16), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_holds"),
    )
    op.create_index("ix_holds_status_held_at", "holds", ["status", "held_at"])
    op.create_table(
        "hold_waits",
        sa.Column("resolution", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("bucket", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holds", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("resolution", "outcome", "bucket", name="pk_hold_waits"),
    )
    op.create_table(
        "challenges",
        sa.Column("transaction_id", sa.String(128), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_challenges"),
    )


def downgrade() -> None:
    """Back to 0017; a decision stored as CHALLENGE (9 characters) stops PostgreSQL's narrowing."""
    op.drop_table("challenges")
    op.drop_table("hold_waits")
    op.drop_index("ix_holds_status_held_at", table_name="holds")
    op.drop_table("holds")
    _widen(16, 8)
