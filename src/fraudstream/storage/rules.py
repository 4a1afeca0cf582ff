"""``RulesRepository``: the analysts' rules kept as numbered versions, and the stored decisions a rules
backtest replays, read back in column chunks.

Versions (table ``rule_versions``) count up from 1 and are never changed: the newest is the one in use.
Two concurrent saves cannot take the same number (it is the primary key): the loser tries the next one.

A backtest applies candidate rules to what was stored at decision time: each decision's feature
vector (logged with it, so nothing is recomputed and nothing can drift from what the live rules saw;
a candidate's own aggregates are computed from the stored bodies, see ``HistoryRepository.transactions``),
its transaction's body when one was stored (a replay stores decisions alone: their other fields read
as missing), the probability and decision made live, and the labels known now. Rows are chosen by
the transaction's event time, as retraining chooses them (:mod:`fraudstream.storage.history`).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from fraudstream.storage import tables
from fraudstream.storage.database import Database, loads
from fraudstream.storage.history import CHUNK_ROWS, _labels

_t = tables.transactions
_d = tables.decisions
_v = tables.rule_versions

#: Attempts at taking the next version number when other saves take it first.
SAVE_ATTEMPTS = 5


@dataclass(frozen=True)
class RuleVersion:
    """One saved version of the rules: its number, its YAML text, when and by whom it was saved."""

    version: int
    text: str
    created_at: datetime
    created_by: str


class RulesRepository:
    """Decisions with their logged features, bodies and known labels, for rules backtests."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def newest_version(self) -> int | None:
        """The number of the version in use, ``None`` when none was saved: one cheap indexed read, so
        running processes can poll it every few seconds."""
        with self._db.read() as conn:
            value = conn.execute(select(func.max(_v.c.version))).scalar()
        return None if value is None else int(value)

    def get(self, version: int | None = None) -> RuleVersion | None:
        """Version ``version``, or the newest one; ``None`` when there is no such version."""
        query = select(_v.c.version, _v.c.text, _v.c.created_at, _v.c.created_by)
        if version is None:
            query = query.order_by(_v.c.version.desc()).limit(1)
        else:
            query = query.where(_v.c.version == version)
        with self._db.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else RuleVersion(int(row[0]), row[1], row[2], row[3])

    def versions(self, limit: int = 20) -> builtins.list[RuleVersion]:
        """The newest ``limit`` versions, newest first."""
        query = (
            select(_v.c.version, _v.c.text, _v.c.created_at, _v.c.created_by)
            .order_by(_v.c.version.desc())
            .limit(limit)
        )
        with self._db.read() as conn:
            return [RuleVersion(int(r[0]), r[1], r[2], r[3]) for r in conn.execute(query)]

    def save(self, text: str, created_by: str) -> RuleVersion:
        """Store ``text`` (checked by the caller) as the next version, which is then the one in use."""
        for _ in range(SAVE_ATTEMPTS):
            version = (self.newest_version() or 0) + 1
            saved = self._insert(version, text, created_by)
            if saved is not None:
                return saved
        raise RuntimeError(f"could not save a rules version after {SAVE_ATTEMPTS} attempts: too many at once")

    def seed(self, text: str, created_by: str = "seed") -> RuleVersion | None:
        """Store ``text`` as version 1 when no version exists yet; ``None`` when one does (another process
        may have seeded at the same moment: the first one wins)."""
        if self.newest_version() is not None:
            return None
        return self._insert(1, text, created_by)

    def _insert(self, version: int, text: str, created_by: str) -> RuleVersion | None:
        row = RuleVersion(version, text, datetime.now(UTC), created_by)
        try:
            with self._db.write() as conn:
                conn.execute(insert(_v).values(**row.__dict__))
        except IntegrityError:
            return None
        return row

    def decided(
        self, start: datetime, end: datetime, *, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """Decisions on transactions of ``[start, end)`` in event-time order, ``chunk_rows`` at a time:
        ``transaction_id``, ``timestamp`` (UTC), ``customer_id``, ``amount``, ``decision`` and
        ``probability`` (as decided live), ``model_version``, ``feature_set`` and ``feature_values``
        (as :meth:`~fraudstream.storage.history.HistoryRepository.decisions` gives them), ``payload``
        (the body as received, a dict, or ``None`` when only the decision was stored), ``fraud`` (any
        source says fraud) and ``labelled`` (any source gave a verdict)."""
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        known = _labels()
        query = (
            select(_d.c.transaction_id, _d.c.timestamp, _d.c.customer_id, _d.c.amount, _d.c.decision,
                   _d.c.probability, _d.c.model_version, _d.c.feature_set, _d.c.feature_values,
                   _t.c.payload, known.c.fraud_label_time, known.c.legit_label_time)
            .outerjoin(_t, _t.c.transaction_id == _d.c.transaction_id)
            .outerjoin(known, known.c.transaction_id == _d.c.transaction_id)
            .where(_d.c.timestamp >= start, _d.c.timestamp < end)
            .order_by(_d.c.timestamp, _d.c.transaction_id)
        )  # fmt: skip
        with self._db.read() as conn:
            result = conn.execution_options(yield_per=chunk_rows).execute(query)
            for part in result.partitions(chunk_rows):
                yield _frame(list(part))


def _frame(rows: list[Any]) -> pd.DataFrame:
    ids, ts, customers, amounts, decisions, probs, versions, sets, values, payloads, fraud, legit = zip(
        *rows, strict=True
    )
    return pd.DataFrame(
        {
            "transaction_id": pd.Series(ids, dtype=object),
            "timestamp": pd.Series(pd.to_datetime(list(ts), utc=True), dtype="datetime64[us, UTC]"),
            "customer_id": pd.Series(customers, dtype=object),
            "amount": pd.Series(amounts, dtype="float64"),
            "decision": pd.Series(decisions, dtype=object),
            "probability": pd.Series(probs, dtype="float64"),
            "model_version": pd.Series(versions, dtype=object),
            "feature_set": pd.Series(sets, dtype=object),
            "feature_values": pd.Series([bytes(v) for v in values], dtype=object),
            "payload": pd.Series(
                [loads(p) if isinstance(p, str | bytes) else p for p in payloads], dtype=object
            ),
            "fraud": pd.Series([f is not None for f in fraud], dtype=bool),
            "labelled": pd.Series(
                [f is not None or g is not None for f, g in zip(fraud, legit, strict=True)], dtype=bool
            ),
        }
    )
