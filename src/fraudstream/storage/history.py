"""``HistoryRepository``: production history read back in columns, for retraining from it.

Retraining reads weeks of decisions: one Python object per row would not fit, so every read here
streams the rows in chunks of plain columns (pandas frames) from one query, and the caller turns each
chunk into numpy arrays before asking for the next. Rows are chosen by the transaction's event time
(``timestamp``), not by when they were decided, so a replayed dataset reads back like live traffic.
No index leads with that time on ``decisions``: a read is one streamed sequential scan, which suits a
job that reads most of the table anyway and costs the live path no index to maintain.

Each row carries its labels as two times: ``fraud_label_time``, the earliest ``label_time`` of a source
whose current verdict is fraud, and ``legit_label_time``, the earliest of a source whose current verdict
is legitimate (``NaT`` where there is none). That is enough to say what was known at any cut-off: fraud
wins where sources disagree, as everywhere else in the store. Verdicts a source later replaced (the
``label_history``) are not read back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Select, case, func, select

from fraudstream.storage import tables
from fraudstream.storage.database import Database, loads

_t = tables.transactions
_d = tables.decisions
_l = tables.labels
_f = tables.feature_sets

#: Rows per chunk of a streamed read: a few tens of megabytes of columns at a hundred features.
CHUNK_ROWS = 50_000
LABEL_COLUMNS = ("fraud_label_time", "legit_label_time")


@dataclass(frozen=True)
class Span:
    """The event times of the decisions stored: the first, the last, and how many."""

    first: datetime
    last: datetime
    count: int


def _labels() -> Any:
    """Per labelled transaction, the earliest fraud and the earliest legitimate ``label_time``."""
    return (
        select(
            _l.c.transaction_id,
            func.min(case((_l.c.is_fraud.is_(True), _l.c.label_time))).label("fraud_label_time"),
            func.min(case((_l.c.is_fraud.is_(False), _l.c.label_time))).label("legit_label_time"),
        )
        .group_by(_l.c.transaction_id)
        .subquery("known")
    )


def _times(values: list[Any]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True), dtype="datetime64[us, UTC]")


class HistoryRepository:
    """Decisions with their logged feature vectors, and decided transactions, with their labels."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def where(self) -> str:
        """The database, its password hidden, for messages."""
        return self._db.safe_url

    def span(self, start: datetime | None = None, end: datetime | None = None) -> Span | None:
        """First and last event time of the decisions (of ``[start, end)`` when given), and their
        number; ``None`` if there are none."""
        query = select(func.min(_d.c.timestamp), func.max(_d.c.timestamp), func.count())
        if start is not None:
            query = query.where(_d.c.timestamp >= start)
        if end is not None:
            query = query.where(_d.c.timestamp < end)
        with self._db.read() as conn:
            first, last, count = conn.execute(query).one()
        return Span(first, last, int(count)) if count else None

    def feature_names(self) -> dict[str, list[str]]:
        """The feature names of every logged feature set, by its id (the ``feature_set`` column)."""
        with self._db.read() as conn:
            return {row[0]: list(row[1]) for row in conn.execute(select(_f.c.id, _f.c.names))}

    def decisions(
        self, start: datetime, end: datetime, *, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """Decisions on transactions of ``[start, end)`` in event-time order, ``chunk_rows`` at a time
        (a replay stores decisions without their transactions: these are read all the same):
        ``transaction_id``, ``timestamp``, ``customer_id``, ``feature_set`` (an id of
        :meth:`feature_names`), ``feature_values`` (little-endian float64 bytes in that set's order) and
        the two label times."""
        known = _labels()
        query = (
            select(_d.c.transaction_id, _d.c.timestamp, _d.c.customer_id, _d.c.feature_set,
                   _d.c.feature_values, known.c.fraud_label_time, known.c.legit_label_time)
            .outerjoin(known, known.c.transaction_id == _d.c.transaction_id)
            .where(_d.c.timestamp >= start, _d.c.timestamp < end)
            .order_by(_d.c.timestamp, _d.c.transaction_id)
        )  # fmt: skip
        for rows in self._stream(query, chunk_rows):
            ids, ts, customers, sets, values, fraud, legit = zip(*rows, strict=True)
            yield pd.DataFrame(
                {
                    "transaction_id": pd.Series(ids, dtype=object),
                    "timestamp": _times(list(ts)),
                    "customer_id": pd.Series(customers, dtype=object),
                    "feature_set": pd.Series(sets, dtype=object),
                    "feature_values": pd.Series([bytes(v) for v in values], dtype=object),
                    "fraud_label_time": _times(list(fraud)),
                    "legit_label_time": _times(list(legit)),
                }
            )

    def transactions(
        self, start: datetime, end: datetime, *, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """Decided transactions of ``[start, end)`` stored with their body (by the API or a worker), in
        event-time order, ``chunk_rows`` at a time:
        ``transaction_id``, ``payload`` (the transaction as received, a dict) and the two label times."""
        known = _labels()
        query = (
            select(_t.c.transaction_id, _t.c.payload, known.c.fraud_label_time, known.c.legit_label_time)
            .outerjoin(known, known.c.transaction_id == _t.c.transaction_id)
            .where(_t.c.status == tables.TX_DECIDED, _t.c.timestamp >= start, _t.c.timestamp < end)
            .order_by(_t.c.timestamp, _t.c.transaction_id)
        )
        for rows in self._stream(query, chunk_rows):
            ids, payloads, fraud, legit = zip(*rows, strict=True)
            yield pd.DataFrame(
                {
                    "transaction_id": pd.Series(ids, dtype=object),
                    "payload": pd.Series(
                        [loads(p) if isinstance(p, str | bytes) else p for p in payloads], dtype=object
                    ),
                    "fraud_label_time": _times(list(fraud)),
                    "legit_label_time": _times(list(legit)),
                }
            )

    def _stream(self, query: Select[Any], chunk_rows: int) -> Iterator[list[Any]]:
        """The rows of ``query`` in lists of at most ``chunk_rows``, from one server-side cursor."""
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        with self._db.read() as conn:
            result = conn.execution_options(yield_per=chunk_rows).execute(query)
            for part in result.partitions(chunk_rows):
                yield list(part)
