"""Adapter for the e-commerce ``Fraud_Data.csv`` and its ``IpAddress_to_Country.csv`` ranges.

The copy in the shared folder was re-saved by a spreadsheet program, which left a byte-order mark,
``M/D/YYYY H:MM`` times, a float ``ip_address``, some IP lower bounds in 3-digit scientific
notation, and a cut-off last row in both files; each of these is repaired or dropped here.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from fraudstream.events.errors import SchemaError
from fraudstream.events.frame import normalize_frame

FRAUD_DATA_FILE = "fraud_ecom/Fraud_Data_first30k.csv"
IP_COUNTRY_FILE = "fraud_ecom/IpAddress_to_Country_truncated.csv"
TIME_FORMAT = "%m/%d/%Y %H:%M"
_COLUMNS = (
    "user_id",
    "signup_time",
    "purchase_time",
    "purchase_value",
    "device_id",
    "source",
    "browser",
    "sex",
    "age",
    "ip_address",
    "class",
)
_IP_COLUMNS = ("lower_bound_ip_address", "upper_bound_ip_address", "country")
_MAX_IP = 2**32 - 1


def _read_csv(
    path: Path, columns: tuple[str, ...], limit: int | None = None, dtype: type | dict[str, type] = str
) -> pd.DataFrame:
    wanted = set(columns)
    frame = pd.read_csv(path, encoding="utf-8-sig", dtype=dtype, usecols=lambda c: c in wanted, nrows=limit)
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise SchemaError(missing[0], f"required column is missing from {path}")
    return frame


def _parse_time(raw: pd.DataFrame, column: str, path: Path) -> pd.Series:
    try:
        return pd.to_datetime(raw[column].str.strip(), format=TIME_FORMAT).dt.tz_localize("UTC")
    except ValueError as exc:
        raise SchemaError(column, f"expected {TIME_FORMAT} times in {path} ({exc})") from None


def load_ip_ranges(path: Path) -> pd.DataFrame:
    """Read the IP-range table as integer ``lower``/``upper`` bounds and ``country``, sorted by ``lower``.

    A lower bound in scientific notation (``1.02E+09``) lost its digits to the spreadsheet; ranges are
    contiguous, so it is restored as the previous upper bound + 1 when that rounds to the written value,
    and the row is dropped otherwise. Rows without both bounds or a country, or with ``upper < lower``,
    are dropped. The file's last row is cut mid-word (``Can``): a last row whose country is only a
    prefix of another country in the file is dropped too, so IPs in that range stay unmapped rather
    than being given a made-up country.
    """
    raw = _read_csv(path, _IP_COLUMNS, dtype={"lower_bound_ip_address": str, "country": str})
    lower_text = raw["lower_bound_ip_address"].str.strip()
    lower = pd.to_numeric(lower_text, errors="coerce")
    upper = pd.to_numeric(raw["upper_bound_ip_address"], errors="coerce")
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
) -> pd.DataFrame:
    """Read ``Fraud_Data.csv`` as a canonical frame of online purchases, sorted by timestamp.

    Each user buys once, so the purchase is ``ecom-<user_id>`` and the signal lies in device and IP
    sharing and in the time since signup (``account_created_at``). ``ip_address`` is floored to an
    integer (the same answer as comparing the float with the integer bounds) and written as a dotted
    quad; ``country`` comes from ``ip_country_path`` when given. A row cut short after ``signup_time``
    (the sample ends in one) is dropped. ``limit`` keeps the first rows of the file.
    """
    raw = _read_csv(path, _COLUMNS, limit)
    cut = raw[list(_COLUMNS[2:])].isna().all(axis=1)
    raw = raw[~cut].reset_index(drop=True)

    timestamp = _parse_time(raw, "purchase_time", path)
    ips = np.floor(pd.to_numeric(raw["ip_address"]).to_numpy(dtype="float64", na_value=np.nan))
    ages = pd.to_numeric(raw["age"]).astype("Int64").tolist()
    extra = [
        {"source": source, "sex": sex, "age": None if age is pd.NA else int(age)}
        for source, sex, age in zip(raw["source"].tolist(), raw["sex"].tolist(), ages, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "transaction_id": "ecom-" + raw["user_id"].str.strip(),
            "timestamp": timestamp,
            "customer_id": "U" + raw["user_id"].str.strip(),
            "amount": pd.to_numeric(raw["purchase_value"]),
            "channel": "online",
            "device_id": raw["device_id"],
            "ip_address": ip_to_dotted(ips),
            "browser": raw["browser"],
            "country": lookup_country(ips, load_ip_ranges(ip_country_path)) if ip_country_path else None,
            "account_created_at": _parse_time(raw, "signup_time", path),
            "extra": pd.Series(extra, dtype=object),
            "is_fraud": pd.to_numeric(raw["class"]).astype("boolean"),
            "label_time": timestamp + label_delay,
        }
    )
    frame = frame.sort_values("timestamp", kind="stable", ignore_index=True)
    return normalize_frame(frame)
