"""The declarative feature set: which entities, which windows, which features, under which names.

Training and live scoring both read this one definition, and the model bundle records its
``version`` and the resulting names, so a model can never be served features it was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

HOUR = 3600.0
DAY = 86400.0


def window_name(seconds: float) -> str:
    """``3600 → "1h"``, ``86400 → "24h"``, ``604800 → "7d"``: short names used in feature names."""
    if seconds < DAY or seconds == DAY:
        return f"{seconds / HOUR:g}h"
    return f"{seconds / DAY:g}d"


@dataclass(frozen=True)
class EntitySpec:
    """Features of one entity (customer, device, IP, merchant) over its recent history.

    ``windows`` feed count, sum, mean and max of amounts; ``distinct`` counts the distinct values of
    other columns (devices per customer, customers per device) over ``distinct_windows``;
    ``label_windows`` give the fraud rate among the entity's transactions whose fraud labels had
    already arrived, and the time since the latest such transaction. ``profile`` adds the customer-only
    features (amount ratio and z-score, novelty flags, distance and speed from the previous location).
    """

    name: str
    column: str
    windows: tuple[float, ...] = ()
    distinct: tuple[str, ...] = ()
    distinct_windows: tuple[float, ...] = ()
    label_windows: tuple[float, ...] = ()
    profile: bool = False

    def names(self, feature_set: FeatureSet) -> list[str]:
        p = self.name
        out: list[str] = []
        for w in self.windows:
            out += [f"{p}_{agg}_{window_name(w)}" for agg in ("count", "sum", "mean", "max")]
        for col in self.distinct:
            out += [f"{p}_distinct_{_short(col)}_{window_name(w)}" for w in self.distinct_windows]
        out += [f"{p}_secs_since_last", f"{p}_secs_since_first"]
        if self.profile:
            r = window_name(feature_set.ratio_window)
            out += [f"{p}_amount_ratio_{r}", f"{p}_amount_zscore_{r}"]
            out += [f"new_{_short(col)}" for col in feature_set.novelty]
            out += ["distance_km", "speed_kmh"]
        for w in self.label_windows:
            out += [f"{p}_known_fraud_{window_name(w)}", f"{p}_fraud_rate_{window_name(w)}"]
        if self.label_windows:
            out.append(f"{p}_secs_since_known_fraud")
        return out


def _short(column: str) -> str:
    return {
        "customer_id": "customer",
        "merchant_id": "merchant",
        "device_id": "device",
        "ip_address": "ip",
    }.get(column, column)


TRANSACTION_FEATURES = (
    "amount",
    "log_amount",
    "hour",
    "weekday",
    "is_night",
    "is_weekend",
    "account_age_days",
)


def transaction_values(timestamp: Any, amount: Any, account_created_at: Any) -> dict[str, Any]:
    """The :data:`TRANSACTION_FEATURES` by name, from a batch's columns or from one row's floats: one
    definition for the batch path and the few-row path, so they cannot drift apart."""
    hour = np.floor((timestamp % DAY) / HOUR)
    weekday = (np.floor(timestamp / DAY) + 3) % 7
    return {
        "amount": amount,
        "log_amount": np.log1p(amount),
        "hour": hour,
        "weekday": weekday,
        "is_night": (hour < 6) * 1.0,
        "is_weekend": (weekday >= 5) * 1.0,
        "account_age_days": (timestamp - account_created_at) / DAY,
    }


@dataclass(frozen=True)
class FeatureSet:
    """A versioned set of entity specs plus the per-transaction features.

    Every look-back is bounded by ``retention``: "new device" means not used by this customer within
    the retention period, and "seconds since first seen" counts from the first event within it. That
    bound is what lets live state keep only ``retention`` of history and still give exactly the values
    computed from a whole dataset.
    """

    version: str
    entities: tuple[EntitySpec, ...]
    ratio_window: float = 30 * DAY
    novelty: tuple[str, ...] = ("device_id", "ip_address", "country", "merchant_id")
    retention: float = 60 * DAY
    transaction_features: tuple[str, ...] = field(default=TRANSACTION_FEATURES)

    def __post_init__(self) -> None:
        longest = max(
            max((*e.windows, *e.distinct_windows, *e.label_windows), default=0) for e in self.entities
        )
        if max(longest, self.ratio_window) > self.retention:
            raise ValueError(f"feature set {self.version}: a window is longer than the retention")
        if sum(e.profile for e in self.entities) > 1:
            raise ValueError(f"feature set {self.version}: only one entity can carry the profile features")

    @property
    def names(self) -> list[str]:
        out = list(self.transaction_features)
        for entity in self.entities:
            out += entity.names(self)
        return out


DEFAULT_FEATURE_SET = FeatureSet(
    version="1",
    entities=(
        EntitySpec(
            "customer",
            "customer_id",
            windows=(HOUR, DAY, 7 * DAY, 30 * DAY),
            distinct=("device_id", "ip_address", "merchant_id"),
            distinct_windows=(DAY, 30 * DAY),
            profile=True,
        ),
        EntitySpec(
            "device",
            "device_id",
            windows=(HOUR, DAY, 7 * DAY),
            distinct=("customer_id",),
            distinct_windows=(DAY, 7 * DAY, 30 * DAY),
            label_windows=(30 * DAY,),
        ),
        EntitySpec(
            "ip",
            "ip_address",
            windows=(HOUR, DAY, 7 * DAY),
            distinct=("customer_id",),
            distinct_windows=(DAY, 30 * DAY),
        ),
        EntitySpec(
            "merchant",
            "merchant_id",
            windows=(HOUR, DAY, 7 * DAY, 30 * DAY),
            label_windows=(14 * DAY, 30 * DAY, 60 * DAY),
        ),
    ),
)
