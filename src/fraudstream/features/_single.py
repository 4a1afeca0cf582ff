"""The live path's batch of one: each entity's features from the state's columns, in one compiled call.

An API request scores one transaction. Building a :class:`~fraudstream.state.base.History` and the
kernel's inputs for it took some sixty Python and numpy calls per entity, most of the request's
feature time. Here the state lends the key's rows in place (:meth:`FeatureState.key_events`), and
one compiled call picks those at or after ``since``, orders them by time then arrival, appends the
transaction and hands :func:`~fraudstream.features.kernels.entity_features` that context: the one the
batch path builds, so the values are the same to the bit (a unit test compares both).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fraudstream.events.batch import TransactionBatch
from fraudstream.features._inputs import Layout
from fraudstream.features.definitions import DAY
from fraudstream.features.kernels import entity_features
from fraudstream.state.base import CODED_FIELDS, FeatureState, KeyEvents

_NO_LABELS = np.empty((0, 2))


@njit(cache=True)
def _ranks(codes):  # pragma: no cover - compiled
    """Codes renumbered 0, 1, ... by value (-1 stays -1): the kernel indexes a table by them."""
    out = np.full(codes.shape[0], -1, np.int64)
    rank, previous = -1, -1
    for i in np.argsort(codes):
        if codes[i] >= 0:
            if codes[i] != previous:
                rank += 1
                previous = codes[i]
            out[i] = rank
    return out


@njit(cache=True)
def _context(rows, ordered, since, ts_log):  # pragma: no cover - compiled
    """The rows at or after ``since`` (never a NaN time), by time then arrival."""
    if ordered:
        lo, hi = 0, rows.shape[0]
        while lo < hi:
            mid = (lo + hi) // 2
            if ts_log[rows[mid]] < since:
                lo = mid + 1
            else:
                hi = mid
        return rows[lo:]
    kept = np.empty(rows.shape[0], np.int64)
    m = 0
    for r in rows:
        if ts_log[r] >= since:
            kept[m] = r
            m += 1
    kept = kept[:m]
    return kept[np.argsort(ts_log[kept], kind="mergesort")]  # stable: arrival order among equals


@njit(cache=True)
def one_entity(
    rows, ordered, since, ts_log, amount_log, lat_log, lon_log, codes_log, query, query_codes, labels,
    bwin, agg_b, cps_f, dist_b, nov_f, profile, ratio_b, label_b, out, col0,
):  # fmt: skip  # pragma: no cover - compiled
    """Fill ``out[0, col0:]`` for the transaction ``query`` (time, amount, latitude, longitude; its
    identifier codes ``query_codes``) from its key's ``rows`` in the log columns ``*_log``."""
    picked = _context(rows, ordered, since, ts_log)
    m = picked.shape[0]
    ts, amount = np.empty(m + 1), np.empty(m + 1)
    n_geo = m + 1 if profile else 0
    lat, lon = np.empty(n_geo), np.empty(n_geo)
    cps = np.empty((m + 1, cps_f.shape[0]), np.int64)
    nov = np.empty((m + 1, nov_f.shape[0]), np.int64)
    for k in range(m + 1):
        r = picked[k] if k < m else -1
        ts[k] = ts_log[r] if k < m else query[0]
        amount[k] = amount_log[r] if k < m else query[1]
        if profile:
            lat[k] = lat_log[r] if k < m else query[2]
            lon[k] = lon_log[r] if k < m else query[3]
        for c in range(cps_f.shape[0]):
            cps[k, c] = codes_log[cps_f[c], r] if k < m else query_codes[cps_f[c]]
        for c in range(nov_f.shape[0]):
            nov[k, c] = codes_log[nov_f[c], r] if k < m else query_codes[nov_f[c]]
    for c in range(cps_f.shape[0]):
        cps[:, c] = _ranks(cps[:, c].copy())
    out_row = np.full(m + 1, -1, np.int64)
    out_row[m] = 0
    recent = labels[labels[:, 0] >= since]
    order = np.argsort(recent[:, 0], kind="mergesort")
    l_tx, l_time = recent[order, 0].copy(), recent[order, 1].copy()
    bounds = np.array([0, m + 1], np.int64)
    lbounds = np.array([0, l_tx.shape[0]], np.int64)
    entity_features(
        bounds, ts, amount, out_row, bwin, agg_b, cps, dist_b, nov, lat, lon, profile, ratio_b,
        lbounds, l_tx, l_time, label_b, out, col0,
    )  # fmt: skip


def one_transaction(
    layouts: list[Layout], retention: float, batch: TransactionBatch, state: FeatureState, out: np.ndarray
) -> bool:
    """Fill the entity columns of ``out`` (one row) for a batch of one new transaction; ``False``, with
    nothing written, where this path does not apply: a state that lends no events, a transaction it
    already holds or may hold, or one without a time. The batch path answers those."""
    t = float(batch.timestamp[0])
    recorded = state.recorded(batch.transaction_id)
    if not math.isfinite(t) or recorded is None or recorded[0]:
        return False
    found: list[tuple[Layout, KeyEvents]] = []
    for layout in layouts:
        key = getattr(batch, layout.spec.column)[0]
        if key is None or key != key:
            continue
        events = state.key_events(layout.spec.name, key)
        if events is None:
            return False
        found.append((layout, events))
    coded = [state.codes(f, getattr(batch, f)) for f in CODED_FIELDS]
    query_codes = np.array([c[0] for c in coded if c is not None], dtype=np.int64)
    if query_codes.shape[0] != len(CODED_FIELDS):
        return False
    query = np.array([t, batch.amount[0], batch.latitude[0], batch.longitude[0]])
    since = t - retention
    for layout, ev in found:
        labels = np.array(ev.labels, dtype=np.float64) if ev.labels else _NO_LABELS
        one_entity(
            ev.rows, ev.ordered, since, ev.timestamp, ev.amount, ev.latitude, ev.longitude, ev.codes,
            query, query_codes, labels, layout.bwin, layout.agg_b, layout.cps_f, layout.dist_b,
            layout.nov_f, layout.spec.profile, layout.ratio_b, layout.label_b, out, layout.col0,
        )  # fmt: skip
    return True


def transaction_features_one(names: tuple[str, ...], batch: TransactionBatch, out: np.ndarray) -> bool:
    """:meth:`FeatureEngine._transaction_features` for a batch of one, in plain floats (a tenth of the
    seven array operations' fixed cost); ``False`` for a time that is not finite."""
    ts = float(batch.timestamp[0])
    if not math.isfinite(ts):
        return False
    amount = float(batch.amount[0])
    hour = float(math.floor((ts % DAY) / 3600.0))
    weekday = float((math.floor(ts / DAY) + 3) % 7)
    values = {
        "amount": amount,
        "log_amount": float(np.log1p(amount)),
        "hour": hour,
        "weekday": weekday,
        "is_night": 1.0 if hour < 6 else 0.0,
        "is_weekend": 1.0 if weekday >= 5 else 0.0,
        "account_age_days": (ts - float(batch.account_created_at[0])) / DAY,
    }
    row = out[0]
    for i, name in enumerate(names):
        row[i] = values[name]
    return True
