"""Adapter for the PaySim mobile-money simulation (Lopez-Rojas et al.).

PaySim has no clock, only ``step`` (one hour of simulated time); it is placed on a real calendar
from ``start`` so that time windows, label delays and train/test splits work as for other sources.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from fraudstream.events.errors import SchemaError
from fraudstream.events.frame import normalize_frame

PAYSIM_FILE = "paysim/paysim_first20k.csv"
_BALANCES = {
    "oldbalanceOrg": "old_balance_orig",
    "newbalanceOrig": "new_balance_orig",
    "oldbalanceDest": "old_balance_dest",
    "newbalanceDest": "new_balance_dest",
}
_COLUMNS = ("step", "type", "amount", "nameOrig", "nameDest", "isFraud", *_BALANCES)
_DTYPES = {"step": "int64", "type": "str", "amount": "float64", "nameOrig": "str", "nameDest": "str"}
_HOUR_US = 3_600_000_000


def load_paysim(
    path: Path,
    *,
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
    label_delay: timedelta = timedelta(days=7),
    limit: int | None = None,
) -> pd.DataFrame:
    """Read PaySim as a canonical frame, sorted by timestamp.

    Step ``s`` is the hour starting at ``start + (s - 1) h``. Its transactions are spread evenly over
    that hour in file order (the simulator's order), so timestamps are distinct and deterministic
    and velocity features see a realistic sequence instead of bursts of identical times. ``TRANSFER``
    becomes channel ``transfer`` and every other type ``mobile``. ``nameOrig`` is the customer and
    ``nameDest`` the merchant (``M...``) or receiving customer (``C...``). ``transaction_id`` is
    ``paysim-<row number>`` counted from 0 in the file. ``limit`` keeps the first rows of the file.
    """
    wanted = set(_COLUMNS)
    raw = pd.read_csv(path, usecols=lambda c: c in wanted, dtype=_DTYPES, nrows=limit)
    missing = [name for name in _COLUMNS if name not in raw.columns]
    if missing:
        raise SchemaError(missing[0], f"required column is missing from {path}")

    start_ts = pd.Timestamp(start)
    start_ts = start_ts.tz_localize("UTC") if start_ts.tzinfo is None else start_ts.tz_convert("UTC")
    step = raw["step"]
    rank = step.groupby(step, sort=False).cumcount().to_numpy()
    per_step = step.map(step.value_counts()).to_numpy()
    offset_us = (step.to_numpy() - 1) * _HOUR_US + rank * _HOUR_US // per_step
    timestamp = start_ts + pd.to_timedelta(offset_us, unit="us")

    balances = raw[list(_BALANCES)].rename(columns=_BALANCES)
    extra = balances.assign(step=step).to_dict("records")
    frame = pd.DataFrame(
        {
            "transaction_id": "paysim-" + pd.Series(np.arange(len(raw))).astype("string"),
            "timestamp": timestamp,
            "customer_id": raw["nameOrig"],
            "amount": raw["amount"],
            "merchant_id": raw["nameDest"],
            "channel": np.where(raw["type"].eq("TRANSFER"), "transfer", "mobile"),
            "payment_type": raw["type"],
            "extra": pd.Series(extra, dtype=object),
            "is_fraud": raw["isFraud"].astype("boolean"),
            "label_time": timestamp + label_delay,
        }
    )
    frame = frame.sort_values("timestamp", kind="stable", ignore_index=True)
    return normalize_frame(frame)
