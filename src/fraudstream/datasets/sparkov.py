"""Adapter for the Sparkov simulated card transactions (Kaggle's ``fraudTrain.csv``).

The shared copy was re-saved by a spreadsheet program: times lost their seconds and became
``DD-MM-YYYY HH:MM``, and ``cc_num`` was written in 6-digit scientific notation, so that different
cards can share one value. Both are worked around here; the cardholder's name, address and birth
date are read only to tell such cards apart and are not passed on.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd

from fraudstream.events.errors import SchemaError
from fraudstream.events.frame import normalize_frame

SPARKOV_FILE = "sparkov/fraudTrain_first6k.csv"
TIME_FORMAT = "%d-%m-%Y %H:%M"
_HOLDER = ("first", "last", "dob")
_COLUMNS = (
    "trans_date_trans_time",
    "cc_num",
    "merchant",
    "category",
    "amt",
    "gender",
    "city_pop",
    "job",
    "trans_num",
    "unix_time",
    "merch_lat",
    "merch_long",
    "is_fraud",
    *_HOLDER,
)


def load_sparkov(
    path: Path, *, label_delay: timedelta = timedelta(days=7), limit: int | None = None
) -> pd.DataFrame:
    """Read Sparkov as a canonical frame of card payments, sorted by timestamp.

    The seconds dropped from ``trans_date_trans_time`` are taken back from ``unix_time`` (which is
    shifted by a whole number of days, so its seconds are right), restoring the order within a
    minute. ``customer_id`` is ``cc-<cc_num as written>-<holder>``, where ``holder`` is a digest of
    name and birth date: the rounded ``cc_num`` alone merges cardholders (888 holders share 870
    values in the sample). ``latitude``/``longitude`` are where the purchase happened
    (``merch_lat``/``merch_long``). ``*_net`` categories are online, the rest at a point of sale.
    ``limit`` keeps the first rows of the file.
    """
    wanted = set(_COLUMNS)
    raw = pd.read_csv(path, dtype=str, usecols=lambda c: c in wanted, nrows=limit)
    missing = [name for name in _COLUMNS if name not in raw.columns]
    if missing:
        raise SchemaError(missing[0], f"required column is missing from {path}")

    try:
        minute = pd.to_datetime(raw["trans_date_trans_time"].str.strip(), format=TIME_FORMAT)
    except ValueError as exc:
        raise SchemaError(
            "trans_date_trans_time", f"expected {TIME_FORMAT} times in {path} ({exc})"
        ) from None
    seconds = pd.to_numeric(raw["unix_time"]).mod(60)
    timestamp = (minute + pd.to_timedelta(seconds, unit="s")).dt.tz_localize("UTC")
    holder = pd.util.hash_pandas_object(raw[list(_HOLDER)].fillna(""), index=False) % 10**8
    category = raw["category"].str.strip()
    extra = pd.DataFrame(
        {
            "gender": raw["gender"],
            "city_pop": pd.to_numeric(raw["city_pop"]).astype("Int64"),
            "job": raw["job"],
        }
    )
    frame = pd.DataFrame(
        {
            "transaction_id": raw["trans_num"].str.strip(),
            "timestamp": timestamp,
            "customer_id": "cc-"
            + raw["cc_num"].str.strip()
            + "-"
            + holder.astype("int64").astype("string").str.zfill(8),
            "amount": pd.to_numeric(raw["amt"]),
            "merchant_id": raw["merchant"],
            "merchant_category": category,
            "channel": category.str.endswith("_net").map({True: "online", False: "pos"}),
            "latitude": pd.to_numeric(raw["merch_lat"]),
            "longitude": pd.to_numeric(raw["merch_long"]),
            "extra": pd.Series(
                extra.astype(object).where(extra.notna(), None).to_dict("records"), dtype=object
            ),
            "is_fraud": pd.to_numeric(raw["is_fraud"]).astype("boolean"),
            "label_time": timestamp + label_delay,
        }
    )
    frame = frame.sort_values("timestamp", kind="stable", ignore_index=True)
    return normalize_frame(frame)
