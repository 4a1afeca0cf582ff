"""Adapter for a user's own transactions in CSV or Parquet, described by a short YAML mapping.

The mapping (its keys are documented in :mod:`fraudstream.events.mapping`, which the live paths share)
names, for each canonical field, the column of the user's file that holds it; every other column of the
file is kept as a flat extra column ``extra.<name>`` (see :mod:`fraudstream.events.frame`), so that a
feature can read it without any code. A mistake in the mapping is a
:class:`~fraudstream.events.mapping.MappingError` naming the key and what to do: an unknown key, a
missing required key, a column that is not in the file. A value that does not fit is a bad row, named
by its line in a CSV file (the header is line 1) or its row in a Parquet file (counted from 0), with
the key, the column and the value; ``skip_bad_rows`` skips such rows instead and counts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fraudstream.datasets.io import (
    BadRows,
    csv_header,
    fitting_formats,
    infer_kind,
    read_csv_columns,
    table_to_frame,
)
from fraudstream.events.frame import (
    EXTRA_PREFIX,
    FLOAT_COLUMNS,
    ID_COLUMNS,
    TIME_COLUMNS,
    normalize_frame,
)
from fraudstream.events.mapping import (
    FALSE_WORDS,
    TRUE_WORDS,
    ColumnMapping,
    MappingError,
    extra_column_name,
    parse_mapping,
    read_mapping,
)
from fraudstream.events.transaction import Channel

__all__ = [
    "ColumnMapping",
    "MappingError",
    "extra_column_name",
    "load_generic",
    "parse_mapping",
    "read_mapping",
]

TEXT_FIELDS = ID_COLUMNS
NUMBER_FIELDS = FLOAT_COLUMNS
TIME_FIELDS = TIME_COLUMNS
SUFFIXES = (".csv", ".parquet")
_NAT = np.iinfo(np.int64).min


def load_generic(
    path: Path,
    mapping: ColumnMapping | Mapping[str, Any] | Path,
    *,
    label_delay: timedelta = timedelta(days=7),
    limit: int | None = None,
    skip_bad_rows: bool = False,
) -> pd.DataFrame:
    """Read a user's CSV or Parquet file through ``mapping`` as a canonical frame sorted by timestamp.

    ``mapping`` is a mapping file, a dict as YAML reads one, or a :class:`ColumnMapping`. Labels are
    known at ``label_time`` when mapped, else ``label_delay`` after the payment (the mapping's own
    ``label_delay`` first); rows without a label have no label time. ``limit`` keeps the first rows.

    A row whose value does not fit (a time, number, label or channel that does not read, a value out
    of bounds, a label time without a label) refuses the file with a
    :class:`~fraudstream.datasets.io.BadRowError` naming its line in a CSV file (its row, from 0, in
    a Parquet file), the mapping key, the column and the value; with ``skip_bad_rows``, every such row
    is skipped instead and one warning counts them (see :class:`~fraudstream.datasets.io.BadRows`).
    """
    path = Path(path)
    if isinstance(mapping, ColumnMapping):
        spec = mapping
    elif isinstance(mapping, Mapping):
        spec = parse_mapping(mapping)
    else:
        spec = read_mapping(Path(mapping))
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"unsupported file type {path.name!r}: expected one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    header = csv_header(path, spec.delimiter) if suffix == ".csv" else pq.read_schema(path).names
    spec = _as_spelled(spec, header)
    columns = _check_columns(spec, header, path)
    fields = spec.fields
    extras = {name: column for column, name in columns.items() if name.startswith(EXTRA_PREFIX)}
    rows = BadRows(path, skip=skip_bad_rows, name=lambda key: _label(key, fields, extras))
    raw = _read(path, suffix, columns, spec, limit, rows)
    reader = _Reader(spec, rows)

    out: dict[str, Any] = {}
    for key, column in fields.items():
        values = raw[column]
        if key in TEXT_FIELDS:
            out[key] = reader.text(values)
        elif key in NUMBER_FIELDS:
            out[key] = reader.number(key, column, values)
        elif key in TIME_FIELDS:
            out[key] = reader.time(key, column, values, spec.timestamp_format)
        elif key == "is_fraud":
            out[key] = reader.label(column, values)
        elif key == "channel":
            out[key] = reader.channel(column, values)
        elif key == "currency":
            out[key] = reader.text(values).str.upper()
    if "transaction_id" not in fields:
        numbers = pd.Series(np.arange(len(raw)), dtype="int64").astype("string")
        out["transaction_id"] = path.stem + "-" + numbers
    if "is_fraud" in fields and "label_time" not in fields:
        known = out["is_fraud"].notna().to_numpy(dtype=bool)
        delay = spec.label_delay if spec.label_delay is not None else label_delay
        out["label_time"] = (out["timestamp"] + delay).where(known)
    for name, column in extras.items():
        out[name] = reader.extra(column, raw[column], spec.types.get(column), csv=suffix == ".csv")

    frame = rows.finish(normalize_frame(pd.DataFrame(out), on_fault=rows.fault))
    if not frame["timestamp"].is_monotonic_increasing:
        frame = frame.sort_values("timestamp", kind="stable", ignore_index=True)
    return frame


def _label(field: str, fields: Mapping[str, str], extras: Mapping[str, str]) -> str:
    """A canonical field (or ``extra.<name>``) as a message names it: the mapping key and the column."""
    if field in fields:
        return f"key {field!r}, column {fields[field]!r}"
    if field in extras:
        return f"column {extras[field]!r} (extra)"
    return f"field {field!r}"


def _as_spelled(spec: ColumnMapping, header: list[str]) -> ColumnMapping:
    """``spec`` naming the file's columns as the file spells them, where a name differs only in case
    (``User_id`` for ``user_id``: a spreadsheet may rewrite a header) and no column is spelled
    exactly so."""
    exact = set(header)
    folded: dict[str, list[str]] = {}
    for column in header:
        folded.setdefault(column.casefold(), []).append(column)

    def spelled(column: str) -> str:
        alike = folded.get(column.casefold(), [])
        return alike[0] if column not in exact and len(alike) == 1 else column

    return replace(
        spec,
        fields={key: spelled(column) for key, column in spec.fields.items()},
        drop=tuple(spelled(column) for column in spec.drop),
        types={spelled(column): kind for column, kind in spec.types.items()},
    )


def _check_columns(spec: ColumnMapping, header: list[str], path: Path) -> dict[str, str]:
    """The file's columns to read, each to its role: a mapped column to itself, an extra one to its
    ``extra.<name>``. Fails naming the mapping key for a column the file does not have."""
    present = set(header)
    shown = ", ".join(repr(c) for c in header[:30]) + (", ..." if len(header) > 30 else "")
    for key, column in spec.fields.items():
        if column not in present:
            raise MappingError(
                key, f"column {column!r} is not in {path.name} (its columns: {shown})", spec.source
            )
    for column in spec.drop:
        if column not in present:
            raise MappingError(
                "drop", f"column {column!r} is not in {path.name} (its columns: {shown})", spec.source
            )
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise ValueError(f"{path} has two columns named {duplicated[0]!r}: rename one")
    mapped = set(spec.fields.values())
    columns = {column: column for column in header if column in mapped}
    seen: dict[str, str] = {}
    for position, column in enumerate(header):
        if column in mapped or column in spec.drop:
            continue
        name = extra_column_name(column, position)
        if name in seen:
            raise MappingError(
                "drop",
                f"columns {seen[name]!r} and {column!r} would both become {name}: drop one of them",
                spec.source,
            )
        seen[name] = column
        columns[column] = name
    for column in spec.types:
        if column not in seen.values():
            raise MappingError(
                "types",
                f"column {column!r} is not an extra column of {path.name} (mapped, dropped or absent)",
                spec.source,
            )
    return columns


def _read(
    path: Path,
    suffix: str,
    columns: Mapping[str, str],
    spec: ColumnMapping,
    limit: int | None,
    bad: BadRows,
) -> pd.DataFrame:
    if suffix == ".csv":
        frame, _ = read_csv_columns(
            path, dict.fromkeys(columns, pa.string()), limit=limit, delimiter=spec.delimiter, bad=bad
        )
        return frame
    parquet = pq.ParquetFile(path)
    if limit is None:
        table = parquet.read(columns=list(columns))
    else:
        batches, rows = [], 0
        for batch in parquet.iter_batches(columns=list(columns)):
            if rows >= limit:
                break
            batches.append(batch.slice(0, limit - rows))
            rows += min(batch.num_rows, limit - rows)
        schema = parquet.schema_arrow
        table = pa.Table.from_batches(batches, schema=pa.schema([schema.field(c) for c in columns]))
    return table_to_frame(table)


def _format_hint(text: pd.Series) -> str:
    """What to set ``timestamp_format`` to for times written as ``text`` is, if a spreadsheet's."""
    fitting = fitting_formats(text)
    if not fitting:
        return "set timestamp_format in the mapping for another format"
    if len(fitting) == 1:
        return f"they read as {fitting[0]!r}: set timestamp_format: {fitting[0]!r} in the mapping"
    options = " or ".join(repr(f) for f in fitting)
    return f"they read as {options}: set timestamp_format in the mapping to the one the file means"


class _Reader:
    """Converts the file's columns; a value that does not fit is a bad row of ``rows``, named by its
    mapping key, column and value."""

    def __init__(self, spec: ColumnMapping, rows: BadRows) -> None:
        self.spec = spec
        self.rows = rows

    def fail(self, key: str, column: str, values: pd.Series, bad: Any, expected: str) -> None:
        self.rows.check(
            f"key {key!r}, column {column!r}", bad, lambda row: f"{values.iloc[row]!r} is not {expected}"
        )

    @staticmethod
    def text(values: pd.Series) -> pd.Series:
        """Text, stripped; whole floats (an id column that Parquet stored as float) lose their ``.0``."""
        if pd.api.types.is_float_dtype(values.dtype):
            present = values.notna()
            if (values[present] == np.floor(values[present])).all():
                values = values.astype("Int64")
        return values.astype("string").str.strip()

    def number(self, key: str, column: str, values: pd.Series) -> pd.Series:
        if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
            return pd.Series(values.to_numpy(dtype="float64", na_value=np.nan))
        text = values.astype("string").str.strip()
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
        self.fail(key, column, values, text.notna() & text.ne("") & numbers.isna(), "a number")
        return numbers

    def time(self, key: str, column: str, values: pd.Series, fmt: str | None) -> pd.Series:
        """Times as UTC: Parquet timestamps as they are, text in ``fmt`` or else ISO 8601, and epoch
        numbers (numeric columns, or text that is all numbers) in ``timestamp_unit``."""
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            return pd.to_datetime(values, utc=True).dt.as_unit("us")
        if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
            numbers = pd.Series(values.to_numpy(dtype="float64", na_value=np.nan))
            return self._epoch(key, column, values, numbers)
        text = values.astype("string").str.strip()
        present = text.notna() & text.ne("")
        if fmt is not None:
            parsed = pd.to_datetime(text.where(present), format=fmt, utc=True, errors="coerce")
            self.fail(key, column, values, present & parsed.isna(), f"a time in the format {fmt!r}")
            return parsed.dt.as_unit("us")
        numbers = pd.to_numeric(text.where(present), errors="coerce")
        unit = self.spec.timestamp_unit
        if present.any() and (unit is not None or numbers[present].notna().all()):
            self.fail(key, column, values, present & numbers.isna(), f"an epoch time in {unit or 's'}")
            return self._epoch(key, column, values, numbers.astype("float64"))
        parsed = pd.to_datetime(text.where(present), format="ISO8601", utc=True, errors="coerce")
        bad = present & parsed.isna()
        if bad.any():
            self.fail(key, column, values, bad, f"an ISO 8601 time ({_format_hint(text[present])})")
        return parsed.dt.as_unit("us")

    def _epoch(self, key: str, column: str, values: pd.Series, numbers: pd.Series) -> pd.Series:
        unit = self.spec.timestamp_unit or "s"
        scale = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}[unit]
        out_of_range = np.abs(numbers.to_numpy(dtype="float64")) * scale >= 2**63
        self.fail(key, column, values, out_of_range, f"an epoch time in {unit} (is timestamp_unit right?)")
        numbers = numbers.where(~out_of_range)
        nanoseconds = (numbers * scale).round().astype("Int64").to_numpy(dtype="int64", na_value=_NAT)
        return pd.Series(nanoseconds.view("datetime64[ns]")).dt.tz_localize("UTC").dt.as_unit("us")

    def label(self, column: str, values: pd.Series) -> pd.Series:
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype("boolean")
        text = values.astype("string").str.strip().str.lower()
        words = dict.fromkeys(TRUE_WORDS, True) | dict.fromkeys(FALSE_WORDS, False)
        numbers = pd.to_numeric(text, errors="coerce")
        flags = text.map(words).astype("boolean")
        flags = flags.mask(flags.isna() & numbers.isin([0, 1]), numbers.eq(1))
        present = text.notna() & text.ne("")
        self.fail("is_fraud", column, values, present & flags.isna(), "a label (1/0, true/false, yes/no)")
        return flags.astype("boolean")

    def channel(self, column: str, values: pd.Series) -> pd.Series:
        text = values.astype("string").str.strip().str.lower()
        allowed = [c.value for c in Channel]
        self.fail(
            "channel", column, values, text.notna() & ~text.isin(allowed), f"a channel ({', '.join(allowed)})"
        )
        return text

    def extra(self, column: str, values: pd.Series, kind: str | None, *, csv: bool) -> pd.Series:
        """An extra column in the kind ``types`` gives it, else inferred from CSV text, else as typed."""
        if kind is None:
            textual = pd.api.types.is_string_dtype(values.dtype)
            return infer_kind(values) if csv and textual else values
        if kind == "text":
            return self.text(values)
        if kind == "number":
            return self.number("types", column, values)
        fmt = kind.partition(":")[2] or None
        return self.time("types", column, values, fmt)
