"""Canonical frames to and from files, and replayed as a paced stream.

Parquet is the working format (typed, compact, fast); CSV and JSON lines are for looking at data and
for exchanging it with other tools. The free-form ``extra`` column is stored as JSON text in Parquet
and CSV, because Parquet would turn a column of dicts with different keys into one struct with the
union of the keys (adding ``None`` values nobody wrote); in JSON lines it is a nested object. Values
JSON cannot hold (datetimes, for instance) are written as their ``str``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import pandas as pd

from fraudstream.events.frame import REQUIRED, iter_records, normalize_frame

SUFFIXES = (".parquet", ".csv", ".jsonl")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"unsupported file type {path.name!r}: expected one of {', '.join(SUFFIXES)}")
    return suffix


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


def _load(value: Any) -> dict[str, Any] | None:
    value = json.loads(value) if isinstance(value, str) else value
    return value if isinstance(value, dict) else None


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
    frame = frame.assign(extra=frame["extra"].map(_dump).astype("string"))
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
            frame["extra"] = frame["extra"].astype(object).map(_load)
        except ValueError as exc:
            raise ValueError(f"{path}: column 'extra' is not JSON: {exc}") from exc
    if suffix == ".csv" and "is_fraud" in frame.columns:
        flags = frame["is_fraud"].str.lower()
        bad = flags.notna() & ~flags.isin(["true", "false"])
        if bad.any():
            raise ValueError(
                f"{path}: is_fraud must be True or False, got {frame['is_fraud'][bad].iloc[0]!r}"
            )
        frame["is_fraud"] = flags.map({"true": True, "false": False}).astype("boolean")
    return normalize_frame(frame)


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
