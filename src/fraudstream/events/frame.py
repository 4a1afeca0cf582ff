"""Canonical transactions as a columnar table, validated column by column.

Datasets and training work on whole tables; validating them row by row through pydantic would be
the per-row loop this project avoids, so the same bounds as :class:`Transaction` are checked here
with vectorised operations, and the first offending row is named.

Besides the canonical :data:`COLUMNS`, a table may carry flat **extra columns** named
``extra.<name>`` (``name`` a letter or underscore, then letters, digits, underscores): the source
fields a feature may read that have no canonical place (balances, age, category...). They are typed
columns rather than keys of the per-row ``extra`` dict, because a dict per row costs a Python object
and a hash table per transaction, which millions of rows cannot afford. Each has one of three kinds,
:data:`EXTRA_KINDS`. When a table is streamed out as transactions (:func:`iter_records`), the flat
columns are folded into each transaction's ``extra`` mapping, which is how the API receives them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

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
EXTRA_PREFIX = "extra."
EXTRA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""What may follow ``extra.`` in a column name: an identifier, so a feature spec can name it plainly."""
ExtraKind = Literal["number", "time", "text"]
EXTRA_KINDS: tuple[ExtraKind, ...] = ("number", "time", "text")
"""The kinds of an extra column: ``number`` is float64 (NaN when missing), ``time`` is
``datetime64[us, UTC]`` (naive taken as UTC; any date, unlike the transaction's own times, so a birth
date fits), ``text`` is pandas ``string`` of at most 128 characters without NUL (the empty string is
allowed, unlike in an identifier)."""
_NUMERIC_INFERRED = {"integer", "floating", "mixed-integer-float", "decimal", "boolean"}
_TIME_INFERRED = {"datetime64", "datetime", "date"}


def is_extra_column(name: object) -> bool:
    """Whether ``name`` is spelt as a flat extra column (``extra.`` then anything; see :func:`extra_name`)."""
    return isinstance(name, str) and name.startswith(EXTRA_PREFIX)


def extra_columns(frame: pd.DataFrame) -> list[str]:
    """The flat ``extra.<name>`` columns of ``frame``, in its column order."""
    return [name for name in frame.columns if is_extra_column(name)]


def extra_name(column: str) -> str:
    """The ``<name>`` of an ``extra.<name>`` column; :class:`SchemaError` naming it if not an identifier."""
    name = column[len(EXTRA_PREFIX) :]
    if not EXTRA_NAME.fullmatch(name):
        raise SchemaError(
            column,
            "an extra column is named extra.<name>, where <name> is a letter or underscore followed by "
            "letters, digits or underscores; rename it",
        )
    return name


def extra_to_json(extra: pd.Series) -> pd.Series:
    """The per-row ``extra`` mappings as JSON text (keys sorted; none stays null), the form a file holds
    them in: Parquet and CSV have no type for a mapping of any keys."""
    return extra.map(lambda d: None if d is None else json.dumps(d, default=str, sort_keys=True)).astype(
        "string"
    )


def extra_from_json(value: Any) -> dict[str, Any] | None:
    """One ``extra`` value as a file gives it back: JSON text parsed, a mapping kept, anything else
    (null, a JSON scalar) ``None``."""
    value = json.loads(value) if isinstance(value, str) else value
    return value if isinstance(value, dict) else None


def extra_kind(series: pd.Series) -> ExtraKind:
    """The kind a normalised extra column has, read from its dtype."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "time"
    if pd.api.types.is_float_dtype(series.dtype):
        return "number"
    return "text"


Fault = Callable[[str, str, np.ndarray], None]
"""Told of rows that break a bound: ``fault(field, reason, mask)``, the mask over the rows."""


def _raise(field: str, reason: str, mask: np.ndarray) -> None:
    raise SchemaError(field, reason, row=int(np.flatnonzero(mask)[0]))


def _fail(field: str, reason: str, bad: np.ndarray | pd.Series, fault: Fault = _raise) -> None:
    if isinstance(bad, pd.Series):
        bad = bad.fillna(False)
    mask = np.asarray(bad, dtype=bool)
    if mask.any():
        fault(field, reason, mask)


def _to_utc(series: pd.Series, field: str) -> pd.Series:
    try:
        textual = series.dtype == object or pd.api.types.is_string_dtype(series.dtype)
        out = pd.to_datetime(series, utc=True, errors="raise", format="ISO8601" if textual else None)
    except (ValueError, TypeError) as exc:
        raise SchemaError(field, f"not a timestamp ({exc})") from None
    return out.dt.as_unit("us")


def normalize_frame(frame: pd.DataFrame, *, on_fault: Fault | None = None) -> pd.DataFrame:
    """Return ``frame`` with every canonical column, canonical dtypes, validated bounds.

    Missing optional columns are added empty; unknown columns are an error, because a silently
    ignored column is usually a misspelt one. Flat ``extra.<name>`` columns are kept after the
    canonical ones, in their order, each converted to its kind (see :data:`EXTRA_KINDS`): numbers,
    booleans and numeric objects to float64; datetimes and date objects to UTC times; everything else
    to text. Raises :class:`SchemaError` naming the field and row; with ``on_fault``, a row that
    breaks a bound (a value out of range, a required value missing, a label time without a label) is
    told to ``on_fault`` instead, with the mask of every such row, and left in for the caller to drop.
    """
    fault = on_fault or _raise
    duplicated = frame.columns[frame.columns.duplicated()]
    if len(duplicated):
        raise SchemaError(str(duplicated[0]), "the column appears twice; keep one")
    canonical = set(COLUMNS)
    unknown = sorted(str(c) for c in frame.columns if c not in canonical and not is_extra_column(c))
    if unknown:
        raise SchemaError(
            unknown[0],
            f"unknown column (expected some of {', '.join(COLUMNS)}, or extra.<name> for any other field)",
        )
    extras = extra_columns(frame)
    for column in extras:
        extra_name(column)
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
            _fail(name, f"must be between {MIN_TIMESTAMP:%Y-%m-%d} and {MAX_TIMESTAMP:%Y-%m-%d}", ~ok, fault)
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
    for column in extras:
        out[column] = _extra_column(frame[column].reset_index(drop=True), column, fault)
    _check_bounds(out, fault)
    return out


def _extra_column(col: pd.Series, name: str, fault: Fault = _raise) -> pd.Series:
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        if pd.api.types.is_numeric_dtype(categories.dtype) or pd.api.types.is_datetime64_any_dtype(
            categories.dtype
        ):
            col = col.astype(categories.dtype)
        else:
            col = col.astype("string")
        dtype = col.dtype
    if pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    ):
        out = pd.Series(col.to_numpy(dtype="float64", na_value=np.nan), index=col.index)
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        out = _to_utc(col, name)
    elif pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        out = col.astype("string")
    elif pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(col, skipna=True)
        if inferred in _NUMERIC_INFERRED:
            out = pd.Series(pd.to_numeric(col.astype(object).where(col.notna(), np.nan)), dtype="float64")
        elif inferred in _TIME_INFERRED:
            out = _to_utc(col, name)
        else:
            nested = col.map(lambda v: isinstance(v, dict | list | tuple | set), na_action="ignore")
            _fail(name, "holds a nested value; an extra column holds numbers, times or text", nested, fault)
            out = col.astype("string")
    else:
        raise SchemaError(name, f"has dtype {dtype}; an extra column holds numbers, times or text")
    if extra_kind(out) == "number":
        values = out.to_numpy()
        _fail(name, "must be a finite number or missing", np.isinf(values), fault)
    elif extra_kind(out) == "text":
        _fail(name, f"must be at most {MAX_ID_LENGTH} characters", out.str.len() > MAX_ID_LENGTH, fault)
        _fail(name, "must not contain NUL characters", out.str.contains("\x00", regex=False), fault)
    return out


def _check_bounds(df: pd.DataFrame, fault: Fault) -> None:
    for name in REQUIRED:
        _fail(name, "is required", df[name].isna(), fault)
    amount = df["amount"].to_numpy()
    _fail("amount", "must be a finite number", ~np.isfinite(amount), fault)
    _fail("amount", f"must be between 0 and {MAX_AMOUNT:g}", (amount < 0) | (amount > MAX_AMOUNT), fault)
    for name in ID_COLUMNS:
        if not df[name].notna().any():  # an absent field: nothing to measure in millions of rows
            continue
        lengths = df[name].str.len()
        _fail(
            name, f"must be 1 to {MAX_ID_LENGTH} characters", (lengths < 1) | (lengths > MAX_ID_LENGTH), fault
        )
        nul = df[name].str.contains("\x00", regex=False).fillna(False)
        _fail(name, "must not contain NUL characters", nul, fault)
    currency = ~df["currency"].str.fullmatch(r"[A-Z]{3}").fillna(False)
    _fail("currency", "must be a 3-letter ISO code", currency, fault)
    lat, lon = df["latitude"], df["longitude"]
    _fail("latitude", "must be between -90 and 90", lat.notna() & ((lat < -90) | (lat > 90)), fault)
    _fail("longitude", "must be between -180 and 180", lon.notna() & ((lon < -180) | (lon > 180)), fault)
    _fail("longitude", "latitude and longitude must be given together", lat.isna() != lon.isna(), fault)
    labelled = df["label_time"].notna()
    _fail("is_fraud", "label_time is set but is_fraud is not", labelled & df["is_fraud"].isna(), fault)
    early = labelled & (df["label_time"] < df["timestamp"])
    _fail("label_time", "is before the transaction's timestamp", early, fault)


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


def flatten_extra(frame: pd.DataFrame, fields: Mapping[str, ExtraKind] | Iterable[str]) -> pd.DataFrame:
    """``frame`` with a flat ``extra.<name>`` column for each of ``fields`` taken from its ``extra`` dicts.

    A table read back from JSON lines, or built from API transactions, carries its extra fields in the
    ``extra`` dict column; a consumer that reads flat columns (a feature spec) names the fields it
    needs, and only those are pulled out, one pass over the dicts each. ``fields`` are names with or
    without ``extra.``, or a mapping of them to their kind: then a value that does not fit the kind is
    missing (a text in a number field is NaN), else the kind is inferred as :func:`normalize_frame`
    does. A column already present is kept as it is, and so is the ``extra`` dict column.
    """
    kinds: Mapping[str, ExtraKind | None] = (
        fields if isinstance(fields, Mapping) else dict.fromkeys(fields, None)
    )
    dicts = frame["extra"].tolist() if "extra" in frame.columns else [None] * len(frame)
    out = frame.copy(deep=False)
    for field, kind in kinds.items():
        column = field if is_extra_column(field) else EXTRA_PREFIX + field
        name = extra_name(column)
        if column in out.columns:
            continue
        values = pd.Series([d.get(name) if isinstance(d, dict) else None for d in dicts], dtype=object)
        if kind == "number":
            values = pd.to_numeric(values, errors="coerce").astype("float64")
        elif kind == "time":
            values = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
        elif kind == "text":
            values = values.map(str, na_action="ignore").astype("string")
        out[column] = _extra_column(values.set_axis(frame.index), column)
    return out


def _extra_values(col: pd.Series) -> list[Any]:
    """An extra column as JSON-ready values, ``None`` where missing; times as ISO 8601 strings."""
    if extra_kind(col) == "time":
        return [None if t is pd.NaT else t.isoformat() for t in col.tolist()]
    return col.astype(object).where(col.notna(), None).tolist()


def iter_records(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Yield plain dicts (JSON-ready apart from the canonical datetimes) for streaming a table out one
    event at a time.

    The flat ``extra.<name>`` columns are folded into each record's ``extra`` mapping, as the API
    expects them (``Transaction.extra``): missing values are left out, times become ISO 8601 strings,
    and a key also present in the row's ``extra`` dict takes the column's value. A record with no
    extra values has no ``extra`` key.
    """
    columns = [c for c in COLUMNS if c in frame.columns]
    flat = extra_columns(frame)
    names = [c[len(EXTRA_PREFIX) :] for c in flat]
    rows = zip(*(frame[c].tolist() for c in columns), strict=True)
    extras = zip(*(_extra_values(frame[c]) for c in flat), strict=True) if flat else None
    for values in rows:
        record = {c: _clean(v) for c, v in zip(columns, values, strict=True)}
        if extras is not None:
            folded = {k: v for k, v in zip(names, next(extras), strict=True) if v is not None}
            if folded:
                own = record.get("extra")
                record["extra"] = {**own, **folded} if isinstance(own, dict) else folded
        if record.get("extra") is None:
            record.pop("extra", None)
        yield record
