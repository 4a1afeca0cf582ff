"""Canonical transactions as a columnar table, validated column by column.

Datasets and training work on whole tables; validating them row by row through pydantic would be
the per-row loop this project avoids, so the same bounds as :class:`Transaction` are checked here
with vectorised operations, and the first offending row is named.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.events.errors import SchemaError
from fraudstream.events.transaction import (
    MAX_AMOUNT,
    MAX_ID_LENGTH,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    Transaction,
)

ID_COLUMNS = (
    "transaction_id",
    "customer_id",
    "merchant_id",
    "merchant_category",
    "device_id",
    "ip_address",
    "browser",
    "payment_type",
    "country",
    "fraud_scenario",
)
REQUIRED = ("transaction_id", "timestamp", "customer_id", "amount")
TIME_COLUMNS = ("timestamp", "account_created_at", "label_time")
FLOAT_COLUMNS = ("amount", "latitude", "longitude")
COLUMNS = (
    "transaction_id",
    "timestamp",
    "customer_id",
    "amount",
    "currency",
    "merchant_id",
    "merchant_category",
    "channel",
    "device_id",
    "ip_address",
    "browser",
    "country",
    "latitude",
    "longitude",
    "account_created_at",
    "payment_type",
    "extra",
    "is_fraud",
    "label_time",
    "fraud_scenario",
)


def _fail(field: str, reason: str, bad: np.ndarray | pd.Series) -> None:
    if isinstance(bad, pd.Series):
        bad = bad.fillna(False)
    mask = np.asarray(bad, dtype=bool)
    if mask.any():
        raise SchemaError(field, reason, row=int(np.flatnonzero(mask)[0]))


def _to_utc(series: pd.Series, field: str) -> pd.Series:
    try:
        textual = series.dtype == object or pd.api.types.is_string_dtype(series.dtype)
        out = pd.to_datetime(series, utc=True, errors="raise", format="ISO8601" if textual else None)
    except (ValueError, TypeError) as exc:
        raise SchemaError(field, f"not a timestamp ({exc})") from None
    return out.dt.as_unit("us")


def normalize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with every canonical column, canonical dtypes, validated bounds.

    Missing optional columns are added empty; unknown columns are an error, because a silently
    ignored column is usually a misspelt one. Raises :class:`SchemaError` naming the field and row.
    """
    unknown = sorted(set(frame.columns) - set(COLUMNS))
    if unknown:
        raise SchemaError(unknown[0], f"unknown column (expected some of {', '.join(COLUMNS)})")
    for name in REQUIRED:
        if name not in frame.columns:
            raise SchemaError(name, "required column is missing")
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for name in COLUMNS:
        col = frame[name].reset_index(drop=True) if name in frame.columns else None
        if name in TIME_COLUMNS:
            col = (
                _to_utc(col, name)
                if col is not None
                else pd.Series(pd.NaT, index=out.index, dtype="datetime64[us, UTC]")
            )
            ok = col.isna() | ((col >= MIN_TIMESTAMP) & (col < MAX_TIMESTAMP))
            _fail(name, f"must be between {MIN_TIMESTAMP:%Y-%m-%d} and {MAX_TIMESTAMP:%Y-%m-%d}", ~ok)
        elif name in FLOAT_COLUMNS:
            col = (
                pd.to_numeric(col, errors="coerce") if col is not None else pd.Series(np.nan, index=out.index)
            )
            col = col.astype("float64")
        elif name == "is_fraud":
            col = (
                col.astype("boolean")
                if col is not None
                else pd.Series(pd.NA, index=out.index, dtype="boolean")
            )
        elif name == "extra":
            col = col if col is not None else pd.Series([None] * len(out), index=out.index, dtype=object)
        else:
            default = {"currency": "USD", "channel": "other"}.get(name)
            col = (
                col.astype("string")
                if col is not None
                else pd.Series(default, index=out.index, dtype="string")
            )
            if default is not None:
                col = col.fillna(default)
        out[name] = col
    _check_bounds(out)
    return out


def _check_bounds(df: pd.DataFrame) -> None:
    for name in REQUIRED:
        _fail(name, "is required", df[name].isna())
    amount = df["amount"].to_numpy()
    _fail("amount", "must be a finite number", ~np.isfinite(amount))
    _fail("amount", f"must be between 0 and {MAX_AMOUNT:g}", (amount < 0) | (amount > MAX_AMOUNT))
    for name in ID_COLUMNS:
        lengths = df[name].str.len()
        _fail(name, f"must be 1 to {MAX_ID_LENGTH} characters", (lengths < 1) | (lengths > MAX_ID_LENGTH))
        _fail(
            name, "must not contain NUL characters", df[name].str.contains("\x00", regex=False).fillna(False)
        )
    _fail("currency", "must be a 3-letter ISO code", ~df["currency"].str.fullmatch(r"[A-Z]{3}").fillna(False))
    lat, lon = df["latitude"], df["longitude"]
    _fail("latitude", "must be between -90 and 90", lat.notna() & ((lat < -90) | (lat > 90)))
    _fail("longitude", "must be between -180 and 180", lon.notna() & ((lon < -180) | (lon > 180)))
    _fail("longitude", "latitude and longitude must be given together", lat.isna() != lon.isna())
    labelled = df["label_time"].notna()
    _fail("is_fraud", "label_time is set but is_fraud is not", labelled & df["is_fraud"].isna())
    _fail(
        "label_time", "is before the transaction's timestamp", labelled & (df["label_time"] < df["timestamp"])
    )


def records_to_frame(transactions: Iterable[Transaction]) -> pd.DataFrame:
    """Stack validated transactions into a canonical table."""
    rows = [t.model_dump() for t in transactions]
    if not rows:
        return normalize_frame(pd.DataFrame({name: [] for name in REQUIRED}))
    return normalize_frame(pd.DataFrame(rows, columns=list(COLUMNS)))


def _clean(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def iter_records(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Yield plain dicts (JSON-ready apart from datetimes) for streaming a table out one event at a time."""
    columns = [c for c in COLUMNS if c in frame.columns]
    for values in zip(*(frame[c].tolist() for c in columns), strict=True):
        record = {c: _clean(v) for c, v in zip(columns, values, strict=True)}
        if record.get("extra") is None:
            record.pop("extra", None)
        yield record
