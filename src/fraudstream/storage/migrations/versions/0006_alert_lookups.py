"""Indexes for the two lookups the alert detector makes after every batch of decisions.

- FLAGs by customer and event time, for bursts: a partial index of the FLAG decisions only, so it costs
  the writes of the other decisions nothing. The customer index is ordered by ``decided_at``, so the
  question read every decision the customers ever had.
- Alerts by entity and creation time, for de-duplication: the creation-time index alone read every
  alert of the de-duplication window (ten minutes by default) on each call.

Without them the API's alert thread grew slower as the tables grew.

Building them reads the whole decisions table, and PostgreSQL holds writes to a table while an index is
built on it: migrate a large database at a quiet time.

Hand-written to match ``fraudstream.storage.tables``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FLAG_ONLY = "decision = 'FLAG'"


def upgrade() -> None:
    op.create_index(
        "ix_decisions_flag_customer_id_timestamp",
        "decisions",
        ["customer_id", "timestamp", "transaction_id"],
        sqlite_where=sa.text(_FLAG_ONLY),
        postgresql_where=sa.text(_FLAG_ONLY),
    )
    op.create_index("ix_alerts_entity_created_at", "alerts", ["entity", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_entity_created_at", table_name="alerts")
    op.drop_index("ix_decisions_flag_customer_id_timestamp", table_name="decisions")
