"""Random feature specs, random small streams, and a brute-force reference for every feature.

The reference answers each row by looking at every other row: the key's strictly earlier events in
the window, the labels known before the row. It is slow and obviously right, which is what the
compiled engine is compared against.
"""

from __future__ import annotations

import math
from typing import Any, get_args

import numpy as np
import pandas as pd

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.frame import normalize_frame
from fraudstream.expr.expression import compile_value
from fraudstream.features import FeatureSet
from fraudstream.features import spec as S

T0 = pd.Timestamp("2024-03-04 00:00", tz="UTC")
WINDOWS = ("1h", "6h", "1d", "2d")
KEYS = (["customer_id"], ["merchant_id"], ["device_id"], ["customer_id", "merchant_id"], ["extra.shop"])
VALUES = ("amount", "extra.x", "log1p(amount) + extra.x")
WHERES = (None, "amount > 40", "payment_type in ['TRANSFER', 'CASH_OUT']", "extra.x < 0.5")
COUNTERPARTS = ("device_id", "merchant_id", "customer_id", "payment_type", "extra.shop")
STATS = ("count", "sum", "mean", "min", "max", "std", "median", "p25", "p90")
LABEL_STATS = get_args(S.LabelStat)
NETWORK_STATS = get_args(S.NetworkStat)
NODES = ("customer_id", "device_id", "merchant_id", "extra.shop")


def random_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """``n`` transactions over four days: few customers, merchants and devices, so keys repeat; some
    times equal, some fields missing; labels arriving 1 hour to 3 days after their transaction."""
    hours = np.sort(np.round(rng.uniform(0, 96, n), 1))
    frame = pd.DataFrame(
        {
            "transaction_id": [f"t{i}" for i in range(n)],
            "timestamp": [T0 + pd.Timedelta(hours=float(h)) for h in hours],
            "customer_id": rng.choice(["c1", "c2", "c3"], n),
            "merchant_id": rng.choice(["m1", "m2", None], n),
            "device_id": rng.choice(["d1", "d2", "d3", None], n),
            "payment_type": rng.choice(["TRANSFER", "CASH_OUT", "PAYMENT"], n),
            "amount": np.round(rng.lognormal(3, 1, n), 2),
            "is_fraud": rng.random(n) < 0.25,
            "label_time": [T0 + pd.Timedelta(hours=float(h + rng.uniform(1, 72))) for h in hours],
            "extra.x": np.where(rng.random(n) < 0.15, np.nan, np.round(rng.uniform(0, 1, n), 3)),
            "extra.shop": rng.choice(["s1", "s2", "s3"], n),
        }
    )
    return normalize_frame(frame)


def random_spec(rng: np.random.Generator) -> FeatureSet:
    """A valid spec of one to three keys, each with a few random aggregations."""

    def pick(options: Any, k: int | None = None) -> Any:
        if k is None:
            return options[int(rng.integers(len(options)))]
        chosen = rng.choice(len(options), size=min(k, len(options)), replace=False)
        return [options[i] for i in sorted(chosen)]

    keys: list[dict[str, Any]] = []
    for g, i in enumerate(rng.choice(len(KEYS), size=int(rng.integers(1, 4)), replace=False)):
        key = KEYS[i]
        aggregates: list[dict[str, Any]] = []
        for a in range(int(rng.integers(1, 5))):
            kind = pick(("stats", "distinct", "since", "ratio", "zscore", "above", "new", "labels"))
            where = pick(WHERES) if kind in ("stats", "distinct", "since", "ratio", "above") else None
            named = {"where": where} if where else {}
            of = pick(VALUES)
            if kind == "stats":
                stats = pick(STATS, int(rng.integers(1, 4)))
                entry = {"stats": stats, "windows": pick(WINDOWS, 2), "of": of, **named}
                entry["name"] = f"{{key}}_{a}_{{stat}}_{{window}}"
            elif kind == "distinct":
                fields = [f for f in pick(COUNTERPARTS, 2) if f not in key] or ["payment_type"]
                entry = {"distinct": fields, "windows": pick(WINDOWS, 2), **named}
                entry["name"] = f"{{key}}_{a}_distinct_{{field}}_{{window}}"
            elif kind == "since":
                entry = {"since": pick(("last", "first"), 2), **named, "name": f"{{key}}_{a}_since_{{stat}}"}
            elif kind == "ratio":
                to = pick(("mean", "median", "max", "p75"))
                entry = {"ratio": pick(("amount", "extra.x")), "to": to, "window": pick(WINDOWS), **named}
                entry["name"] = f"{{key}}_{a}_ratio"
            elif kind == "zscore":
                entry = {
                    "zscore": pick(("amount", "extra.x")),
                    "window": pick(WINDOWS),
                    "name": f"{{key}}_{a}",
                }
            elif kind == "above":
                entry = {"above": float(pick((1.5, 3.0))), "windows": pick(WINDOWS, 2), "of": of, **named}
                entry["share"] = bool(rng.random() < 0.5)
                entry["name"] = f"{{key}}_{a}_above_{{window}}"
            elif kind == "new":
                fields = [f for f in pick(COUNTERPARTS, 2) if f not in key] or ["payment_type"]
                entry = {"new": fields, "name": f"{{key}}_{a}_new_{{field}}"}
            else:
                stats = pick(LABEL_STATS, 3)
                entry = {
                    "labels": stats,
                    "windows": pick(WINDOWS, 2),
                    "name": f"{{key}}_{a}_{{stat}}_{{window}}",
                }
                if "known_fraud_share" in stats:
                    entry["delay"] = pick(("30m", "6h"))
            aggregates.append(entry)
        restricted = {"where": pick(WHERES[1:])} if rng.random() < 0.25 else {}
        keys.append({"key": key, "name": f"k{g}", "aggregates": aggregates, **restricted})
    networks = [random_network(rng, f"n{g}") for g in range(int(rng.integers(0, 3)))]
    return FeatureSet.from_dict(
        {
            "version": "random",
            "retention": pick(("2d", "3d")),
            "fields": {"extra.x": "number", "extra.shop": "text"},
            "features": [{"row": "amount"}, *keys, *networks],
        }
    )


def random_network(rng: np.random.Generator, name: str) -> dict[str, Any]:
    """A network entry: a node, one or two link fields, small bounds (so that they bind), and a few
    of its features."""
    node = NODES[int(rng.integers(len(NODES)))]
    others = [f for f in NODES if f != node]
    via = [others[i] for i in sorted(rng.choice(len(others), size=int(rng.integers(1, 3)), replace=False))]
    counted = [node, *others, "payment_type"]
    count = [
        counted[i] for i in sorted(rng.choice(len(counted), size=int(rng.integers(0, 3)), replace=False))
    ]
    labels = [NETWORK_STATS[i] for i in sorted(rng.choice(3, size=int(rng.integers(0, 4)), replace=False))]
    entry: dict[str, Any] = {
        "network": node,
        "via": via,
        "window": WINDOWS[int(rng.integers(len(WINDOWS)))],
        "count": count,
        "labels": labels,
        "age": bool(rng.random() < 0.5) or not (count or labels),
        "hops": int(rng.integers(1, 3)),
        "max_values": int(rng.integers(1, 4)),
        "max_events": int(rng.integers(1, 7)),
        "name": name,
    }
    if "known_fraud_share" in labels:
        entry["delay"] = ("30m", "6h")[int(rng.integers(2))]
    return entry


def reference(data: pd.DataFrame | TransactionBatch, feature_set: FeatureSet) -> np.ndarray:
    """Every feature of every row (whole stream, labels from its own rows), by brute force: the row
    features from the row alone (calendar and ages in plain Python), each key feature from the key's
    strictly earlier events in the window and the labels known before the row."""
    batch = data if isinstance(data, TransactionBatch) else TransactionBatch.from_frame(data)
    events = feature_set.events(batch)
    cols = feature_set.columns(batch)
    ts = batch.timestamp
    n = len(batch)
    out = np.full((n, len(feature_set.names)), np.nan)
    col = 0
    for entry in feature_set.entries:
        if isinstance(entry, S.KeyFeatures | S.NetworkFeatures):
            continue
        width = _row_entry(entry, feature_set, cols, out, col)
        col += width
    networks = [e for e in feature_set.entries if isinstance(e, S.NetworkFeatures)]
    for program, entry in zip(feature_set.networks, networks, strict=True):
        for r in range(n):
            out[r, program.col0 : program.col0 + program.width] = _network(entry, r, batch, cols)
    entries = [e for e in feature_set.entries if isinstance(e, S.KeyFeatures)]
    for group, entry in zip(feature_set.groups, entries, strict=True):
        key = events[group.column].tolist()
        col = group.col0
        by_key: dict[Any, list[int]] = {}
        for j, k in enumerate(key):
            if k is not None and k == k:
                by_key.setdefault(k, []).append(j)
        for agg in entry.aggregates:
            width = _width(agg)
            for r in range(n):
                if key[r] is None or key[r] != key[r]:
                    continue
                t = ts[r]
                earlier = [j for j in by_key[key[r]] if ts[j] < t and ts[j] >= t - feature_set.retention]
                out[r, col : col + width] = _answer(agg, r, t, earlier, cols, batch, feature_set, events)
            col += width
    return out


def _network(entry: S.NetworkFeatures, r: int, batch: TransactionBatch, cols: Any) -> list[float]:
    """A network entry's features of row ``r``, from its definition: the links (the row's own values,
    and with two hops those of the node's most recent events), the most recent events of the node and
    of each link before the row and within the window, ties by arrival (the row order), and what
    they hold."""
    ts, n = batch.timestamp, len(batch)
    t = float(ts[r])
    node = cols[entry.network][r]
    width = len(entry.count) + len(entry.labels) + int(entry.age)
    if math.isnan(t) or _missing(node):
        return [math.nan] * width
    since = t - entry.window

    def carrying(field: str, value: Any) -> list[int]:
        column = cols[field]
        return [j for j in range(n) if column[j] == value and since <= ts[j] < t]

    def recent(field: str, value: Any) -> list[int]:
        return sorted(carrying(field, value), key=lambda j: (ts[j], j), reverse=True)[: entry.max_events]

    own = recent(entry.network, node) if entry.hops == 2 else []
    links: dict[str, list[Any]] = {}
    for field in entry.via:
        listed = [] if _missing(cols[field][r]) else [cols[field][r]]
        for j in own:
            value = cols[field][j]
            if not _missing(value) and value not in listed and len(listed) < entry.max_values:
                listed.append(value)
        links[field] = listed
    around = own + [j for field, listed in links.items() for value in listed for j in recent(field, value)]
    out = []
    for field in entry.count:
        values = {cols[field][j] for j in around if not _missing(cols[field][j])}
        out.append(float(len(values - {node} if field == entry.network else values)))
    members = {cols[entry.network][j] for j in around if not _missing(cols[entry.network][j])} - {node}
    frauds = [
        j
        for j in around
        if cols[entry.network][j] in members and batch.is_fraud[j] == 1 and batch.label_time[j] < t
    ]
    known = {cols[entry.network][j] for j in frauds}
    delay = entry.delay or 0.0
    old = {cols[entry.network][j] for j in around if cols[entry.network][j] in members and ts[j] < t - delay}
    for stat in entry.labels:
        if stat == "known_fraud_members":
            out.append(float(len(known)))
        elif stat == "known_fraud_share":
            out.append(len(known) / len(old) if old else math.nan)
        else:
            out.append(t - max(ts[j] for j in frauds) if frauds else math.nan)
    if entry.age:
        sources = [(entry.network, node)] if entry.hops == 2 else []
        sources += [(field, value) for field, listed in links.items() for value in listed]
        times = [ts[j] for field, value in sources for j in carrying(field, value)]
        out.append(t - min(times) if times else math.nan)
    return out


def _row_entry(entry: Any, fs: FeatureSet, cols: Any, out: np.ndarray, col: int) -> int:
    """Fill a row feature entry's columns from ``col``; returns how many it has."""
    n = out.shape[0]
    if isinstance(entry, S.RowFeature):
        if entry.row in fs.kinds or S.EXTRA_NAME.match(entry.row):
            out[:, col] = np.asarray(cols[entry.row], dtype=np.float64)
        else:
            out[:, col] = compile_value(entry.row, _number_kinds(fs)).evaluate(cols, n)
        return 1
    if isinstance(entry, S.CalendarFeature):
        for r, t in enumerate(np.asarray(cols[entry.field], dtype=np.float64).tolist()):
            if math.isfinite(t):
                hour = float(math.floor((t % S.DAY) / S.HOUR))
                weekday = float((math.floor(t / S.DAY) + 3) % 7)
            else:  # no hour nor weekday; the flags are then false
                hour = weekday = math.nan
            values = {
                "hour": hour,
                "weekday": weekday,
                "is_night": float(hour < 6),
                "is_weekend": float(weekday >= 5),
            }
            out[r, col : col + len(entry.calendar)] = [values[c] for c in entry.calendar]
        return len(entry.calendar)
    if isinstance(entry, S.AgeFeature):
        unit = {"seconds": 1.0, "minutes": 60.0, "hours": S.HOUR, "days": S.DAY, "years": 365.25 * S.DAY}
        at = np.asarray(cols[entry.age], dtype=np.float64).tolist()
        for r, (t, a) in enumerate(zip(cols["timestamp"].tolist(), at, strict=True)):
            out[r, col] = (t - a) / unit[entry.unit]
        return 1
    listed = list(entry.values or [])
    width = len(listed) + 1
    out[:, col : col + width] = 0.0
    for r, v in enumerate(cols[entry.categorical].tolist()):
        if v is not None:
            out[r, col + (listed.index(v) if v in listed else len(listed))] = 1.0
    return width


def _number_kinds(fs: FeatureSet) -> dict[str, str]:
    return {name: "string" if kind == "text" else "number" for name, kind in fs.kinds.items()}


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2.0 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def _width(agg: Any) -> int:
    if isinstance(agg, S.Aggregate):
        return len(agg.stats) * len(agg.windows)
    if isinstance(agg, S.Distinct):
        return len(agg.distinct) * len(agg.windows)
    if isinstance(agg, S.Since):
        return len(agg.since)
    if isinstance(agg, S.Above):
        return len(agg.windows)
    if isinstance(agg, S.New):
        return len(agg.new)
    if isinstance(agg, S.Distance):
        return len(agg.distance)
    if isinstance(agg, S.Labels):
        windowed = [s for s in agg.labels if s in ("known_fraud", "fraud_rate", "known_fraud_share")]
        return len(windowed) * len(agg.windows) + len(agg.labels) - len(windowed)
    return 1


def _values(feature_set: FeatureSet, cols: Any, name: str, events: Any) -> np.ndarray:
    if name in feature_set.kinds:
        return np.asarray(cols[name], dtype=np.float64)
    return events["=" + name.strip()]


def _passes(feature_set: FeatureSet, cols: Any, where: str | None, n: int, events: Any) -> np.ndarray:
    if where is None:
        return np.ones(n, dtype=bool)
    return events["?" + where.strip()] > 0.5


def _answer(
    agg: Any,
    r: int,
    t: float,
    earlier: list[int],
    cols: Any,
    batch: TransactionBatch,
    fs: FeatureSet,
    events: Any,
) -> list[float]:
    n = len(batch)
    ts = batch.timestamp
    amount = batch.amount
    nan = math.nan

    def within(w: float, where: str | None = None) -> list[int]:
        ok = _passes(fs, cols, where, n, events)
        return [j for j in earlier if ts[j] >= t - w and ok[j]]

    def counted(w: float, where: str | None = None) -> list[int]:
        """The events a count sees: those with an amount (a count shares the amount's stream)."""
        return [j for j in within(w, where) if not math.isnan(amount[j])]

    def numbers(w: float, of: str, where: str | None = None) -> list[float]:
        v = _values(fs, cols, of, events)
        return [float(v[j]) for j in within(w, where) if not math.isnan(v[j])]

    if isinstance(agg, S.Aggregate):
        out = []
        for w in agg.windows:
            vals = numbers(w, agg.of, agg.where)
            for stat in agg.stats:
                out.append(_stat(stat, vals))
        return out
    if isinstance(agg, S.Distinct):
        out = []
        for field in agg.distinct:
            values = cols[field]
            for w in agg.windows:
                out.append(float(len({values[j] for j in within(w, agg.where) if not _missing(values[j])})))
        return out
    if isinstance(agg, S.Since):
        held = counted(fs.retention, agg.where)
        return [
            t - (max(ts[held]) if which == "last" else min(ts[held])) if held else nan for which in agg.since
        ]
    if isinstance(agg, S.Ratio):
        vals = numbers(agg.window, agg.of or agg.ratio, agg.where)
        x = _values(fs, cols, agg.ratio, events)[r]
        to = _stat(agg.to, vals)
        return [x / to if vals and to > 0 else nan]
    if isinstance(agg, S.ZScore):
        vals = numbers(agg.window, agg.zscore)
        x = _values(fs, cols, agg.zscore, events)[r]
        if len(vals) < 2:
            return [nan]
        mean, std = _stat("mean", vals), _stat("std", vals)
        return [(x - mean) / max(std, 0.01 * mean + 1e-9)]
    if isinstance(agg, S.Above):
        out = []
        for w in agg.windows:
            vals = numbers(w, agg.of, agg.where)
            if not vals:
                out.append(nan if agg.share else 0.0)
                continue
            above = sum(v > agg.above * float(np.median(vals)) for v in vals)
            out.append(above / len(vals) if agg.share else float(above))
        return out
    if isinstance(agg, S.New):
        out = []
        for field in agg.new:
            values = cols[field]
            mine = values[r]
            out.append(nan if _missing(mine) else (0.0 if any(values[j] == mine for j in earlier) else 1.0))
        return out
    if isinstance(agg, S.Distance):
        lat, lon = np.asarray(cols["latitude"], np.float64), np.asarray(cols["longitude"], np.float64)
        located = [j for j in earlier if not math.isnan(lat[j])]
        if not located or math.isnan(lat[r]):
            return [nan] * len(agg.distance)
        j = max(located, key=lambda j: (ts[j], j))  # the latest; among equal times the last to arrive
        km = _haversine(lat[j], lon[j], lat[r], lon[r])
        speed = km / max((t - ts[j]) / 3600.0, 1.0 / 60.0)
        return [km if place == "distance_km" else speed for place in agg.distance]
    out = []
    known_rows = lambda w: [  # noqa: E731
        j for j in within(w) if batch.is_fraud[j] == 1 and batch.label_time[j] < t
    ]
    for w in agg.windows:
        for stat in agg.labels:
            if stat == "known_fraud":
                out.append(float(len(known_rows(w))))
            elif stat == "fraud_rate":
                count = len(counted(w))
                out.append(len(known_rows(w)) / count if count else nan)
            elif stat == "known_fraud_share":
                old = len([j for j in counted(w) if ts[j] < t - agg.delay])
                out.append(len(known_rows(w)) / old if old else nan)
    longest = max(agg.windows)
    for stat in agg.labels:
        if stat == "secs_since_known_fraud":
            known = known_rows(longest)
            out.append(t - max(ts[known]) if known else nan)
        elif stat == "secs_since_first_known_fraud":
            known = known_rows(longest)
            out.append(t - min(ts[known]) if known else nan)
        elif stat == "known_fraud_span":
            known = known_rows(longest)
            out.append(max(ts[known]) - min(ts[known]) if known else nan)
    return out


def _missing(value: Any) -> bool:
    """An identifier that is not there: ``None``, or NaN where a frame held one."""
    return value is None or value != value


def _stat(stat: str, vals: list[float]) -> float:
    if not vals:
        return 0.0 if stat in ("count", "sum") else math.nan
    a = np.array(vals)
    if stat == "count":
        return float(len(vals))
    if stat == "sum":
        return float(a.sum())
    if stat == "mean":
        return float(a.mean())
    if stat == "min":
        return float(a.min())
    if stat == "max":
        return float(a.max())
    if stat == "median":
        return float(np.median(a))
    if stat.startswith("p"):
        return float(np.quantile(a, int(stat[1:]) / 100))
    mean = a.sum() / len(a)
    return math.sqrt(max(float((a * a).sum() / len(a) - mean * mean), 0.0))
