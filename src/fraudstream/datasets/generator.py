"""Synthetic card traffic with labelled fraud scenarios, for tests, demos and benchmarks.

Everything is drawn from one seeded numpy generator with array operations (no loop per
transaction), so a million transactions take seconds and the same config always yields the same
frame. Normal customers keep to their home country, devices and IPs and spend at their own level;
the fraud scenarios in :mod:`fraudstream.datasets.scenarios` break exactly one of those habits each,
so that each has a signature a feature can find.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraudstream.datasets.population import CATEGORIES, COUNTRIES, Population
from fraudstream.datasets.scenarios import (
    BROWSERS,
    CHANNELS,
    CONVERTING,
    DAY,
    HOUR,
    INJECTORS,
    MOBILE,
    ONLINE,
    PAYMENTS,
    POS,
    SCENARIOS,
    Rows,
    concat_rows,
    make_rows,
    random_ips,
)
from fraudstream.events.frame import normalize_frame

HOURLY = np.array([2, 1, 1, 1, 2, 4, 8, 15, 25, 30, 35, 40, 50, 45, 40, 40, 42, 50, 55, 60, 55, 40, 30, 15.0])
PAYMENT_BY_CHANNEL = np.cumsum([[0.72, 0.20, 0.08], [0.85, 0.15, 0.0], [0.45, 0.55, 0.0]], axis=1)

_CENTROIDS = np.array([(v[1], v[2]) for v in COUNTRIES.values()])


@dataclass(frozen=True)
class GeneratorConfig:
    """How much traffic to simulate and how much of it is fraud; validated on creation."""

    n_customers: int = 2000
    n_merchants: int = 200
    days: float = 30.0
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    tx_per_customer_per_day: float = 1.5
    fraud_rate: float = 0.01
    label_delay_days: float = 7.0
    seed: int = 7
    scenarios: tuple[str, ...] = SCENARIOS

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenarios", tuple(self.scenarios))
        unknown = [name for name in self.scenarios if name not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenarios {unknown}; expected some of {list(SCENARIOS)}")
        if len(set(self.scenarios)) != len(self.scenarios):
            raise ValueError(f"scenarios are listed twice: {list(self.scenarios)}")
        for name in ("n_customers", "n_merchants", "days", "tx_per_customer_per_day", "label_delay_days"):
            value, integral = getattr(self, name), name.startswith("n_")
            if (integral and not isinstance(value, int)) or not (math.isfinite(value) and value > 0):
                raise ValueError(
                    f"{name} must be a positive {('number', 'integer')[integral]}, got {value!r}"
                )
        if not 0 <= self.fraud_rate <= 0.5:
            raise ValueError(f"fraud_rate must be between 0 and 0.5, got {self.fraud_rate!r}")
        if not isinstance(self.start, datetime):
            raise ValueError(f"start must be a datetime, got {self.start!r}")


def _population(config: GeneratorConfig, rng: np.random.Generator) -> Population:
    n, n_m = config.n_customers, config.n_merchants
    shares = np.array([v[0] for v in COUNTRIES.values()])
    country = rng.choice(len(COUNTRIES), n, p=shares / shares.sum())
    home = _CENTROIDS[country] + rng.normal(0, 2.0, (n, 2))
    devices = np.arange(2 * n).reshape(n, 2)
    devices[:, 1] = np.where(rng.random(n) < 0.35, devices[:, 1], devices[:, 0])
    ips = random_ips(rng, 3 * n).reshape(n, 3)
    ips = np.where(np.arange(3) < rng.integers(1, 4, n)[:, None], ips, ips[:, :1])
    category_share = np.array([v[0] for v in CATEGORIES.values()])
    return Population(
        span=config.days * DAY,
        centroids=_CENTROIDS,
        country=country,
        home=home,
        devices=devices,
        ips=ips,
        browser=rng.choice(len(BROWSERS), n, p=[0.5, 0.25, 0.08, 0.08, 0.05, 0.04]),
        created=-(30 + rng.exponential(700, n).clip(0, 3650)) * DAY,
        level=rng.lognormal(0.0, 0.5, n),
        merchant_category=rng.choice(len(CATEGORIES), n_m, p=category_share / category_share.sum()),
        merchant_country=rng.choice(len(COUNTRIES), n_m, p=shares / shares.sum()),
        merchant_weight=rng.permutation(1.0 / np.arange(1, n_m + 1) ** 0.8),
        next_device=2 * n,
        next_customer=n,
    )


def _pick_in_blocks(rng: np.random.Generator, w: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """For each row, an index in ``[lo, hi)`` drawn with weights ``w`` (one vectorised search)."""
    cum = np.concatenate([[0.0], np.cumsum(w)])
    target = cum[lo] + rng.random(len(lo)) * (cum[hi] - cum[lo])
    return np.clip(np.searchsorted(cum, target, side="right") - 1, lo, hi - 1)


def _normal_traffic(config: GeneratorConfig, pop: Population, rng: np.random.Generator) -> Rows:
    n = pop.n_customers
    activity = rng.gamma(2.0, 0.5, n) * config.tx_per_customer_per_day * config.days
    customer = np.repeat(np.arange(n), rng.poisson(activity))
    k = len(customer)
    country = pop.country[customer]
    hour = rng.choice(24, k, p=HOURLY / HOURLY.sum()) + rng.random(k)
    local = np.floor(rng.random(k) * config.days) * DAY + hour * HOUR
    offset = np.array([v[3] for v in COUNTRIES.values()])[country] * HOUR
    t = (local - offset) % pop.span
    online = rng.random(k) < rng.beta(2.0, 3.0, n)[customer]
    channel = np.where(online, ONLINE, np.where(rng.random(k) < 0.3, MOBILE, POS))
    has_pos = np.array([v[3] for v in CATEGORIES.values()])[pop.merchant_category]
    if not has_pos.any():
        channel[channel == POS] = ONLINE
    merchant = rng.choice(len(has_pos), k, p=pop.merchant_weight / pop.merchant_weight.sum())
    shops = np.flatnonzero(has_pos)
    shops = shops[np.argsort(pop.merchant_country[shops], kind="stable")]
    lo = np.searchsorted(pop.merchant_country[shops], np.arange(len(COUNTRIES)))
    hi = np.searchsorted(pop.merchant_country[shops], np.arange(len(COUNTRIES)), side="right")
    lo, hi = np.where(hi > lo, lo, 0), np.where(hi > lo, hi, len(shops))
    at_pos = np.flatnonzero(channel == POS)
    where = country[at_pos]
    merchant[at_pos] = shops[_pick_in_blocks(rng, pop.merchant_weight[shops], lo[where], hi[where])]

    category = pop.merchant_category[merchant]
    median = np.log([v[1] for v in CATEGORIES.values()])[category]
    sigma = np.array([v[2] for v in CATEGORIES.values()])[category]
    amount = np.exp(rng.normal(median, sigma)) * pop.level[customer]
    device = pop.devices[customer, (rng.random(k) < 0.3).astype(np.int64)]
    ip = pop.ips[customer, rng.integers(0, 3, k)]
    card_present, located = channel == POS, channel != ONLINE
    noise = rng.normal(0, 1.0, (k, 2)) * np.where(card_present, 0.05, 0.15)[:, None]
    payment = (rng.random(k)[:, None] > PAYMENT_BY_CHANNEL[channel]).sum(axis=1)
    return make_rows(
        k,
        t=t,
        customer=customer,
        amount=amount,
        merchant=merchant,
        channel=channel,
        device=np.where(card_present, -1, device),
        ip=np.where(card_present, -1, ip),
        browser=np.where(card_present, -1, pop.browser[customer]),
        country=country,
        lat=np.where(located, pop.home[customer, 0] + noise[:, 0], np.nan).clip(-90, 90),
        lon=np.where(located, pop.home[customer, 1] + noise[:, 1], np.nan).clip(-180, 180),
        created=pop.created[customer],
        payment=payment,
    )


def _strings(codes: np.ndarray, labels: Any) -> pd.arrays.ArrowStringArray:
    """``labels[codes]`` as a string column, -1 meaning missing; built in Arrow, never as Python objects."""
    labels = labels if isinstance(labels, pa.Array) else pa.array(list(labels), pa.string())
    return pd.arrays.ArrowStringArray(pc.take(labels, pa.array(codes, mask=codes < 0)))


def _ids(prefix: str, count: int, width: int) -> pa.Array:
    digits = pc.cast(pa.array(np.arange(1, count + 1)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(digits, width=width, padding="0"), "")


def _dotted(numbers: np.ndarray) -> pa.Array:
    octets = [pc.cast(pa.array((numbers >> shift) & 255), pa.string()) for shift in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*octets, ".")


def _since(origin: pd.Timestamp | pd.DatetimeIndex, seconds: np.ndarray) -> pd.DatetimeIndex:
    return origin + pd.to_timedelta(np.round(seconds * 1e6).astype(np.int64), unit="us")


def _to_frame(config: GeneratorConfig, pop: Population, rows: Rows, rng: np.random.Generator) -> pd.DataFrame:
    order = np.argsort(rows["t"], kind="stable")
    rows = {name: values[order] for name, values in rows.items()}
    origin = pd.Timestamp(config.start).as_unit("us")
    origin = origin.tz_localize(UTC) if origin.tzinfo is None else origin.tz_convert(UTC)
    fraud_delay = np.exp(rng.normal(np.log(config.label_delay_days), 0.6, len(order))).clip(1, 60)
    delay = np.where(rows["fraud"], fraud_delay, config.label_delay_days) * DAY
    timestamp = _since(origin, rows["t"])
    ips, ip_codes = np.unique(rows["ip"], return_inverse=True)
    has_missing_ip = int(len(ips) > 0 and ips[0] < 0)
    frame = pd.DataFrame(
        {
            "transaction_id": pd.arrays.ArrowStringArray(_ids("tx-", len(order), 9)),
            "timestamp": timestamp,
            "customer_id": _strings(rows["customer"], _ids("C", pop.next_customer, 5)),
            "amount": np.round(rows["amount"], 2).clip(0.01, None),
            "merchant_id": _strings(rows["merchant"], _ids("M", len(pop.merchant_category), 4)),
            "merchant_category": _strings(pop.merchant_category[rows["merchant"]], tuple(CATEGORIES)),
            "channel": _strings(rows["channel"], CHANNELS),
            "device_id": _strings(rows["device"], _ids("D", pop.next_device, 7)),
            "ip_address": _strings(ip_codes - has_missing_ip, _dotted(ips[has_missing_ip:])),
            "browser": _strings(rows["browser"], BROWSERS),
            "country": _strings(rows["country"], tuple(COUNTRIES)),
            "latitude": rows["lat"],
            "longitude": rows["lon"],
            "account_created_at": _since(origin, rows["created"]),
            "payment_type": _strings(rows["payment"], PAYMENTS),
            "is_fraud": rows["fraud"],
            "label_time": _since(timestamp, delay),
            "fraud_scenario": _strings(rows["scenario"], SCENARIOS),
        }
    )
    return normalize_frame(frame)


def generate(config: GeneratorConfig) -> pd.DataFrame:
    """Simulate ``config`` into a canonical, timestamp-sorted, labelled frame; same config, same frame.

    Fraud rows get ``is_fraud`` and ``fraud_scenario``; their ``label_time`` is a chargeback delay
    later (lognormal around ``label_delay_days``, 1 to 60 days), while legitimate rows are labelled
    once the chargeback window ``label_delay_days`` has passed without one.
    """
    rng = np.random.default_rng(config.seed)
    pop = _population(config, rng)
    normal = _normal_traffic(config, pop, rng)
    pop.n_tx = np.bincount(normal["customer"], minlength=pop.n_customers)
    medians = pd.Series(normal["amount"]).groupby(normal["customer"]).median()
    fallback = float(np.median(normal["amount"])) if len(normal["amount"]) else 50.0
    pop.usual = medians.reindex(range(pop.n_customers), fill_value=fallback).to_numpy()
    chosen = [name for name in SCENARIOS if name in config.scenarios]
    # Budget b per scenario such that the fraud share is fraud_rate once the added rows are counted.
    r, s, added = config.fraud_rate, len(chosen), len(set(chosen) - CONVERTING)
    budget = r * len(normal["t"]) / (s - r * added) if s else 0.0
    parts = [normal] + [INJECTORS[name](pop, normal, budget, rng) for name in chosen]
    return _to_frame(config, pop, concat_rows(parts), rng)
