"""Indexes for entity search and links: transactions by device, by IP address and by merchant, each
with its time, so "every transaction of this device" and "the customers sharing it within the
retention" are read off an index instead of the whole table.

Hand-written to match ``fraudstream.storage.tables``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = ("device_id", "ip_address", "merchant_id")


def upgrade() -> None:
    for field in FIELDS:
        op.create_index(f"ix_transactions_{field}_timestamp", "transactions", [field, "timestamp"])


def downgrade() -> None:
    for field in FIELDS:
        op.drop_index(f"ix_transactions_{field}_timestamp", "transactions")
