"""Cases for analysts: ``cases``, the decisions each groups (``case_transactions``), ``case_notes``,
the ``audit_log`` of every analyst action, and ``case_cursor``, how far the stored FLAG and BLOCK
decisions have been grouped into cases.

At most one case per grouping value is not closed: a partial unique index says so to both databases,
so two processes grouping at once cannot open two.

Hand-written to match ``fraudstream.storage.tables``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOT_CLOSED = "status != 'closed'"


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("group_key", sa.String(32), nullable=False),
        sa.Column("group_value", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(128), nullable=True),
        sa.Column("expected_loss", sa.Float(), nullable=False),
        sa.Column("transactions", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("max_probability", sa.Float(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
    )
    op.create_index("ix_cases_status_expected_loss", "cases", ["status", "expected_loss"])
    op.create_index(
        "uq_cases_group_key_group_value_open",
        "cases",
        ["group_key", "group_value"],
        unique=True,
        sqlite_where=sa.text(NOT_CLOSED),
        postgresql_where=sa.text(NOT_CLOSED),
    )
    op.create_table(
        "case_transactions",
        sa.Column("transaction_id", sa.String(128), nullable=False),
        sa.Column("case_id", _id(), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_case_transactions"),
    )
    op.create_index("ix_case_transactions_case_id", "case_transactions", ["case_id"])
    op.create_table(
        "case_notes",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("case_id", _id(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_case_notes"),
    )
    op.create_index("ix_case_notes_case_id", "case_notes", ["case_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(160), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_subject_id", "audit_log", ["subject", "id"])
    op.create_table(
        "case_cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_case_cursor"),
    )


def downgrade() -> None:
    op.drop_table("case_cursor")
    op.drop_table("audit_log")
    op.drop_table("case_notes")
    op.drop_table("case_transactions")
    op.drop_table("cases")
