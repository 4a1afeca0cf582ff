"""Adapter for a user's own transactions in CSV or Parquet, described by a short YAML mapping.

The mapping names, for each canonical field, the column of the user's file that holds it; every
other column of the file is kept as a flat extra column ``extra.<name>`` (see
:mod:`fraudstream.events.frame`), so that a feature can read it without any code. For example::

    # mapping.yaml
    timestamp: event_time              # required: when the payment happened
    timestamp_format: "%d/%m/%Y %H:%M" # optional; ISO 8601 text or epoch seconds otherwise
    customer_id: card_id               # required: whose payment it is
    amount: amt                        # required: a number, 0 or more
    is_fraud: fraud_flag               # optional (a file to score has none)
    label_delay: 7d                    # or label_time: chargeback_date
    merchant_id: payee
    drop: [row_number]

The keys:

- ``timestamp``, ``customer_id``, ``amount``: required, each the name of a column.
- ``is_fraud``: the label column: ``1``/``0``, ``true``/``false``, ``yes``/``no``, ``t``/``f``,
  ``y``/``n`` (any case); an empty value is an unknown label.
- ``label_time``: the column saying when each label became known (a chargeback's date), or
  ``label_delay``: how long after the payment labels become known, as ``7d``, ``36h``, ``90min``, ``2w``
  or a number of days. Either needs ``is_fraud``; with neither, the delay the caller gives is used
  (the command line's ``--gap-days``, 7 days by default). Training only uses a label once it is known.
- Optionally any other canonical field: ``transaction_id``, ``merchant_id``, ``merchant_category``,
  ``channel`` (one of ``online``, ``pos``, ``mobile``, ``atm``, ``transfer``, ``other``), ``device_id``,
  ``ip_address``, ``browser``, ``country``, ``latitude`` and ``longitude`` (together), ``currency`` (a
  3-letter code), ``account_created_at``, ``payment_type``, ``fraud_scenario``. Without
  ``transaction_id``, each row's id is ``<file name without suffix>-<row>``, rows counted from 0.
- ``timestamp_format``: the ``strftime`` format (``%d/%m/%Y %H:%M``) of every mapped time column
  (``timestamp``, ``label_time``, ``account_created_at``). Without it, a time column holds ISO 8601
  text (``2024-03-01T12:00:00Z``; without an offset, UTC), epoch numbers, or Parquet timestamps.
- ``timestamp_unit``: the unit of epoch numbers: ``s`` (the default), ``ms``, ``us`` or ``ns``.
- ``drop``: a column or a list of columns to leave out.
- ``types``: the kind of extra columns, ``{column: kind}``, where guessing would be wrong (a ZIP code
  of digits is text): ``number``, ``text``, ``time`` (ISO 8601 or epoch numbers, as above) or
  ``time:<strftime format>`` (``dob: "time:%d-%m-%Y"``). Otherwise a CSV column is a number if every
  value is one, a time if every value is an ISO 8601 date or time, and text else; a Parquet column
  keeps its type.
- ``delimiter``: the CSV field separator, ``,`` by default.

An extra column's name is the file's column name with each run of characters other than ASCII letters,
digits and ``_`` replaced by one ``_`` (``amount (EUR)`` becomes ``extra.amount_EUR``), and ``_`` put
before a leading digit. A mistake in the mapping is a :class:`MappingError` naming the key and what to
do: an unknown key, a missing required key, a column that is not in the file, a value that does not
parse (with its row, counted from 0 among the data rows).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from fraudstream.datasets.io import csv_header, fitting_formats, infer_kind, read_csv_columns, table_to_frame
from fraudstream.events.errors import SchemaError
from fraudstream.events.frame import (
    EXTRA_KINDS,
    EXTRA_PREFIX,
    FLOAT_COLUMNS,
    ID_COLUMNS,
    TIME_COLUMNS,
    normalize_frame,
)
from fraudstream.events.transaction import Channel

REQUIRED = ("timestamp", "customer_id", "amount")
TEXT_FIELDS = ID_COLUMNS
NUMBER_FIELDS = FLOAT_COLUMNS
TIME_FIELDS = TIME_COLUMNS
FIELDS = (*TEXT_FIELDS, *NUMBER_FIELDS, *TIME_FIELDS, "channel", "currency", "is_fraud")
"""The canonical fields a mapping may name a column for."""
OPTIONS = ("timestamp_format", "timestamp_unit", "label_delay", "drop", "types", "delimiter")
UNITS = ("s", "ms", "us", "ns")
SUFFIXES = (".csv", ".parquet")
_NAT = np.iinfo(np.int64).min
_TRUE = ("1", "true", "t", "yes", "y")
_FALSE = ("0", "false", "f", "no", "n")


class MappingError(ValueError):
    """A mapping does not fit the file (or is not a mapping); the message names the key and the fix."""

    def __init__(self, key: str, problem: str, source: object = "the mapping") -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{source}: key {key!r}: {problem}")


@dataclass(frozen=True)
class ColumnMapping:
    """A parsed, checked mapping (see the module's docstring for each key)."""

    fields: dict[str, str]
    """Canonical field -> column of the file."""
    timestamp_format: str | None = None
    timestamp_unit: str | None = None
    label_delay: timedelta | None = None
    drop: tuple[str, ...] = ()
    types: dict[str, str] = field(default_factory=dict)
    delimiter: str = ","
    source: str = "the mapping"
    """Where the mapping came from, for messages."""


def read_mapping(path: Path) -> ColumnMapping:
    """Read and check a YAML mapping file; :class:`MappingError` says what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such mapping file: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    return parse_mapping(data, source=str(path))


def parse_mapping(data: Any, *, source: str = "the mapping") -> ColumnMapping:
    """Check a mapping given as a dict (as YAML reads it) and return it parsed."""
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{source} must be a YAML mapping of keys to column names, like 'timestamp: event_time'"
        )
    unknown = [str(key) for key in data if key not in FIELDS and key not in OPTIONS]
    if unknown:
        raise MappingError(
            unknown[0],
            f"not a canonical field or an option; fields are {', '.join(FIELDS)}; "
            f"options are {', '.join(OPTIONS)}",
            source,
        )
    for key in REQUIRED:
        if data.get(key) is None:
            raise MappingError(key, f"required: name the column of the file that holds the {key}", source)
    fields = {key: _column_name(key, data[key], source) for key in FIELDS if data.get(key) is not None}
    if "label_time" in fields and data.get("label_delay") is not None:
        raise MappingError("label_delay", "give either label_time or label_delay, not both", source)
    for key in ("label_time", "label_delay"):
        if data.get(key) is not None and "is_fraud" not in fields:
            raise MappingError(key, "needs is_fraud: name the column of the labels too", source)
    if ("latitude" in fields) != ("longitude" in fields):
        raise MappingError("longitude", "latitude and longitude must be mapped together", source)
    unit = data.get("timestamp_unit")
    if unit is not None and unit not in UNITS:
        raise MappingError("timestamp_unit", f"must be one of {', '.join(UNITS)}, got {unit!r}", source)
    fmt = data.get("timestamp_format")
    if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
        raise MappingError(
            "timestamp_format", f"must be a strftime format such as '%d/%m/%Y %H:%M', got {fmt!r}", source
        )
    drop = data.get("drop") or ()
    drop = (drop,) if isinstance(drop, str | int) else drop
    if not isinstance(drop, list | tuple):
        raise MappingError("drop", "must be a column name or a list of column names", source)
    types = data.get("types") or {}
    if not isinstance(types, Mapping):
        raise MappingError("types", "must map column names to number, text or time", source)
    bad = {str(k): v for k, v in types.items() if not _is_kind(v)}
    if bad:
        column, kind = next(iter(bad.items()))
        raise MappingError(
            "types",
            f"column {column!r}: {kind!r} is not number, text, time or time:<strftime format>",
            source,
        )
    delimiter = data.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise MappingError("delimiter", f"must be one character, got {delimiter!r}", source)
    return ColumnMapping(
        fields=fields,
        timestamp_format=fmt,
        timestamp_unit=unit,
        label_delay=_delay(data.get("label_delay"), source),
        drop=tuple(str(c) for c in drop),
        types={str(k): str(v) for k, v in types.items()},
        delimiter=delimiter,
        source=source,
    )


def _is_kind(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    kind, colon, fmt = value.partition(":")
    return value in EXTRA_KINDS or (kind == "time" and bool(colon) and "%" in fmt)


def _column_name(key: str, value: Any, source: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise MappingError(key, f"must be the name of a column, got {value!r}", source)
    return str(value)


_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*")
_UNITS = {
    **dict.fromkeys(("w", "week", "weeks"), timedelta(weeks=1)),
    **dict.fromkeys(("", "d", "day", "days"), timedelta(days=1)),
    **dict.fromkeys(("h", "hour", "hours"), timedelta(hours=1)),
    **dict.fromkeys(("m", "min", "minute", "minutes"), timedelta(minutes=1)),
    **dict.fromkeys(("s", "sec", "second", "seconds"), timedelta(seconds=1)),
}


def _delay(value: Any, source: str) -> timedelta | None:
    if value is None:
        return None
    problem = f"must be a duration such as 7d, 36h, 90min or 2w (or a number of days), got {value!r}"
    if isinstance(value, bool):
        raise MappingError("label_delay", problem, source)
    if isinstance(value, int | float):
        if not value >= 0:
            raise MappingError("label_delay", problem, source)
        return timedelta(days=value)
    match = _DURATION.fullmatch(str(value).lower())
    if match is None or match[2] not in _UNITS:
        raise MappingError("label_delay", problem, source)
    return float(match[1]) * _UNITS[match[2]]


def extra_column_name(column: str, position: int) -> str:
    """The ``extra.<name>`` column a file's column lands in (see the module's docstring)."""
    name = "_".join(re.findall(r"[A-Za-z0-9_]+", column))
    if not name:
        name = f"column_{position}"
    if name[0].isdigit():
        name = "_" + name
    return EXTRA_PREFIX + name


def load_generic(
    path: Path,
    mapping: ColumnMapping | Mapping[str, Any] | Path,
    *,
    label_delay: timedelta = timedelta(days=7),
    limit: int | None = None,
) -> pd.DataFrame:
    """Read a user's CSV or Parquet file through ``mapping`` as a canonical frame sorted by timestamp.

    ``mapping`` is a mapping file, a dict as YAML reads one, or a :class:`ColumnMapping`. Labels are
    known at ``label_time`` when mapped, else ``label_delay`` after the payment (the mapping's own
    ``label_delay`` first); rows without a label have no label time. ``limit`` keeps the first rows.
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
    raw = _read(path, suffix, columns, spec, limit)
    reader = _Reader(spec, path, line_offset=2 if suffix == ".csv" else None)

    fields = spec.fields
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
        rows = pd.Series(np.arange(len(raw)), dtype="int64").astype("string")
        out["transaction_id"] = path.stem + "-" + rows
    if "is_fraud" in fields and "label_time" not in fields:
        known = out["is_fraud"].notna().to_numpy(dtype=bool)
        delay = spec.label_delay if spec.label_delay is not None else label_delay
        out["label_time"] = (out["timestamp"] + delay).where(known)
    extras = {name: column for column, name in columns.items() if name.startswith(EXTRA_PREFIX)}
    for name, column in extras.items():
        out[name] = reader.extra(column, raw[column], spec.types.get(column), csv=suffix == ".csv")

    try:
        frame = normalize_frame(pd.DataFrame(out))
    except SchemaError as exc:
        culprit = fields.get(exc.field) or extras.get(exc.field)
        if culprit is None:
            raise
        where = path.name if exc.row is None else reader.where(exc.row)
        key = exc.field if exc.field in fields else "types"
        raise MappingError(key, f"column {culprit!r}, {where}: {exc.reason}", spec.source) from None
    if not frame["timestamp"].is_monotonic_increasing:
        frame = frame.sort_values("timestamp", kind="stable", ignore_index=True)
    return frame


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
    path: Path, suffix: str, columns: Mapping[str, str], spec: ColumnMapping, limit: int | None
) -> pd.DataFrame:
    if suffix == ".csv":
        frame, _ = read_csv_columns(
            path, dict.fromkeys(columns, pa.string()), limit=limit, delimiter=spec.delimiter
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
    """Converts the file's columns, naming the key, column and row of a value that does not fit."""

    def __init__(self, spec: ColumnMapping, path: Path, line_offset: int | None) -> None:
        self.spec = spec
        self.path = path
        self.line_offset = line_offset

    def fail(self, key: str, column: str, values: pd.Series, bad: Any, expected: str) -> None:
        mask = np.asarray(pd.Series(bad).fillna(False), dtype=bool)
        if not mask.any():
            return
        row = int(np.flatnonzero(mask)[0])
        raise MappingError(
            key,
            f"column {column!r}, {self.where(row)}: {values.iloc[row]!r} is not {expected}",
            self.spec.source,
        )

    def where(self, row: int) -> str:
        """Row ``row`` (from 0) of the file, with its line number in a CSV file (header on line 1)."""
        line = f", line {row + self.line_offset}" if self.line_offset is not None else ""
        return f"row {row} of {self.path.name}{line}"

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
        nanoseconds = (numbers * scale).round().astype("Int64").to_numpy(dtype="int64", na_value=_NAT)
        return pd.Series(nanoseconds.view("datetime64[ns]")).dt.tz_localize("UTC").dt.as_unit("us")

    def label(self, column: str, values: pd.Series) -> pd.Series:
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype("boolean")
        text = values.astype("string").str.strip().str.lower()
        words = dict.fromkeys(_TRUE, True) | dict.fromkeys(_FALSE, False)
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
