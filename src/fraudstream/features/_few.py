"""The live path's few transactions: each entity's features from the state's columns, compiled.

An API request scores one transaction (a few, when requests arrive together). Building a
:class:`~fraudstream.state.base.History` and the kernel's inputs for it took some sixty Python and
numpy calls per entity, most of the request's feature time. Here the state lends a key's rows in
place (:meth:`FeatureState.key_events`), and one compiled call picks those at or after ``since``,
orders them by time then arrival, adds the batch's transactions of that key and hands
:func:`~fraudstream.features.kernels.group_features` the context the batch path builds: the values
are the same to the bit (unit tests compare both paths).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from fraudstream.features.kernels import group_features
from fraudstream.features.plan import Group
from fraudstream.state.base import EventSchema, FeatureState, KeyEvents

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
    rows, ordered, since, floats_log, codes_log, picks, query, query_codes, labels, vals_f, cps_f,
    bwin, streams, dslots, nov, locs, ops, params, out, col0,
):  # fmt: skip  # pragma: no cover - compiled
    """Fill ``out[picks, col0:]`` for the batch's rows ``picks`` (in batch order), which share one key,
    from the key's ``rows`` in the state's log: ``floats_log`` (a row per float field of the schema,
    timestamps first) and ``codes_log`` (a row per identifier field). ``query`` and ``query_codes``
    hold the batch's own floats and codes the same way, a column per row; ``vals_f`` and ``cps_f``
    pick the fields the group's program reads."""
    ts_log = floats_log[0]
    held = _context(rows, ordered, since, ts_log)
    m, k = held.shape[0], picks.shape[0]
    n = m + k
    n_v, n_c = vals_f.shape[0], cps_f.shape[0]
    ts = np.empty(n)
    vals = np.empty((n, n_v))
    cps = np.empty((n, n_c), np.int64)
    out_row = np.full(n, -1, np.int64)
    for i in range(m):  # the held events, a column at a time
        ts[i] = ts_log[held[i]]
    for c in range(n_v):
        column = floats_log[vals_f[c]]
        for i in range(m):
            vals[i, c] = column[held[i]]
    for c in range(n_c):
        coded = codes_log[cps_f[c]]
        for i in range(m):
            cps[i, c] = coded[held[i]]
    for i in range(m, n):  # then the batch's rows of this key
        q = picks[i - m]
        out_row[i] = q
        ts[i] = query[0, q]
        for c in range(n_v):
            vals[i, c] = query[vals_f[c], q]
        for c in range(n_c):
            cps[i, c] = query_codes[cps_f[c], q]
    if k > 1:  # the batch's rows see each other: the context in time order, history first among equals
        order = np.argsort(ts, kind="mergesort")
        ts, vals, cps, out_row = ts[order], vals[order], cps[order], out_row[order]
    for d in range(dslots.shape[0]):
        c = dslots[d, 0]
        cps[:, c] = _ranks(cps[:, c].copy())
    if labels.shape[0] > 0:
        recent = labels[labels[:, 0] >= since]
        by_time = np.argsort(recent[:, 0], kind="mergesort")
        l_tx, l_time = recent[by_time, 0].copy(), recent[by_time, 1].copy()
    else:
        l_tx, l_time = np.empty(0), np.empty(0)
    bounds = np.array([0, n], np.int64)
    lbounds = np.array([0, l_tx.shape[0]], np.int64)
    group_features(
        bounds, ts, out_row, bwin, vals, streams, cps, dslots, nov, locs, lbounds, l_tx, l_time,
        ops, params, out, col0,
    )  # fmt: skip


def few_transactions(
    groups: list[Group],
    schema: EventSchema,
    retention: float,
    events: Mapping[str, np.ndarray],
    state: FeatureState,
    out: np.ndarray,
) -> bool:
    """Fill the key features' columns of ``out`` for a batch of a few new transactions, one compiled
    call per group and key; ``False``, with nothing written, where this path does not apply: more
    than :data:`FEW_ROWS` rows, a state that lends no events, a transaction it holds or may hold, one
    id twice, or a time that is not finite. The batch path answers those."""
    ids = events["transaction_id"]
    n = ids.shape[0]
    times = events["timestamp"].tolist()
    if n > FEW_ROWS or not all(math.isfinite(t) for t in times):
        return False
    recorded = state.recorded(ids)
    if recorded is None or recorded.any() or len(set(ids.tolist())) < n:
        return False
    work: list[tuple[Group, float, KeyEvents, np.ndarray]] = []
    for group in groups:
        members_of: dict[Any, list[int]] = {}
        for i, key in enumerate(events[group.column].tolist()):
            if key is not None and key == key:
                members_of.setdefault(key, []).append(i)
        if not members_of:
            continue
        since = min(times[i] for picks in members_of.values() for i in picks) - retention
        for key, members in members_of.items():
            held = state.key_events(group.name, key)
            if held is None:
                return False
            work.append((group, since, held, np.array(members, dtype=np.int64)))
    coded = [state.codes(f, events[f]) for f in schema.ids]
    if any(c is None for c in coded):
        return False
    query_codes = np.array(coded, dtype=np.int64).reshape(len(schema.ids), n)
    query = np.array([events[f] for f in schema.floats], dtype=np.float64)
    for group, since, ev, picks in work:
        labels = np.array(ev.labels, dtype=np.float64) if ev.labels else _NO_LABELS
        key_features(
            ev.rows, ev.ordered, since, ev.floats, ev.codes, picks, query, query_codes, labels,
            group.vals_f, group.cps_f,
            group.bwin, group.streams, group.dslots, group.nov, group.locs, group.ops, group.params,
            out, group.col0,
        )  # fmt: skip
    return True
