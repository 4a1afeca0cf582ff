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
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from fraudstream.events.errors import SchemaError
from fraudstream.events.frame import (
    REQUIRED,
    TIME_COLUMNS,
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
SKIP_HINT = "or pass --skip-bad-rows to skip the rows that cannot be read, and count them"
"""How a refused row says the file can be read without it (the commands' option)."""
_NUMBER = r"[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?|[+-]?(nan|inf|infinity)"
_INTEGER = r"[+-]?\d+"
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"unsupported file type {path.name!r}: expected one of {', '.join(SUFFIXES)}")
    return suffix


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class BadRowError(SchemaError):
    """A row of a file cannot be read. The message names the file, the row's line (the header is line
    1; in a Parquet file, the row counted from 0), the field, the reason, and the fix, including
    :data:`SKIP_HINT`. ``line`` is that line (or row), ``field`` the field as the message names it."""

    def __init__(self, message: str, *, field: str, reason: str, line: int) -> None:
        ValueError.__init__(self, message)  # the message is whole here, not SchemaError's "row N, field"
        self.field = field
        self.reason = reason
        self.row = None
        self.line = line


Rows = TypeVar("Rows", pd.DataFrame, pd.Series)


class BadRows:
    """The rows of one file that cannot be read, found a column at a time, each check one mask over
    the whole column (no loop over rows).

    A reader calls :meth:`check` for each thing a value must be (a time in the format, a number, a
    label...) and hands :meth:`fault` to :func:`~fraudstream.events.frame.normalize_frame` for the
    canonical bounds. Then :meth:`drop` (before work that needs good values) and :meth:`finish` take
    the bad rows out: by default (``skip`` false) the first bad row refuses the file with a
    :class:`BadRowError` naming its line, field and reason; with ``skip``, every bad row is dropped
    and :meth:`finish` logs one warning saying how many, of how many, and the first few lines with
    their reasons, so that one bad row in a million does not cost the whole file.

    ``lines`` is each row's line in the file (the header is line 1), so messages name what an editor
    shows; without it (a Parquet file) rows are named by their position, counted from 0. ``name``
    turns a canonical field into what the message calls it (a user's column, for instance).
    """

    SHOWN = 3
    """How many skipped rows the summary line names."""

    def __init__(
        self,
        source: Path | str,
        *,
        skip: bool = False,
        lines: np.ndarray | None = None,
        name: Callable[[str], str] | None = None,
    ) -> None:
        self.source = Path(source).name if isinstance(source, Path) else str(source)
        self.skip = skip
        self.lines = lines
        self.name = name or (lambda field: f"field {field!r}")
        self.read = 0
        self.skipped = 0
        self._bad: np.ndarray | None = None
        self._found: list[tuple[int, str, str]] = []
        self._shown: list[tuple[int, str, str]] = []

    def where(self, position: int) -> int:
        """The line (or, without lines, the row counted from 0) of the row at ``position`` now."""
        return int(self.lines[position]) if self.lines is not None else position

    def _place(self, line: int) -> str:
        return f"line {line}" if self.lines is not None else f"row {line}"

    def check(self, label: str, bad: Any, reason: str | Callable[[int], str]) -> None:
        """Record the rows where ``bad`` is true (missing counts as false) as failing ``label`` (the
        field as the message names it) for ``reason``: a text, or a function of the row's position
        that says what is wrong with its value."""
        mask = _mask(bad)
        if not mask.any():
            return
        if self._bad is None:
            self._bad = np.zeros(len(mask), dtype=bool)
        self._bad |= mask
        for position in np.flatnonzero(mask)[: self.SHOWN]:
            text = reason(int(position)) if callable(reason) else reason
            self._found.append((self.where(int(position)), label, text))

    def found(self, count: int) -> np.ndarray:
        """The mask of the ``count`` rows found bad so far (not yet dropped)."""
        return self._bad.copy() if self._bad is not None else np.zeros(count, dtype=bool)

    def fault(self, field: str, reason: str, bad: Any) -> None:
        """:meth:`check` for a canonical ``field``, named by ``name`` (the signature
        :func:`~fraudstream.events.frame.normalize_frame` calls on a fault)."""
        self.check(self.name(field), bad, reason)

    def drop(self, frame: Rows) -> Rows:
        """``frame`` (whose rows are the rows checked so far) without its bad rows, its index reset;
        without ``skip``, a :class:`BadRowError` for the first bad row instead, if any."""
        self.read = max(self.read, len(frame))
        if self._bad is None or not self._bad.any():
            self._bad = None
            return frame
        first = min(self._found, key=lambda found: found[0])
        if not self.skip:
            line, label, reason = first
            raise BadRowError(
                f"{self.source} {self._place(line)}, {label}: {reason}; fix the row, {SKIP_HINT}",
                field=label, reason=reason, line=line,
            )  # fmt: skip
        keep = ~self._bad
        self.skipped += int(self._bad.sum())
        # each row once, with the first reason found for it
        first_reason: dict[int, tuple[int, str, str]] = {f[0]: f for f in reversed(self._found)}
        self._shown = sorted([*self._shown, *first_reason.values()])[: self.SHOWN]
        self._found, self._bad = [], None
        if self.lines is not None:
            self.lines = self.lines[keep]
        return frame[keep].reset_index(drop=True)

    def keep(self, frame: pd.DataFrame, keep: Any) -> pd.DataFrame:
        """``frame`` with only the rows where ``keep`` is true, the others not counted as bad (a blank
        line, a row cut short); the lines and the rows found bad so far follow."""
        mask = _mask(keep)
        if self.lines is not None:
            self.lines = self.lines[mask]
        if self._bad is not None:
            self._bad = self._bad[mask]
        return frame[mask].reset_index(drop=True)

    def by_time(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` sorted by ``timestamp`` (stable; as it is when already in order), its rows'
        lines and the rows found bad so far following them, so that sorting may come before the
        checks of :func:`~fraudstream.events.frame.normalize_frame` (sorting the few columns a reader
        makes costs less than sorting every canonical column after)."""
        if frame["timestamp"].is_monotonic_increasing:
            return frame
        order = frame["timestamp"].reset_index(drop=True).sort_values(kind="stable").index.to_numpy()
        if self.lines is not None:
            self.lines = self.lines[order]
        if self._bad is not None:
            self._bad = self._bad[order]
        return frame.take(order).reset_index(drop=True)

    def finish(self, frame: pd.DataFrame) -> pd.DataFrame:
        """:meth:`drop`, then, if rows were skipped, one warning: how many of how many rows read, and
        the first lines with their field and reason."""
        frame = self.drop(frame)
        if self.skipped:
            shown = ", ".join(
                f"{self._place(line)} ({label}: {reason})" for line, label, reason in self._shown
            )
            more = ", ..." if self.skipped > len(self._shown) else ""
            log.warning(
                "%s: skipped %s bad row%s of %s: %s%s",
                self.source, f"{self.skipped:,}", "s" if self.skipped > 1 else "", f"{self.read:,}", shown,
                more,
            )  # fmt: skip
        return frame


def says(values: pd.Series | Mapping[int, Any], what: str) -> Callable[[int], str]:
    """A reason for :meth:`BadRows.check`: the row's value (by position), quoted, then ``what``."""
    if isinstance(values, pd.Series):
        return lambda row: f"{values.iloc[row]!r} {what}"
    return lambda row: f"{values.get(row)!r} {what}"


def _mask(values: Any) -> np.ndarray:
    if isinstance(values, pd.Series):
        return values.fillna(False).to_numpy(dtype=bool)
    return np.asarray(values, dtype=bool)


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


def read_frame(path: Path, *, skip_bad_rows: bool = False) -> pd.DataFrame:
    """Read a file written by :func:`write_frame` (or any file in the canonical columns) and validate it.

    A row that does not fit (a label that is not True or False, a value out of bounds) refuses the
    file naming its line, or with ``skip_bad_rows`` is skipped and counted (see :class:`BadRows`).
    """
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".csv":
            frame = pd.read_csv(
                path, dtype="string", keep_default_na=False, na_values=[""], skip_blank_lines=False
            )
        elif path.stat().st_size:
            frame = pd.read_json(path, lines=True, dtype=False, precise_float=True)
        else:
            frame = pd.DataFrame({name: [] for name in REQUIRED})
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read {path} as {suffix[1:]}: {exc}") from exc
    first = {".csv": 2, ".jsonl": 1}.get(suffix)
    lines = None if first is None else np.arange(len(frame), dtype=np.int64) + first
    rows = BadRows(path, skip=skip_bad_rows, lines=lines)
    if suffix == ".csv" and len(frame.columns) > 1:
        frame = rows.keep(frame, ~frame.isna().all(axis=1))  # blank lines
    if "extra" in frame.columns:
        try:
            frame["extra"] = frame["extra"].astype(object).map(extra_from_json)
        except ValueError as exc:
            raise ValueError(f"{path}: column 'extra' is not JSON: {exc}") from exc
    if suffix == ".csv":
        for column in extra_columns(frame):
            frame[column] = infer_kind(frame[column])
        for column in (name for name in TIME_COLUMNS if name in frame.columns):
            text = frame[column].str.strip()
            times = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
            bad_time = text.notna() & text.ne("") & times.isna()
            rows.check(f"field {column!r}", bad_time, says(text, "is not an ISO 8601 time"))
            frame[column] = times
    if suffix == ".csv" and "is_fraud" in frame.columns:
        flags = frame["is_fraud"].str.lower()
        bad = flags.notna() & ~flags.isin(["true", "false"])
        labels = frame["is_fraud"]
        rows.check("field 'is_fraud'", bad, lambda row: f"must be True or False, got {labels.iloc[row]!r}")
        frame["is_fraud"] = flags.map({"true": True, "false": False}).astype("boolean")
    return rows.finish(normalize_frame(frame, on_fault=rows.fault))


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


def parse_times(
    text: pd.Series, field: str, source: object, formats: Sequence[str], bad: BadRows | None = None
) -> pd.Series:
    """Parse a column of text times as UTC (naive times taken as UTC), in one of ``formats``.

    The format is the first of ``formats`` (``strftime`` patterns, or ``"ISO8601"``) that the first
    present value matches, and the whole column must then match it: a file is written in one format,
    and guessing per value would read ``01/02`` as January in one row and February in the next.
    A value that does not parse is missing and a bad row of ``bad`` (see :class:`BadRows`), naming
    ``field``, the value and the formats; without ``bad``, a :class:`BadRowError` naming the row
    (counted from 0) in ``source``.
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
    rows = bad if bad is not None else BadRows(str(source))
    expected = " or ".join(repr(f) for f in formats)
    rows.check(
        f"field {field!r}",
        present & parsed.isna(),
        lambda row: f"{stripped.iloc[row]!r} is not a time in the format {expected}",
    )
    if bad is None:
        rows.drop(text)
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
    """The first of ``formats`` that the first present value of ``text`` parses with, if any; a value
    that parses with none (a stray bad row) is passed over, looking at the first hundred values."""
    present = text.dropna()
    present = present[present.str.strip().ne("")]
    for value in present.iloc[:100]:
        fmt = next((fmt for fmt in formats if _parses(str(value).strip(), fmt)), None)
        if fmt is not None:
            return fmt
    return None


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
    bad: BadRows | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Read the given ``columns`` of a CSV file, as the given Arrow types, and say which were absent.

    The file is parsed block by block (:data:`CSV_BLOCK_BYTES`) into compact Arrow columns: only the
    wanted columns are kept, text stays Arrow-backed (pandas ``string[pyarrow]``: a few bytes a value
    rather than a Python object), and reading stops after ``limit`` rows, so the first rows of a large
    file cost only their own parsing. Empty fields are missing; text such as ``NA`` is kept as written
    (it is Namibia in a country column). A byte-order mark and CRLF line ends are read as any file.
    Blank lines are passed over. A row with too few fields is skipped with a warning naming its line
    (a file cut short ends in one); one with too many is an error. Returns the frame and the names of
    ``columns`` not in the file; a missing name in ``required`` is a :class:`SchemaError` naming the
    column and the file.

    A number column is read as text and converted a block at a time; a value that is not a number is
    missing and a bad row of ``bad``, which learns each row's line in the file (see :class:`BadRows`);
    without ``bad``, the first such value is a :class:`BadRowError` naming its line.
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
    numeric = {name: columns[named[name]] for name in present if _is_number(columns[named[name]])}
    text_types = {name: pa.string() if name in numeric else columns[named[name]] for name in present}
    short: list[Any] = []

    def skip_short(row: Any) -> str:
        if row.actual_columns < row.expected_columns:
            short.append(row)
            return "skip"
        return "error"

    rows = bad if bad is not None else BadRows(Path(path))
    wrong: dict[str, list[np.ndarray]] = {name: [] for name in numeric}  # where a value is no number
    values: dict[str, dict[int, str]] = {name: {} for name in numeric}  # the first ones' text
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, invalid_row_handler=skip_short, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=present,
                column_types=text_types,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
        schema = pa.schema([pa.field(f.name, numeric.get(f.name, f.type)) for f in reader.schema])
        batches, count = [], 0
        for batch in reader:
            if limit is not None and count + batch.num_rows >= limit:
                batch = batch.slice(0, limit - count)
            converted = []
            for name, column in zip(batch.schema.names, batch.columns, strict=True):
                if name in numeric:
                    text, (column, failed) = column, _to_number(column, numeric[name])
                    if failed is not None:
                        where = np.flatnonzero(failed)
                        seen = values[name]
                        seen.update({count + int(i): text[int(i)].as_py() for i in where[: BadRows.SHOWN]})
                        wrong[name].append(where + count)
                converted.append(column)
            batches.append(pa.RecordBatch.from_arrays(converted, schema=schema))
            count += batch.num_rows
            if limit is not None and count >= limit:
                break
        table = pa.Table.from_batches(batches, schema=schema)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    frame = table_to_frame(table).rename(columns=named)
    rows.lines, short_lines = _row_lines(path, len(frame), [row.text for row in short])
    if short:
        log.warning(
            "%s: skipped %d row%s with too few fields (the first on line %d: %r), as a file cut short ends",
            path, len(short), "s" if len(short) > 1 else "", short_lines[0], short[0].text,
        )  # fmt: skip
    for name, failures in wrong.items():
        if failures:
            failed = np.zeros(len(frame), dtype=bool)
            failed[np.concatenate(failures)] = True
            rows.check(f"field {named[name]!r}", failed, says(values[name], "is not a number"))
    blank = frame.isna().all(axis=1) if len(frame.columns) > 1 else pd.Series(False, index=frame.index)
    frame = rows.keep(frame, ~blank) if blank.any() else frame
    if bad is None:
        frame = rows.drop(frame)
    return frame, [name for name in columns if name not in named.values()]


def _row_lines(path: Path, count: int, short: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The line in the file (the header is line 1) of each of the ``count`` rows read, and of the
    rows skipped for too few fields, whose texts are ``short`` (the parser does not say where they
    were). Each row is one line, blank ones included; so without skipped rows, or with one that is
    the file's last line (a file cut short), row ``i`` is on line ``i + 2``. Otherwise the skipped
    rows are found by their text among the file's lines, read a block at a time as one column."""
    lines = np.arange(count, dtype=np.int64) + 2
    if not short:
        return lines, np.array([], dtype=np.int64)
    if len(short) == 1 and _last_line(path) == short[0]:
        return lines, np.array([count + 2], dtype=np.int64)
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["line"], skip_rows=1, block_size=CSV_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(
            delimiter="\x1f", quote_char=False, ignore_empty_lines=False, invalid_row_handler=lambda _: "skip"
        ),
        convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()}, strings_can_be_null=False),
    )
    texts, found, seen = pa.array(list(short), pa.string()), [], 0
    for batch in reader:
        hits = pc.is_in(batch.column(0), value_set=texts).to_numpy(zero_copy_only=False)
        found.append(np.flatnonzero(hits) + seen + 2)
        seen += batch.num_rows
    skipped = np.concatenate([np.array([], dtype=np.int64), *found])
    return np.setdiff1d(np.arange(2, seen + 2), skipped)[:count], skipped


def _last_line(path: Path) -> str:
    """The file's last line that is not empty, without its line end."""
    with open(path, "rb") as handle:
        handle.seek(max(0, handle.seek(0, 2) - 65536))
        tail = handle.read().decode("utf-8", errors="replace").rstrip("\r\n")
    return tail.rsplit("\n", 1)[-1].rstrip("\r")


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _to_number(text: pa.Array, kind: pa.DataType) -> tuple[pa.Array, np.ndarray | None]:
    """A block of a text column as ``kind``, and where a value was not a number (then missing), or
    ``None`` when every value was one. A block that converts as written (the usual case) costs one
    cast; one that does not is matched against one pattern, all values at once, to find which (a value
    of spaces only is missing, as an empty one is; spaces around a number are dropped)."""
    try:
        return pc.cast(text, kind), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    pattern = _INTEGER if pa.types.is_integer(kind) else _NUMBER
    trimmed = pc.utf8_trim_whitespace(text)
    fits = pc.match_substring_regex(trimmed, f"^(?:{pattern})?$", ignore_case=True)
    present = pc.greater(pc.binary_length(trimmed), 0)
    good = pc.if_else(pc.and_(fits, present), trimmed, pa.scalar(None, pa.string()))
    failed = pc.invert(fits).fill_null(False)
    return pc.cast(good, kind), failed.to_numpy(zero_copy_only=False)


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
