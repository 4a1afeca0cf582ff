"""Adapter for the Sparkov simulated card transactions (Kaggle's ``fraudTrain.csv`` and ``fraudTest.csv``).

The public dataset is two files with the same columns: ``fraudTrain.csv`` (1,296,675 rows, 2019 to
mid-2020) and ``fraudTest.csv`` (555,719 rows, the rest of 2020); together they are one stream, so they
are read together and merged in time order. Their times are ``YYYY-MM-DD HH:MM:SS`` and ``cc_num`` is
a whole card number. The shared sample (the first 6,025 rows of ``fraudTrain.csv``) was re-saved by a
spreadsheet program: times lost their seconds and became ``DD-MM-YYYY HH:MM``, birth dates became
``DD-MM-YYYY``, and ``cc_num`` was written in 6-digit scientific notation, so that different cards can
share one value. Both forms are read here.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fraudstream.datasets.io import BadRows, parse_times, pick_format, read_csv_columns
from fraudstream.events.frame import normalize_frame

SPARKOV_FILE = "sparkov/fraudTrain_first6k.csv"
FULL_FILES = ("fraudTrain.csv", "fraudTest.csv")
SAMPLE_TIME_FORMAT = "%d-%m-%Y %H:%M"
TIME_FORMATS = (SAMPLE_TIME_FORMAT, "ISO8601")
DATE_FORMATS = ("%d-%m-%Y", "ISO8601")
_TEXT = ("trans_date_trans_time", "cc_num", "merchant", "category", "first", "last", "gender")
_TYPES = {
    **dict.fromkeys(_TEXT, pa.string()),
    **dict.fromkeys(("state", "job", "dob", "trans_num"), pa.string()),
    **dict.fromkeys(("amt", "lat", "long", "city_pop", "merch_lat", "merch_long"), pa.float64()),
    "unix_time": pa.int64(),
    "is_fraud": pa.float64(),
}


def load_sparkov(
    path: Path,
    *more: Path,
    label_delay: timedelta = timedelta(days=7),
    limit: int | None = None,
    skip_bad_rows: bool = False,
) -> pd.DataFrame:
    """Read Sparkov as a canonical frame of card payments, sorted by timestamp.

    Give one file, or several (``fraudTrain.csv`` and ``fraudTest.csv``): their rows are merged in time
    order, and ``limit`` keeps the first rows across the files in the order given.

    ``customer_id`` is ``cc-<cc_num as written>-<holder>``, where ``holder`` is a digest of name and birth
    date: the sample's rounded ``cc_num`` alone merges cardholders (888 holders share 870 values in it).
    ``latitude``/``longitude`` are the cardholder's home (``lat``/``long``); where the purchase happened
    is ``extra.merch_lat``/``extra.merch_long``, so a feature can measure the distance. The other
    cardholder fields become ``extra.city_pop``, ``extra.dob`` (a time: the birth date, for an age),
    ``extra.gender``, ``extra.state`` and ``extra.job``; name, street, city and ZIP are read only for the
    digest or not at all. ``category`` is ``merchant_category``; ``*_net`` categories are online, the
    rest at a point of sale. In the sample's times, which lost their seconds, the seconds are taken back
    from ``unix_time`` (which is shifted by a whole number of days, so its seconds are right), restoring
    the order within a minute. ``transaction_id`` is ``trans_num``.

    A row that does not read (a time, a date or a number that is not one) refuses the file naming its
    line, or with ``skip_bad_rows`` is skipped and counted, file by file (see :class:`BadRows`).
    """
    frames, left = [], limit
    for source in (path, *more):
        if left is not None and left <= 0:
            break
        frame = _load_one(source, label_delay, left, skip_bad_rows)
        frames.append(frame)
        left = None if left is None else left - len(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if not frame["timestamp"].is_monotonic_increasing:
        frame = frame.sort_values("timestamp", kind="stable", ignore_index=True)
    return frame


def _load_one(path: Path, label_delay: timedelta, limit: int | None, skip: bool) -> pd.DataFrame:
    """One file as a canonical frame in file order, its bad rows refused or skipped."""
    rows = BadRows(path, skip=skip)
    raw, _ = read_csv_columns(path, _TYPES, required=tuple(_TYPES), limit=limit, bad=rows)
    label = raw["is_fraud"]
    rows.check(
        "field 'is_fraud'",
        label.notna() & ~label.isin([0, 1]),
        lambda row: f"{label.iloc[row]:g} is not 0 or 1",
    )
    when = raw["trans_date_trans_time"]
    timestamp = parse_times(when, "trans_date_trans_time", path, TIME_FORMATS, rows)
    if pick_format(when, TIME_FORMATS) == SAMPLE_TIME_FORMAT:
        seconds = raw["unix_time"].to_numpy(dtype="float64", na_value=np.nan) % 60
        timestamp = timestamp + pd.to_timedelta(seconds, unit="s")
    dob = parse_times(raw["dob"], "dob", path, DATE_FORMATS, rows)
    holder_fields = pd.DataFrame(
        {
            "first": raw["first"].fillna(""),
            "last": raw["last"].fillna(""),
            "dob": dob,  # parsed, so either file format gives one digest
        }
    )
    holder = pd.util.hash_pandas_object(holder_fields, index=False) % 10**8
    category = raw["category"].str.strip()
    online = category.str.endswith("_net").fillna(False).to_numpy(dtype=bool)
    frame = pd.DataFrame(
        {
            "transaction_id": raw["trans_num"].str.strip(),
            "timestamp": timestamp,
            "customer_id": "cc-"
            + raw["cc_num"].str.strip()
            + "-"
            + pd.Series(holder.to_numpy(dtype="int64")).astype("string").str.zfill(8),
            "amount": raw["amt"],
            "merchant_id": raw["merchant"],
            "merchant_category": category,
            "channel": pd.Series(np.where(online, "online", "pos"), dtype="string"),
            "latitude": raw["lat"],
            "longitude": raw["long"],
            "is_fraud": label.where(label.isin([0, 1])).astype("boolean"),
            "label_time": timestamp + label_delay,
            "extra.merch_lat": raw["merch_lat"],
            "extra.merch_long": raw["merch_long"],
            "extra.city_pop": raw["city_pop"],
            "extra.dob": dob,
            "extra.gender": raw["gender"],
            "extra.state": raw["state"],
            "extra.job": raw["job"],
        }
    )
    return rows.finish(normalize_frame(frame, on_fault=rows.fault))
