"""Feature vectors as packed float64 with their names stored once; keyset-order decision indexes.

``decisions.features`` (a JSON object per row, the hundred names repeated in every decision) becomes
``feature_set`` (a digest naming a row of the new ``feature_sets`` table, which holds the names once)
and ``feature_values`` (the values, little-endian float64, NaN where missing). Existing decisions are
converted here. The three decision indexes gain ``transaction_id`` so that a page in the API's
``(decided_at, transaction_id)`` order is read straight off one index.

Self-contained on purpose: a migration must keep meaning what it meant when it was written.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_INDEXES = {
    "ix_decisions_decided_at": ["decided_at"],
    "ix_decisions_customer_id_decided_at": ["customer_id", "decided_at"],
    "ix_decisions_decision_decided_at": ["decision", "decided_at"],
}
_CHUNK = 2000


def _new_indexes() -> dict[str, list[str]]:
    return {f"{name}_transaction_id": [*columns, "transaction_id"] for name, columns in _OLD_INDEXES.items()}


def _set_id(names: list[str]) -> str:
    return hashlib.sha256(json.dumps(names, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()[
        :32
    ]


def _pack(values: list[Any]) -> bytes:
    return struct.pack(f"<{len(values)}d", *(math.nan if v is None else float(v) for v in values))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _convert(conn: sa.Connection) -> None:
    """Fill the new columns from ``features``, a chunk of rows at a time."""
    decisions = sa.table(
        "decisions",
        sa.column("transaction_id", sa.String()),
        sa.column("features", sa.JSON()),
        sa.column("feature_set", sa.String()),
        sa.column("feature_values", sa.LargeBinary()),
    )
    sets = sa.table("feature_sets", sa.column("id", sa.String()), sa.column("names", sa.JSON()))
    known: set[str] = set()
    after = ""
    while True:
        rows = conn.execute(
            sa.select(decisions.c.transaction_id, decisions.c.features)
            .where(decisions.c.transaction_id > after)
            .order_by(decisions.c.transaction_id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        updates = []
        for transaction_id, features in rows:
            vector = _json(features) or {}
            names = list(vector)
            set_id = _set_id(names)
            if set_id not in known:
                conn.execute(sa.insert(sets).values(id=set_id, names=names))
                known.add(set_id)
            updates.append({"tid": transaction_id, "fs": set_id, "fv": _pack(list(vector.values()))})
        conn.execute(
            decisions.update()
            .where(decisions.c.transaction_id == sa.bindparam("tid"))
            .values(feature_set=sa.bindparam("fs"), feature_values=sa.bindparam("fv")),
            updates,
        )
        after = rows[-1][0]


def upgrade() -> None:
    op.create_table(
        "feature_sets",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feature_sets"),
    )
    for name in _OLD_INDEXES:
        op.drop_index(name, table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("feature_set", sa.String(32), nullable=True))
        batch.add_column(sa.Column("feature_values", sa.LargeBinary(), nullable=True))
    _convert(op.get_bind())
    with op.batch_alter_table("decisions") as batch:
        batch.alter_column("feature_set", existing_type=sa.String(32), nullable=False)
        batch.alter_column("feature_values", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("features")
    for name, columns in _new_indexes().items():
        op.create_index(name, "decisions", columns)


def downgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("features", sa.JSON(), nullable=True))
    names = {row[0]: _json(row[1]) for row in conn.execute(sa.text("SELECT id, names FROM feature_sets"))}
    rows = conn.execute(sa.text("SELECT transaction_id, feature_set, feature_values FROM decisions")).all()
    decisions = sa.table(
        "decisions", sa.column("transaction_id", sa.String()), sa.column("features", sa.JSON())
    )
    for start in range(0, len(rows), _CHUNK):
        updates = []
        for transaction_id, set_id, packed in rows[start : start + _CHUNK]:
            values = struct.unpack(f"<{len(packed) // 8}d", bytes(packed))
            vector = {
                n: (v if math.isfinite(v) else None) for n, v in zip(names[set_id], values, strict=True)
            }
            updates.append({"tid": transaction_id, "f": vector})
        conn.execute(
            decisions.update()
            .where(decisions.c.transaction_id == sa.bindparam("tid"))
            .values(features=sa.bindparam("f")),
            updates,
        )
    for name in _new_indexes():
        op.drop_index(name, table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        batch.alter_column("features", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("feature_values")
        batch.drop_column("feature_set")
    for name, columns in _OLD_INDEXES.items():
        op.create_index(name, "decisions", columns)
    op.drop_table("feature_sets")
