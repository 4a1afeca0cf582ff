"""Adapter for the PaySim mobile-money simulation (Lopez-Rojas et al.).

PaySim has no clock, only ``step`` (one hour of simulated time); it is placed on a real calendar
from ``start`` so that time windows, label delays and train/test splits work as for other sources.
The public file (``PS_20174392719_1491204439457_log.csv``, 6,362,620 rows, 743 steps) and the shared
sample (its first 19,999 rows) have the same columns; both are read here, in blocks and into compact
columns, so that the full file fits in a few GB of memory.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fraudstream.datasets.io import BadRows, read_csv_columns
from fraudstream.events.frame import normalize_frame

PAYSIM_FILE = "paysim/paysim_first20k.csv"
FULL_FILE = "PS_20174392719_1491204439457_log.csv"
_BALANCES = {
    "oldbalanceOrg": "extra.old_balance_orig",
    "newbalanceOrig": "extra.new_balance_orig",
    "oldbalanceDest": "extra.old_balance_dest",
    "newbalanceDest": "extra.new_balance_dest",
}
_TYPES = {
    "step": pa.int32(),
    "type": pa.dictionary(pa.int32(), pa.string()),
    "amount": pa.float64(),
    "nameOrig": pa.string(),
    "nameDest": pa.string(),
    "isFraud": pa.int8(),
    **dict.fromkeys(_BALANCES, pa.float64()),
}
_HOUR_US = 3_600_000_000


def load_paysim(
    path: Path,
    *,
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
    label_delay: timedelta = timedelta(days=7),
    limit: int | None = None,
    skip_bad_rows: bool = False,
) -> pd.DataFrame:
    """Read PaySim as a canonical frame, sorted by timestamp.

    Step ``s`` is the hour starting at ``start + (s - 1) h``. Its transactions are spread evenly over
    that hour in file order (the simulator's order), so timestamps are distinct and deterministic
    and velocity features see a realistic sequence instead of bursts of identical times. ``TRANSFER``
    becomes channel ``transfer`` and every other type ``mobile``; ``payment_type`` is the type itself.
    ``nameOrig`` is the customer and ``nameDest`` the merchant (``M...``) or receiving customer
    (``C...``). The four balances become ``extra.old_balance_orig``, ``extra.new_balance_orig``,
    ``extra.old_balance_dest`` and ``extra.new_balance_dest``, and the step ``extra.step``.
    ``isFlaggedFraud`` is left out: it is the simulator's own rule (a transfer over 200,000), set on 16
    of the 6.3 M rows, and says nothing that ``amount`` and ``payment_type`` do not.
    ``transaction_id`` is ``paysim-<row number>`` counted from 0 in the file. ``limit`` keeps the first
    rows of the file. A row that does not read (a number that is not one, a missing step, an
    ``isFraud`` other than 0 or 1) refuses the file naming its line, or with ``skip_bad_rows`` is
    skipped and counted (see :class:`BadRows`).
    """
    rows = BadRows(path, skip=skip_bad_rows)
    raw, _ = read_csv_columns(path, _TYPES, required=tuple(_TYPES), limit=limit, bad=rows)
    rows.check("field 'step'", raw["step"].isna(), "is empty")
    label = raw["isFraud"]
    not_a_label = label.notna() & ~label.isin([0, 1])
    rows.check("field 'isFraud'", not_a_label, lambda row: f"{label.iloc[row]:g} is not 0 or 1")
    raw = rows.drop(raw)

    start_ts = pd.Timestamp(start)
    start_ts = start_ts.tz_localize("UTC") if start_ts.tzinfo is None else start_ts.tz_convert("UTC")
    step = raw["step"].to_numpy(dtype=np.int64)
    rank = pd.Series(step).groupby(step, sort=False).cumcount().to_numpy()
    _, where, counts = np.unique(step, return_inverse=True, return_counts=True)
    offset_us = (step - 1) * _HOUR_US + rank * _HOUR_US // counts[where]
    timestamp = pd.Series(start_ts + pd.to_timedelta(offset_us, unit="us")).dt.as_unit("us")
    del rank, where, offset_us

    payment_type = raw["type"]
    frame = pd.DataFrame(
        {
            "transaction_id": "paysim-" + pd.Series(np.arange(len(raw)), dtype="int64").astype("string"),
            "timestamp": timestamp,
            "customer_id": raw["nameOrig"],
            "amount": raw["amount"],
            "merchant_id": raw["nameDest"],
            "channel": pd.Series(
                np.where(payment_type.eq("TRANSFER").to_numpy(dtype=bool), "transfer", "mobile"),
                dtype="string",
            ),
            "payment_type": payment_type,
            "is_fraud": raw["isFraud"].astype("boolean"),
            "label_time": timestamp + label_delay,
            **{column: raw[source] for source, column in _BALANCES.items()},
            "extra.step": raw["step"].astype("float64"),
        }
    )
    del raw
    frame = rows.by_time(frame)
    return rows.finish(normalize_frame(frame, on_fault=rows.fault))
