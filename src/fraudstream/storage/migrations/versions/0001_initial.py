"""Initial schema: transactions, decisions, labels, alerts, dead letters and the embedded queue.

Hand-written to match ``fraudstream.storage.tables``; plain SQLAlchemy types only, so this file never
changes when the Python-side types do (``UTCDateTime`` stores a plain ``DateTime(timezone=True)``).

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "transactions",
        sa.Column("transaction_id", sa.String(128), nullable=False),
        _ts("received_at"),
        _ts("timestamp"),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("merchant_id", sa.String(128), nullable=True),
        sa.Column("device_id", sa.String(128), nullable=True),
        sa.Column("ip_address", sa.String(128), nullable=True),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_transactions"),
    )
    op.create_index("ix_transactions_timestamp", "transactions", ["timestamp"])
    op.create_index("ix_transactions_customer_id", "transactions", ["customer_id"])

    op.create_table(
        "decisions",
        sa.Column("transaction_id", sa.String(128), nullable=False),
        _ts("decided_at"),
        _ts("timestamp"),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("latency_ms", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id", name="pk_decisions"),
    )
    op.create_index("ix_decisions_decided_at", "decisions", ["decided_at"])
    op.create_index("ix_decisions_customer_id_decided_at", "decisions", ["customer_id", "decided_at"])
    op.create_index("ix_decisions_decision_decided_at", "decisions", ["decision", "decided_at"])

    op.create_table(
        "labels",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.String(128), nullable=False),
        sa.Column("is_fraud", sa.Boolean(), nullable=False),
        _ts("label_time"),
        sa.Column("source", sa.String(32), nullable=False),
        _ts("received_at"),
        sa.PrimaryKeyConstraint("id", name="pk_labels"),
        sa.UniqueConstraint("transaction_id", "source", name="uq_labels_transaction_id_source"),
    )
    op.create_index("ix_labels_transaction_id", "labels", ["transaction_id"])
    op.create_index("ix_labels_received_at", "labels", ["received_at"])

    op.create_table(
        "alerts",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        _ts("created_at"),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(160), nullable=False),
        sa.Column("transaction_id", sa.String(128), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_created_at", "alerts", ["created_at"])

    op.create_table(
        "dead_letters",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        _ts("created_at"),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )

    op.create_table(
        "queue",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("key", sa.String(160), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        _ts("created_at"),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        _ts("claimed_at", nullable=True),
        _ts("acked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_queue"),
    )
    op.create_index("ix_queue_topic_acked_at_id", "queue", ["topic", "acked_at", "id"])


def downgrade() -> None:
    for table in ("queue", "dead_letters", "alerts", "labels", "decisions", "transactions"):
        op.drop_table(table)
