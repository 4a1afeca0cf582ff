"""A batch of transactions as numpy columns: what the feature engine and scorer consume.

One transaction is a batch of one, built straight from the pydantic model without going through
pandas; a dataset becomes one large batch from its canonical table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.events.transaction import Transaction

KEY_COLUMNS = ("customer_id", "merchant_id", "device_id", "ip_address", "country")
_TIMES = ("timestamp", "account_created_at", "label_time")
_ORDER = ("transaction_id", *KEY_COLUMNS, "amount", "latitude", "longitude", *_TIMES, "is_fraud")
_FIELDS = attrgetter(*_ORDER)
EXTRA = "extra."
Source = Callable[[str, str], np.ndarray]
"""Gives a whole column of a batch by field name and kind (``number``, ``text`` or ``time``)."""


def _objects_of(values: tuple[str | None, ...]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _floats_of(values: tuple[float | bool | None, ...]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _times_of(values: tuple[datetime | None, ...]) -> np.ndarray:
    return np.array([np.nan if v is None else v.timestamp() for v in values], dtype=np.float64)


def _seconds(series: pd.Series) -> np.ndarray:
    micros = np.asarray(series.dt.as_unit("us").array.asi8, dtype=np.float64)
    micros[series.isna().to_numpy()] = np.nan
    return micros / 1e6


def _objects(series: pd.Series) -> np.ndarray:
    return np.asarray(series.astype(object).where(series.notna(), None).to_numpy(dtype=object))


@dataclass
class TransactionBatch:
    """Columns of a batch. Times are float seconds since the epoch (UTC); missing ids are ``None``."""

    transaction_id: np.ndarray
    timestamp: np.ndarray
    amount: np.ndarray
    customer_id: np.ndarray
    merchant_id: np.ndarray
    device_id: np.ndarray
    ip_address: np.ndarray
    country: np.ndarray
    latitude: np.ndarray
    longitude: np.ndarray
    account_created_at: np.ndarray
    is_fraud: np.ndarray
    label_time: np.ndarray
    source: Source | None = field(default=None, repr=False, compare=False)
    """Where the fields beyond these columns come from (``payment_type``, ``extra.<name>``, ...): read
    only when a feature asks, so a batch costs nothing for the fields no feature reads."""

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    def column(self, name: str, kind: str) -> np.ndarray:
        """The field ``name`` as a column of ``kind``: ``number`` and ``time`` as float64 (times in
        epoch seconds, NaN for missing), ``text`` as objects (``None`` for missing). A field the batch
        does not carry is missing on every row; a value of the wrong kind is missing too."""
        if name in _COLUMN_SET and name not in ("transaction_id", "is_fraud"):
            return getattr(self, name)
        if self.source is None:
            return _missing(len(self), kind)
        return self.source(name, kind)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> TransactionBatch:
        """Columns of a canonical table (see :func:`fraudstream.events.normalize_frame`)."""
        fraud = frame["is_fraud"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)

        def source(name: str, kind: str) -> np.ndarray:
            if name in frame.columns:
                return _of_series(frame[name], kind)
            if name.startswith(EXTRA) and "extra" in frame.columns:
                key = name[len(EXTRA) :]
                return _of_values([d.get(key) if isinstance(d, dict) else None for d in frame["extra"]], kind)
            return _missing(len(frame), kind)

        return cls(
            transaction_id=_objects(frame["transaction_id"]),
            timestamp=_seconds(frame["timestamp"]),
            amount=frame["amount"].to_numpy(dtype=np.float64),
            **{name: _objects(frame[name]) for name in KEY_COLUMNS},
            latitude=frame["latitude"].to_numpy(dtype=np.float64),
            longitude=frame["longitude"].to_numpy(dtype=np.float64),
            account_created_at=_seconds(frame["account_created_at"]),
            is_fraud=fraud,
            label_time=_seconds(frame["label_time"]),
            source=source,
        )

    @classmethod
    def from_transactions(cls, transactions: Sequence[Transaction]) -> TransactionBatch:
        """Columns of validated transactions, without building a DataFrame: every attribute read in one
        pass (``attrgetter``), then turned into columns, at half the cost of a pass per column."""
        columns = list(zip(*map(_FIELDS, transactions), strict=True)) or [()] * len(_ORDER)
        out = dict(zip(_ORDER, columns, strict=True))

        def source(name: str, kind: str) -> np.ndarray:
            if name.startswith(EXTRA):
                key = name[len(EXTRA) :]
                return _of_values([t.extra.get(key) for t in transactions], kind)
            if name in Transaction.model_fields:
                return _of_values([getattr(t, name) for t in transactions], kind)
            return _missing(len(transactions), kind)

        return cls(
            **{name: _objects_of(out[name]) for name in ("transaction_id", *KEY_COLUMNS)},
            **{name: _floats_of(out[name]) for name in ("amount", "latitude", "longitude")},
            **{name: _times_of(out[name]) for name in _TIMES},
            is_fraud=_floats_of(out["is_fraud"]),
            source=source,
        )

    def take(self, index: np.ndarray) -> TransactionBatch:
        """The rows at ``index`` (an integer or boolean array), as a new batch; the batch itself when
        ``index`` is every row in order, so what was derived from it once (codes, features' inputs)
        serves the steps after too."""
        index = np.asarray(index)
        if len(index) == len(self) and (
            index.all() if index.dtype == bool else bool((index == np.arange(len(self))).all())
        ):
            return self
        parent = self.source
        source = None if parent is None else (lambda name, kind: parent(name, kind)[index])
        return TransactionBatch(**{name: getattr(self, name)[index] for name in COLUMNS}, source=source)

    @classmethod
    def concat(cls, batches: Sequence[TransactionBatch]) -> TransactionBatch:
        def source(name: str, kind: str) -> np.ndarray:
            return np.concatenate([b.column(name, kind) for b in batches])

        joined = {name: np.concatenate([getattr(b, name) for b in batches]) for name in COLUMNS}
        return cls(**joined, source=source if any(b.source is not None for b in batches) else None)


COLUMNS = tuple(f.name for f in fields(TransactionBatch) if f.name != "source")
"""The batch's own columns (``source`` is how it reads the other fields, not a column)."""
_COLUMN_SET = frozenset(COLUMNS)


def _missing(n: int, kind: str) -> np.ndarray:
    return np.full(n, None, dtype=object) if kind == "text" else np.full(n, np.nan)


def _of_series(series: pd.Series, kind: str) -> np.ndarray:
    """A frame's column as :meth:`TransactionBatch.column` gives it."""
    if kind == "text":
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
            return _of_values(series.tolist(), kind)
        return _objects(series.astype("string") if series.dtype != object else series)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return _seconds(series if series.dt.tz is not None else series.dt.tz_localize("UTC"))
    if kind == "time" and (series.dtype == object or pd.api.types.is_string_dtype(series.dtype)):
        return _seconds(pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601"))
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _of_values(values: list[Any], kind: str) -> np.ndarray:
    """Plain values (a transaction's fields, its ``extra``) as a column of ``kind``."""
    if kind == "text":
        out = np.empty(len(values), dtype=object)
        out[:] = [_text(v) for v in values]
        return out
    if kind == "time":
        return np.array([_time(v) for v in values], dtype=np.float64)
    return np.array([_number(v) for v in values], dtype=np.float64)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list) or value != value:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return np.nan


def _time(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, str):
        try:
            return _time(datetime.fromisoformat(value))
        except ValueError:
            return np.nan
    return _number(value)
