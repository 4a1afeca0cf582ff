"""The live path's few transactions: each entity's features from the state's columns, compiled.

An API request scores one transaction (a few, when requests arrive together). Building a
:class:`~fraudstream.state.base.History` and the kernel's inputs for it took some sixty Python and
numpy calls per entity, most of the request's feature time. Here the state lends a key's rows in
place (:meth:`FeatureState.key_events`), and one compiled call picks those at or after ``since``,
orders them by time then arrival, adds the batch's transactions of that key and hands
:func:`~fraudstream.features.kernels.entity_features` the context the batch path builds: the values
are the same to the bit (unit tests compare both paths).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from fraudstream.events.batch import TransactionBatch
from fraudstream.features._inputs import Layout
from fraudstream.features.definitions import transaction_values
from fraudstream.features.kernels import entity_features
from fraudstream.state.base import CODED_FIELDS, FeatureState, KeyEvents

_NO_LABELS = np.empty((0, 2))
FEW_ROWS = 16
"""Batches up to this many rows take this path (the API's, grouped from concurrent requests)."""


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
def key_features(
    rows, ordered, since, ts_log, amount_log, lat_log, lon_log, codes_log, picks, query, query_codes,
    labels, bwin, agg_b, cps_f, dist_b, nov_f, profile, ratio_b, label_b, out, col0,
):  # fmt: skip  # pragma: no cover - compiled
    """Fill ``out[picks, col0:]`` for the batch's rows ``picks`` (in batch order), which share one key,
    from the key's ``rows`` in the log columns ``*_log``. ``query`` holds the batch's times, amounts,
    latitudes and longitudes (a row each), ``query_codes`` its identifier codes (as ``codes_log``)."""
    held = _context(rows, ordered, since, ts_log)
    m, k = held.shape[0], picks.shape[0]
    n = m + k
    ts, amount = np.empty(n), np.empty(n)
    lat, lon = np.empty(n if profile else 0), np.empty(n if profile else 0)
    cps = np.empty((n, cps_f.shape[0]), np.int64)
    nov = np.empty((n, nov_f.shape[0]), np.int64)
    out_row = np.full(n, -1, np.int64)
    for i in range(n):
        if i < m:
            r = held[i]
            ts[i], amount[i] = ts_log[r], amount_log[r]
            if profile:
                lat[i], lon[i] = lat_log[r], lon_log[r]
            for c in range(cps_f.shape[0]):
                cps[i, c] = codes_log[cps_f[c], r]
            for c in range(nov_f.shape[0]):
                nov[i, c] = codes_log[nov_f[c], r]
        else:
            q = picks[i - m]
            out_row[i] = q
            ts[i], amount[i] = query[0, q], query[1, q]
            if profile:
                lat[i], lon[i] = query[2, q], query[3, q]
            for c in range(cps_f.shape[0]):
                cps[i, c] = query_codes[cps_f[c], q]
            for c in range(nov_f.shape[0]):
                nov[i, c] = query_codes[nov_f[c], q]
    if k > 1:  # the batch's rows see each other: the context in time order, history first among equals
        order = np.argsort(ts, kind="mergesort")
        ts, amount, out_row = ts[order], amount[order], out_row[order]
        cps, nov = cps[order], nov[order]
        if profile:
            lat, lon = lat[order], lon[order]
    for c in range(cps_f.shape[0]):
        cps[:, c] = _ranks(cps[:, c].copy())
    recent = labels[labels[:, 0] >= since]
    by_time = np.argsort(recent[:, 0], kind="mergesort")
    l_tx, l_time = recent[by_time, 0].copy(), recent[by_time, 1].copy()
    bounds = np.array([0, n], np.int64)
    lbounds = np.array([0, l_tx.shape[0]], np.int64)
    entity_features(
        bounds, ts, amount, out_row, bwin, agg_b, cps, dist_b, nov, lat, lon, profile, ratio_b,
        lbounds, l_tx, l_time, label_b, out, col0,
    )  # fmt: skip


def few_transactions(
    layouts: list[Layout], retention: float, batch: TransactionBatch, state: FeatureState, out: np.ndarray
) -> bool:
    """Fill the entity columns of ``out`` for a batch of a few new transactions, one compiled call per
    entity and key; ``False``, with nothing written, where this path does not apply: more than
    :data:`FEW_ROWS` rows, a state that lends no events, a transaction it holds or may hold, one id
    twice, or a time that is not finite. The batch path answers those."""
    n = len(batch)
    times = batch.timestamp.tolist()
    if n > FEW_ROWS or not all(math.isfinite(t) for t in times):
        return False
    recorded = state.recorded(batch.transaction_id)
    if recorded is None or recorded.any() or len(set(batch.transaction_id.tolist())) < n:
        return False
    work: list[tuple[Layout, float, KeyEvents, np.ndarray]] = []
    for layout in layouts:
        groups: dict[Any, list[int]] = {}
        for i, key in enumerate(getattr(batch, layout.spec.column).tolist()):
            if key is not None and key == key:
                groups.setdefault(key, []).append(i)
        if not groups:
            continue
        since = min(times[i] for picks in groups.values() for i in picks) - retention
        for key, members in groups.items():
            events = state.key_events(layout.spec.name, key)
            if events is None:
                return False
            work.append((layout, since, events, np.array(members, dtype=np.int64)))
    coded = [state.codes(f, getattr(batch, f)) for f in CODED_FIELDS]
    if any(c is None for c in coded):
        return False
    query_codes = np.array(coded, dtype=np.int64)
    query = np.array([batch.timestamp, batch.amount, batch.latitude, batch.longitude], dtype=np.float64)
    for layout, since, ev, picks in work:
        labels = np.array(ev.labels, dtype=np.float64) if ev.labels else _NO_LABELS
        key_features(
            ev.rows, ev.ordered, since, ev.timestamp, ev.amount, ev.latitude, ev.longitude, ev.codes,
            picks, query, query_codes, labels, layout.bwin, layout.agg_b, layout.cps_f, layout.dist_b,
            layout.nov_f, layout.spec.profile, layout.ratio_b, layout.label_b, out, layout.col0,
        )  # fmt: skip
    return True


def transaction_features_few(names: tuple[str, ...], batch: TransactionBatch, out: np.ndarray) -> bool:
    """:meth:`FeatureEngine._transaction_features` for a few rows, a row's floats at a time (a fraction
    of the array operations' fixed cost); ``False`` past :data:`FEW_ROWS` or for a time not finite."""
    if len(batch) > FEW_ROWS:
        return False
    columns = zip(
        batch.timestamp.tolist(), batch.amount.tolist(), batch.account_created_at.tolist(), strict=True
    )
    rows = []
    for ts, amount, created in columns:
        if not math.isfinite(ts):
            return False
        values = transaction_values(ts, amount, created)
        rows.append([values[name] for name in names])
    out[:, : len(names)] = rows
    return True
