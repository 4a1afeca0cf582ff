"""Canonical frames to and from files, source CSV files read in blocks, and frames replayed as a stream.

Parquet is the working format (typed, compact, fast); CSV and JSON lines are for looking at data and
for exchanging it with other tools. The free-form ``extra`` column is stored as JSON text in Parquet
and CSV, because Parquet would turn a column of dicts with different keys into one struct with the
union of the keys (adding ``None`` values nobody wrote); in JSON lines it is a nested object. Values
JSON cannot hold (datetimes, for instance) are written as their ``str``.

Flat ``extra.<name>`` columns stay typed columns in Parquet. In CSV they are text, and reading one
back gives it its kind from its values: numbers if every value is a number, times if every value is
an ISO 8601 date or time, text otherwise (so text that looks like numbers, a ZIP code for instance,
comes back as numbers: keep such tables in Parquet). JSON lines are transactions as the API takes
them, so the flat columns are written inside each record's ``extra`` object and read back as the
``extra`` dict column.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from fraudstream.events.errors import SchemaError
from fraudstream.events.frame import (
    REQUIRED,
    extra_columns,
    extra_from_json,
    extra_to_json,
    iter_records,
    normalize_frame,
)

SUFFIXES = (".parquet", ".csv", ".jsonl")
log = logging.getLogger(__name__)
CSV_BLOCK_BYTES = 16 << 20
"""Bytes of CSV parsed at a time: large enough to parse fast, small enough that the text in flight
stays a small part of the memory the parsed columns take."""
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"unsupported file type {path.name!r}: expected one of {', '.join(SUFFIXES)}")
    return suffix


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Validate ``frame`` and write it in the format its suffix names, so a bad table never reaches disk."""
    suffix = _suffix(path)
    frame = normalize_frame(frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as out:
            for record in iter_records(frame):
                out.write(json.dumps(record, default=_iso) + "\n")
        return
    frame = frame.assign(extra=extra_to_json(frame["extra"]))
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def read_frame(path: Path) -> pd.DataFrame:
    """Read a file written by :func:`write_frame` (or any file in the canonical columns) and validate it."""
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".csv":
            frame = pd.read_csv(path, dtype="string", keep_default_na=False, na_values=[""])
        elif path.stat().st_size:
            frame = pd.read_json(path, lines=True, dtype=False, precise_float=True)
        else:
            frame = pd.DataFrame({name: [] for name in REQUIRED})
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read {path} as {suffix[1:]}: {exc}") from exc
    if "extra" in frame.columns:
        try:
            frame["extra"] = frame["extra"].astype(object).map(extra_from_json)
        except ValueError as exc:
            raise ValueError(f"{path}: column 'extra' is not JSON: {exc}") from exc
    if suffix == ".csv":
        for column in extra_columns(frame):
            frame[column] = infer_kind(frame[column])
    if suffix == ".csv" and "is_fraud" in frame.columns:
        flags = frame["is_fraud"].str.lower()
        bad = flags.notna() & ~flags.isin(["true", "false"])
        if bad.any():
            raise ValueError(
                f"{path}: is_fraud must be True or False, got {frame['is_fraud'][bad].iloc[0]!r}"
            )
        frame["is_fraud"] = flags.map({"true": True, "false": False}).astype("boolean")
    return normalize_frame(frame)


def infer_kind(text: pd.Series) -> pd.Series:
    """A column of text as numbers if every present value is one, as UTC times if every present value is
    an ISO 8601 date or time, else unchanged. A column with no value at all stays text."""
    present = text.notna()
    if not present.any():
        return text
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers[present].notna().all():
        return numbers.astype("float64")
    stripped = text.str.strip()
    if stripped[present].str.fullmatch(_ISO_TIME.pattern).all():
        return pd.to_datetime(stripped, format="ISO8601", utc=True, errors="coerce")
    return text


def parse_times(text: pd.Series, field: str, source: object, formats: Sequence[str]) -> pd.Series:
    """Parse a column of text times as UTC (naive times taken as UTC), in one of ``formats``.

    The format is the first of ``formats`` (``strftime`` patterns, or ``"ISO8601"``) that the first
    present value matches, and the whole column must then match it: a file is written in one format,
    and guessing per value would read ``01/02`` as January in one row and February in the next.
    A value that does not parse is a :class:`SchemaError` naming ``field``, the row (counted from 0
    among the data rows), the value, the formats and ``source`` (the file).
    """
    stripped = text.str.strip()
    present = stripped.notna() & stripped.ne("")
    if not present.any():
        return pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    chosen = pick_format(stripped, formats)
    parsed = (
        pd.to_datetime(stripped.where(present), format=chosen, utc=True, errors="coerce")
        if chosen is not None
        else pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    )
    bad = present & parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        expected = " or ".join(repr(f) for f in formats)
        raise SchemaError(
            field, f"{stripped.iloc[row]!r} is not a time in the format {expected} in {source}", row=row
        )
    return parsed.dt.as_unit("us")


SPREADSHEET_TIMES = tuple(
    f"{date} {time}"
    for date in ("%m/%d/%Y", "%m/%d/%y", "%d/%m/%Y", "%d/%m/%y", "%d.%m.%Y", "%d.%m.%y", "%Y/%m/%d")
    for time in ("%H:%M", "%H:%M:%S")
)
"""The times spreadsheet programs write: month or day first, four- or two-digit years, with or
without seconds."""


def fitting_formats(text: pd.Series, formats: Sequence[str] = SPREADSHEET_TIMES) -> list[str]:
    """The ``formats`` every present value of ``text`` parses with (several when day and month are
    both possible: ``4/5/15``), to suggest to whoever must say which."""
    present = text.dropna().astype(str).str.strip()
    present = present[present.ne("")]
    if present.empty:
        return []
    sample = present.iloc[:: max(1, len(present) // 1000)]  # a thousand values say it well enough
    fitting = []
    for fmt in formats:
        parsed = pd.to_datetime(sample, format=fmt, errors="coerce")
        if parsed.notna().all():
            fitting.append(fmt)
    return fitting


def pick_format(text: pd.Series, formats: Sequence[str]) -> str | None:
    """The first of ``formats`` that the first present value of ``text`` parses with, if any."""
    present = text.dropna()
    present = present[present.str.strip().ne("")]
    if present.empty:
        return None
    first = str(present.iloc[0]).strip()
    return next((fmt for fmt in formats if _parses(first, fmt)), None)


def _parses(value: str, fmt: str) -> bool:
    try:
        pd.to_datetime(value, format=fmt)
    except (ValueError, OverflowError):
        return False
    return True


def csv_header(path: Path, delimiter: str = ",") -> list[str]:
    """The column names on the first line of a CSV file (a byte-order mark is skipped)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle, delimiter=delimiter), [])


def read_csv_columns(
    path: Path,
    columns: Mapping[str, pa.DataType],
    *,
    required: Collection[str] = (),
    limit: int | None = None,
    delimiter: str = ",",
) -> tuple[pd.DataFrame, list[str]]:
    """Read the given ``columns`` of a CSV file, as the given Arrow types, and say which were absent.

    The file is parsed block by block (:data:`CSV_BLOCK_BYTES`) into compact Arrow columns: only the
    wanted columns are kept, text stays Arrow-backed (pandas ``string[pyarrow]``: a few bytes a value
    rather than a Python object), and reading stops after ``limit`` rows, so the first rows of a large
    file cost only their own parsing. Empty fields are missing; text such as ``NA`` is kept as written
    (it is Namibia in a country column). A row with too few fields is skipped with a warning (a file
    cut short ends in one); one with too many is an error. Returns the frame and the names of
    ``columns`` not in the file;
    a missing name in ``required`` is a :class:`SchemaError` naming the column and the file, and a value
    that does not parse as its type is a :class:`ValueError` naming the file, column and row.
    """
    header = csv_header(path, delimiter)
    named = header_names(header, columns)
    duplicated = sorted({name for name in named.values() if list(named.values()).count(name) > 1})
    duplicated += sorted({name for name in header if header.count(name) > 1 and name in named})
    if duplicated:
        raise SchemaError(
            named.get(duplicated[0], duplicated[0]), f"the column appears more than once in {path}"
        )
    missing = [name for name in required if name not in named.values()]
    if missing:
        raise SchemaError(missing[0], f"required column is missing from {path}")
    by_name = {wanted: column for column, wanted in named.items()}
    present = [by_name[name] for name in columns if name in by_name]  # as the file spells them
    short: list[Any] = []

    def skip_short(row: Any) -> str:
        if row.actual_columns < row.expected_columns:
            short.append(row)
            return "skip"
        return "error"

    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=skip_short),
            convert_options=pacsv.ConvertOptions(
                include_columns=present,
                column_types={name: columns[named[name]] for name in present},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
        batches, rows = [], 0
        for batch in reader:
            if limit is not None and rows + batch.num_rows >= limit:
                batches.append(batch.slice(0, limit - rows))
                rows = limit
                break
            batches.append(batch)
            rows += batch.num_rows
        table = pa.Table.from_batches(batches, schema=reader.schema)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if short:
        line = f"line {short[0].number}" if short[0].number is not None else "a row"
        log.warning(
            "%s: skipped %d row%s with too few fields (the first: %s, %r), as a file cut short ends",
            path, len(short), "s" if len(short) > 1 else "", line, short[0].text,
        )  # fmt: skip
    frame = table_to_frame(table).rename(columns=named)
    return frame, [name for name in columns if name not in named.values()]


def header_names(header: Sequence[str], wanted: Collection[str]) -> dict[str, str]:
    """The file's columns that are ``wanted``, each to the wanted name: spelled alike, else alike but
    for case (``User_id`` for ``user_id``, as a spreadsheet may rewrite a header)."""
    exact = set(header)
    folded = {name.casefold(): name for name in wanted if name not in exact}
    out = {}
    for column in header:
        if column in wanted:
            out[column] = column
        elif column.casefold() in folded:
            out[column] = folded[column.casefold()]
    return out


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as pandas, text as ``string[pyarrow]`` (the canonical text dtype, no copy to
    Python objects), dictionary columns decoded to their values' type."""
    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        columns.append(column)
    table = pa.table(columns, names=table.column_names)
    text = pd.StringDtype("pyarrow")
    mapping = {pa.string(): text, pa.large_string(): text}
    return table.to_pandas(types_mapper=mapping.get, self_destruct=True)


def stream_frame(
    frame: pd.DataFrame,
    *,
    rate: float,
    emit: Callable[[list[dict[str, Any]]], None],
    batch_size: int = 100,
    duration: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Replay ``frame`` as live traffic, ``rate`` transactions per second, for demos and load tests.

    Record ``k`` is due ``k / rate`` seconds after the start and a batch leaves when its first record
    is due, so the pace is scheduled against the start time and sleeping late never accumulates into
    drift. With ``duration``, only records due before it are sent, and sending stops early if ``emit``
    is too slow to keep up. Returns how many records were emitted.
    """
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number of transactions per second, got {rate!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    if duration is not None and not duration >= 0:
        raise ValueError(f"duration must be a non-negative number of seconds, got {duration!r}")
    limit = math.inf if duration is None else math.ceil(round(duration * rate, 9))
    records = iter_records(frame)
    start, sent = clock(), 0
    while sent < limit:
        batch = list(islice(records, int(min(batch_size, limit - sent))))
        if not batch:
            break
        wait = start + sent / rate - clock()
        if wait > 0:
            sleep(wait)
        if duration is not None and clock() - start >= duration:
            break
        emit(batch)
        sent += len(batch)
    return sent
