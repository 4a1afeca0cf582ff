"""A batch of transactions as numpy columns: what the feature engine and scorer consume.

One transaction is a batch of one, built straight from the pydantic model without going through
pandas; a dataset becomes one large batch from its canonical table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter

import numpy as np
import pandas as pd

from fraudstream.events.transaction import Transaction

KEY_COLUMNS = ("customer_id", "merchant_id", "device_id", "ip_address", "country")
_TIMES = ("timestamp", "account_created_at", "label_time")
_ORDER = ("transaction_id", *KEY_COLUMNS, "amount", "latitude", "longitude", *_TIMES, "is_fraud")
_FIELDS = attrgetter(*_ORDER)


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

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> TransactionBatch:
        """Columns of a canonical table (see :func:`fraudstream.events.normalize_frame`)."""
        fraud = frame["is_fraud"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
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
        )

    @classmethod
    def from_transactions(cls, transactions: Sequence[Transaction]) -> TransactionBatch:
        """Columns of validated transactions, without building a DataFrame: every attribute read in one
        pass (``attrgetter``), then turned into columns, at half the cost of a pass per column."""
        columns = list(zip(*map(_FIELDS, transactions), strict=True)) or [()] * len(_ORDER)
        out = dict(zip(_ORDER, columns, strict=True))
        return cls(
            **{name: _objects_of(out[name]) for name in ("transaction_id", *KEY_COLUMNS)},
            **{name: _floats_of(out[name]) for name in ("amount", "latitude", "longitude")},
            **{name: _times_of(out[name]) for name in _TIMES},
            is_fraud=_floats_of(out["is_fraud"]),
        )

    def take(self, index: np.ndarray) -> TransactionBatch:
        """The rows at ``index`` (an integer or boolean array), as a new batch."""
        return TransactionBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, batches: Sequence[TransactionBatch]) -> TransactionBatch:
        return cls(**{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)})
