"""Decisions per minute: the counts the dashboard's charts read, filled from the decisions already stored.

Migrate with the writers stopped (API and workers): decisions that code from before this revision
stores afterwards are not counted.

Hand-written to match ``fraudstream.storage.tables.decision_minutes``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same minute, bin and latency as fraudstream.storage.rollup computes when decisions are stored.
_FILL = {
    "sqlite": """
        INSERT INTO decision_minutes
        SELECT CAST(strftime('%s', decided_at) AS INTEGER) / 60, decision,
               max(min(CAST(probability * 20 AS INTEGER), 19), 0), count(*),
               count(json_extract(latency_ms, '$.total')),
               coalesce(sum(json_extract(latency_ms, '$.total')), 0.0),
               max(json_extract(latency_ms, '$.total'))
        FROM decisions GROUP BY 1, 2, 3
    """,
    "postgresql": """
        INSERT INTO decision_minutes
        SELECT CAST(floor(extract(epoch FROM decided_at) / 60) AS INTEGER), decision,
               CAST(greatest(least(floor(probability * 20), 19), 0) AS INTEGER), count(*),
               count(CAST(latency_ms ->> 'total' AS double precision)),
               coalesce(sum(CAST(latency_ms ->> 'total' AS double precision)), 0.0),
               max(CAST(latency_ms ->> 'total' AS double precision))
        FROM decisions GROUP BY 1, 2, 3
    """,
}


def upgrade() -> None:
    op.create_table(
        "decision_minutes",
        sa.Column("minute", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("score_bin", sa.Integer(), nullable=False),
        sa.Column("decisions", sa.Integer(), nullable=False),
        sa.Column("latency_count", sa.Integer(), nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("latency_max", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("minute", "decision", "score_bin"),
    )
    op.execute(_FILL[op.get_bind().dialect.name])


def downgrade() -> None:
    op.drop_table("decision_minutes")
