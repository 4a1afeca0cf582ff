"""Adapter for the e-commerce ``Fraud_Data.csv`` and its ``IpAddress_to_Country.csv`` ranges.

The public files (``Fraud_Data.csv``, 151,112 purchases, and ``IpAddress_to_Country.csv``, 138,846
ranges) have ``YYYY-MM-DD HH:MM:SS`` times and float IP numbers. The copy in the shared folder was
re-saved by a spreadsheet program, which left a byte-order mark, ``M/D/YYYY H:MM`` times, some IP
lower bounds in 3-digit scientific notation, and a cut-off last row in both files; each of these is
read, repaired or dropped here, so both the public files and the sample load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fraudstream.datasets.io import BadRows, parse_times, read_csv_columns
from fraudstream.events.frame import normalize_frame

FRAUD_DATA_FILE = "fraud_ecom/Fraud_Data_first30k.csv"
IP_COUNTRY_FILE = "fraud_ecom/IpAddress_to_Country_truncated.csv"
FULL_FILES = ("Fraud_Data.csv", "IpAddress_to_Country.csv")
TIME_FORMAT = "%m/%d/%Y %H:%M"
TIME_FORMATS = (
    TIME_FORMAT, "%m/%d/%y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%y %H:%M:%S", "ISO8601"
)  # fmt: skip
"""The sample's spreadsheet times (a spreadsheet may save them with two-digit years, or with
seconds), then the public file's ``YYYY-MM-DD HH:MM:SS``."""
REQUIRED = ("user_id", "signup_time", "purchase_time", "purchase_value", "class")
OPTIONAL = ("device_id", "source", "browser", "sex", "age", "ip_address")
"""Columns a file may lack: a purchase is still a purchase without them (see :func:`load_fraud_ecom`)."""
_TYPES = {
    "user_id": pa.string(),
    "signup_time": pa.string(),
    "purchase_time": pa.string(),
    "purchase_value": pa.float64(),
    "device_id": pa.string(),
    "source": pa.string(),
    "browser": pa.string(),
    "sex": pa.string(),
    "age": pa.float64(),
    "ip_address": pa.float64(),
    "class": pa.float64(),
}
_IP_COLUMNS = ("lower_bound_ip_address", "upper_bound_ip_address", "country")
_MAX_IP = 2**32 - 1
log = logging.getLogger(__name__)


def _not_a_class(raw: pd.DataFrame) -> Callable[[int], str]:
    return lambda row: f"{raw['class'].iloc[row]:g} is not a class (0 or 1)"


def load_ip_ranges(path: Path) -> pd.DataFrame:
    """Read the IP-range table as integer ``lower``/``upper`` bounds and ``country``, sorted by ``lower``.

    A lower bound in scientific notation (``1.02E+09``) lost its digits to the spreadsheet; ranges are
    contiguous, so it is restored as the previous upper bound + 1 when that rounds to the written value,
    and the row is dropped otherwise. Rows without both bounds or a country, or with ``upper < lower``,
    are dropped. The file's last row is cut mid-word (``Can``): a last row whose country is only a
    prefix of another country in the file is dropped too, so IPs in that range stay unmapped rather
    than being given a made-up country.
    """
    raw, _ = read_csv_columns(path, dict.fromkeys(_IP_COLUMNS, pa.string()), required=_IP_COLUMNS)
    lower_text = raw["lower_bound_ip_address"].str.strip()
    lower = pd.to_numeric(lower_text, errors="coerce")
    upper = pd.to_numeric(raw["upper_bound_ip_address"].str.strip(), errors="coerce")
    country = raw["country"].str.strip()

    rounded = lower_text.str.fullmatch(r"\d+(\.\d*)?[eE]\+?\d+").fillna(False)
    parts = lower_text[rounded].str.extract(r"^\d+(?:\.(\d*))?[eE]\+?(\d+)$")
    unit = 10.0 ** (parts[1].astype("int64") - parts[0].fillna("").str.len())
    restored = upper.shift(1)[rounded] + 1
    ok = (restored - lower[rounded]).abs() <= unit / 2
    lower[rounded] = restored.where(ok)

    keep = lower.notna() & upper.notna() & country.notna() & (lower <= upper)
    known = country[:-1].dropna().unique()
    last = country.iloc[-1] if len(country) else None
    if isinstance(last, str) and last not in known and any(name.startswith(last) for name in known):
        keep.iloc[-1] = False
    ranges = pd.DataFrame({"lower": lower[keep], "upper": upper[keep], "country": country[keep]})
    ranges = ranges.astype({"lower": "int64", "upper": "int64", "country": "string"})
    return ranges.sort_values("lower", kind="stable", ignore_index=True)


def lookup_country(ips: np.ndarray, ranges: pd.DataFrame) -> pd.Series:
    """Map integer IPs to countries by binary search over the ranges' lower bounds.

    A join would need one row per IP address; a search over ~140k sorted, non-overlapping ranges is
    O(log n) per IP. IPs outside every range, and missing IPs (NaN), map to ``<NA>``.
    """
    values = np.asarray(ips, dtype="float64")
    lowers = ranges["lower"].to_numpy()
    if len(lowers) == 0:
        return pd.Series(pd.NA, index=range(len(values)), dtype="string")
    at = np.searchsorted(lowers, values, side="right") - 1
    safe = np.maximum(at, 0)
    found = (at >= 0) & (values <= ranges["upper"].to_numpy()[safe])
    return pd.Series(ranges["country"].to_numpy(dtype=object)[safe], dtype="string").where(found)


def ip_to_dotted(ips: np.ndarray) -> pd.Series:
    """Turn integer IPv4 addresses into ``a.b.c.d`` text; missing or out-of-range values become ``<NA>``."""
    values = np.asarray(ips, dtype="float64")
    valid = np.isfinite(values) & (values >= 0) & (values <= _MAX_IP)
    ints = np.where(valid, values, 0).astype("int64")
    octets = [pd.Series((ints >> shift) & 255).astype("string") for shift in (24, 16, 8, 0)]
    return (octets[0] + "." + octets[1] + "." + octets[2] + "." + octets[3]).where(valid)


def load_fraud_ecom(
    path: Path,
    ip_country_path: Path | None = None,
    *,
    label_delay: timedelta = timedelta(days=7),
    limit: int | None = None,
    skip_bad_rows: bool = False,
) -> pd.DataFrame:
    """Read ``Fraud_Data.csv`` as a canonical frame of online purchases, sorted by timestamp.

    Each user buys once, so the purchase is ``ecom-<user_id>`` and the signal lies in device and IP
    sharing and in the time since signup (``account_created_at``, from ``signup_time``).
    ``device_id`` and ``browser`` keep their names; ``source``, ``sex`` and ``age`` become
    ``extra.source``, ``extra.sex`` and ``extra.age``. ``ip_address`` is floored to an integer (the same
    answer as comparing the float with the integer bounds) and written as a dotted quad; ``country``
    comes from ``ip_country_path`` when given. Times may be ``M/D/YYYY H:MM`` or ISO 8601, one format
    per column. A row cut short after ``signup_time`` (the sample ends in one) is dropped. ``limit``
    keeps the first rows of the file.

    The columns in :data:`OPTIONAL` may be absent: the frame then has that field empty (or no such
    extra column), a warning names them, and ``frame.attrs["missing_columns"]`` lists them (empty when
    none is missing), so a caller can tell a thin file from a full one.

    A row that does not read (a time, a number or a class that is not 0 or 1) refuses the file naming
    its line, or with ``skip_bad_rows`` is skipped and counted (see :class:`BadRows`).
    """
    rows = BadRows(path, skip=skip_bad_rows)
    raw, missing = read_csv_columns(path, _TYPES, required=REQUIRED, limit=limit, bad=rows)
    if missing:
        log.warning(
            "%s has no %s column%s: loading it without %s",
            path, ", ".join(missing), "s" if len(missing) > 1 else "", "them" if len(missing) > 1 else "it",
        )  # fmt: skip
    later = [name for name in _TYPES if name in raw.columns and name not in ("user_id", "signup_time")]
    raw = rows.keep(raw, ~raw[later].isna().all(axis=1))  # a row cut short after signup_time
    rows.check("field 'class'", raw["class"].notna() & ~raw["class"].isin([0, 1]), _not_a_class(raw))
    unlabelled = raw["class"].isna().to_numpy() & ~rows.found(len(raw))  # not a class that did not read
    if unlabelled.any():
        first = rows.where(int(np.argmax(unlabelled)))
        log.warning(
            "%s: %d purchase%s without a class (the first on line %d): kept, unlabelled",
            path, int(unlabelled.sum()), "s" if unlabelled.sum() > 1 else "", first,
        )  # fmt: skip

    timestamp = parse_times(raw["purchase_time"], "purchase_time", path, TIME_FORMATS, rows)
    if "ip_address" in raw.columns:
        ips = np.floor(raw["ip_address"].to_numpy(dtype="float64", na_value=np.nan))
    else:
        ips = np.full(len(raw), np.nan)
    country = lookup_country(ips, load_ip_ranges(ip_country_path)) if ip_country_path else None
    user = raw["user_id"].str.strip()
    frame = pd.DataFrame(
        {
            "transaction_id": "ecom-" + user,
            "timestamp": timestamp,
            "customer_id": "U" + user,
            "amount": raw["purchase_value"],
            "channel": "online",
            "device_id": raw.get("device_id"),
            "ip_address": ip_to_dotted(ips),
            "browser": raw.get("browser"),
            "country": country,
            "account_created_at": parse_times(raw["signup_time"], "signup_time", path, TIME_FORMATS, rows),
            "is_fraud": raw["class"].where(raw["class"].isin([0, 1])).astype("boolean"),
            "label_time": (timestamp + label_delay).where(~unlabelled),
            **{f"extra.{name}": raw[name] for name in ("source", "sex", "age") if name in raw.columns},
        }
    )
    frame = rows.by_time(frame)
    frame = rows.finish(normalize_frame(frame, on_fault=rows.fault))
    frame.attrs["missing_columns"] = missing
    return frame
