"""A batch of transactions as numpy columns: what the feature engine and scorer consume.

One transaction is a batch of one, built straight from the pydantic model without going through
pandas; a dataset becomes one large batch from its canonical table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

import numpy as np
import pandas as pd

from fraudstream.events.transaction import Transaction

KEY_COLUMNS = ("customer_id", "merchant_id", "device_id", "ip_address", "country")


def _seconds(series: pd.Series) -> np.ndarray:
    micros = np.asarray(series.dt.as_unit("us").array.asi8, dtype=np.float64)
    micros[series.isna().to_numpy()] = np.nan
    return micros / 1e6


def _objects(series: pd.Series) -> np.ndarray:
    return np.asarray(series.astype(object).where(series.notna(), None).to_numpy(dtype=object))


def _epoch(value: datetime | None) -> float:
    return np.nan if value is None else value.timestamp()


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
        """Columns of validated transactions, without building a DataFrame."""

        def floats(values: list[float | None]) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        def objects(values: list[str | None]) -> np.ndarray:
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out

        ts = transactions
        return cls(
            transaction_id=objects([t.transaction_id for t in ts]),
            timestamp=floats([t.timestamp.timestamp() for t in ts]),
            amount=floats([t.amount for t in ts]),
            customer_id=objects([t.customer_id for t in ts]),
            merchant_id=objects([t.merchant_id for t in ts]),
            device_id=objects([t.device_id for t in ts]),
            ip_address=objects([t.ip_address for t in ts]),
            country=objects([t.country for t in ts]),
            latitude=floats([t.latitude for t in ts]),
            longitude=floats([t.longitude for t in ts]),
            account_created_at=floats([_epoch(t.account_created_at) for t in ts]),
            is_fraud=floats([None if t.is_fraud is None else float(t.is_fraud) for t in ts]),
            label_time=floats([_epoch(t.label_time) for t in ts]),
        )

    def take(self, index: np.ndarray) -> TransactionBatch:
        """The rows at ``index`` (an integer or boolean array), as a new batch."""
        return TransactionBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, batches: Sequence[TransactionBatch]) -> TransactionBatch:
        return cls(**{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)})
