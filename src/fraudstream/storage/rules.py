"""``RulesRepository``: the stored decisions a rules backtest replays, read back in column chunks.

A backtest applies candidate rules to what was stored at decision time: each decision's feature
vector (logged with it, so nothing is recomputed and nothing can drift from what the live rules saw),
its transaction's body when one was stored (a replay stores decisions alone: their other fields read
as missing), the probability and decision made live, and the labels known now. Rows are chosen by
the transaction's event time, as retraining chooses them (:mod:`fraudstream.storage.history`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from fraudstream.storage import tables
from fraudstream.storage.database import Database, loads
from fraudstream.storage.history import CHUNK_ROWS, _labels

_t = tables.transactions
_d = tables.decisions


class RulesRepository:
    """Decisions with their logged features, bodies and known labels, for rules backtests."""

    def __init__(self, db: Database) -> None:
        self._db = db

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
