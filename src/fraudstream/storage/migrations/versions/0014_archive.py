"""``archive_watermarks``: how far each stream of the object-store archive (decisions with their
transactions, labels) has been written, and the batch being written.

One row per stream: ``done_at``/``done_key`` is the (time, id) key of the last row archived, ``batch``
the number of the next batch, and ``pending_at``/``pending_key`` the key the batch being written ends
at (null between batches). A batch's rows are fixed in this row before its objects are written, so a
batch rewritten after a crash holds the same rows under the same object names.

Hand-written to match ``fraudstream.storage.tables``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "archive_watermarks",
        sa.Column("stream", sa.String(32), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_key", sa.String(128), nullable=True),
        sa.Column("pending_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_key", sa.String(128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream", name="pk_archive_watermarks"),
    )


def downgrade() -> None:
    op.drop_table("archive_watermarks")
