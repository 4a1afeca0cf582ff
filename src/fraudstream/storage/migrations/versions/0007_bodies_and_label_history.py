"""One body per transaction id, and the labels' audit trail.

- ``transactions.body_hash``: a digest of the canonical body, so that a different body sent under an id
  already known is refused instead of being stored beside a decision made for the other one. Rows stored
  before this revision keep NULL there; their digest is computed from the stored payload when needed.
- ``label_history``: each verdict a source replaced by a later one (``labels`` keeps the current one).

Hand-written to match ``fraudstream.storage.tables``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("body_hash", sa.String(32), nullable=True))
    op.create_table(
        "label_history",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("label_id", _id(), nullable=False),
        sa.Column("transaction_id", sa.String(128), nullable=False),
        sa.Column("is_fraud", sa.Boolean(), nullable=False),
        sa.Column("label_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_label_history"),
    )
    op.create_index("ix_label_history_transaction_id", "label_history", ["transaction_id"])


def downgrade() -> None:
    op.drop_table("label_history")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("body_hash")
