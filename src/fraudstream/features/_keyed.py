"""A key entry's features for a whole batch, in one compiled call.

The batch's rows are grouped by key. Each key's context is its stored events in the window (a slice of
the state's index, already in time order) with the batch's new rows merged in by time: stored events
first among equal times, then the batch's rows in batch order. A row whose transaction the state
already holds (a redelivery) is answered by its stored event, if that event is in the context; a
second row of one transaction shares the first's answer. The labels known for each key are attached,
and :func:`~fraudstream.features.kernels.group_features`, the one definition of the features, answers
every row. Nothing is done per key in Python, so one transaction and a million take the same path.

The window starts ``retention`` before the batch's earliest row with a key; a row without a time
leaves no start, and the entry then reads no stored events for the whole batch.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fraudstream.features.kernels import group_features

NO_ROWS = np.empty(0, dtype=np.int64)
NO_FLOATS = np.empty(0, dtype=np.float64)
NO_MATRIX = np.empty((0, 0), dtype=np.float64)
NO_CODES = np.empty((0, 0), dtype=np.int64)


@njit(cache=True)
def _by_time(ts):  # pragma: no cover - compiled
    """Positions of ``ts`` in ascending order, stable, NaN last (as ``np.lexsort`` orders them)."""
    n = ts.shape[0]
    finite = np.empty(n, np.int64)
    nans = np.empty(n, np.int64)
    m, k = 0, 0
    for i in range(n):
        if math.isnan(ts[i]):
            nans[k] = i
            k += 1
        else:
            finite[m] = i
            m += 1
    finite = finite[:m]
    out = np.empty(n, np.int64)
    out[:m] = finite[np.argsort(ts[finite], kind="mergesort")]
    out[m:] = nans[:k]
    return out


@njit(cache=True)
def _first_code(codes, values, lo, hi):  # pragma: no cover - compiled
    """Position of ``values`` in the sorted ``codes[lo:hi]``, -1 when absent."""
    while lo < hi:
        mid = (lo + hi) // 2
        if codes[mid] < values:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _cut(rows, s, n, ts_log, since):  # pragma: no cover - compiled
    """The first of ``rows[s : s + n]`` (in time order) at or after ``since``."""
    lo, hi = s, s + n
    while lo < hi:
        mid = (lo + hi) // 2
        if ts_log[rows[mid]] < since:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _after(runs, lo, hi, ts_log, t):  # pragma: no cover - compiled
    """The first of ``runs[lo:hi]`` (in time order) later than ``t``."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ts_log[runs[mid]] > t:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True)
def _held(
    runs, lo, hi, at, cts, vals, cps, out_row, ts_log, floats_log, codes_log, vals_f, cps_f
):  # fmt: skip  # pragma: no cover - compiled
    """Copy the stored events ``runs[lo:hi]`` into the context from position ``at``; returns where
    the next goes."""
    n = hi - lo
    held = runs[lo:hi]
    out_row[at : at + n] = -1
    into = cts[at : at + n]
    for i in range(n):
        into[i] = ts_log[held[i]]
    block = vals[at : at + n]
    for c in range(vals_f.shape[0]):
        column = floats_log[vals_f[c]]
        for i in range(n):
            block[i, c] = column[held[i]]
    coded_block = cps[at : at + n]
    for c in range(cps_f.shape[0]):
        coded = codes_log[cps_f[c]]
        for i in range(n):
            coded_block[i, c] = coded[held[i]]
    return at + n


@njit(cache=True)
def key_features(
    key_codes, query, query_codes, first_of, stored, is_fraud, label_time, batch_labels, retention,
    dense, seen, floats_log, codes_log, label_log,
    key_field, start, length, runs, l_start, l_length, l_runs, vals_f, cps_f,
    bwin, streams, dslots, nov, locs, ops, params, labelled, out, col0,
):  # fmt: skip  # pragma: no cover - compiled
    """Fill ``out[:, col0 : col0 + width]`` for the rows of a batch with a key (``key_codes >= 0``).

    The batch: ``query`` and ``query_codes`` its float columns and identifier codes as the state holds
    them (a row per row, a column per field of the schema; times first), ``first_of`` the first row of
    each row's transaction, ``stored`` where the state holds each row's transaction (-1: nowhere),
    ``is_fraud``/``label_time`` its labels (read when ``batch_labels``). The state: ``start``,
    ``length``, ``runs`` index its events by key code, ``l_start``, ``l_length``, ``l_runs`` its
    labelled events; ``floats_log``/``codes_log``/``label_log`` its columns, ``vals_f``/``cps_f``
    pick those the program reads, ``key_field`` the row of ``codes_log`` that codes the key.
    ``dense`` says the codes may be far apart (the state's): those counted distinct are then renumbered
    through ``seen``, a table of -1 longer than the largest code, left as found. ``labelled`` says the
    program reads labels; the rest is the group's program (see
    :func:`~fraudstream.features.kernels.group_features`)."""
    n = key_codes.shape[0]
    width = ops.shape[0]
    ts = query[:, 0]
    present = np.flatnonzero(key_codes >= 0)
    if present.shape[0] == 0:
        return
    since = np.inf
    for r in present:
        if math.isnan(ts[r]):
            since = np.nan
            break
        since = min(since, ts[r])
    since -= retention
    # the batch's keys, each with its rows in batch order
    by_key = present[np.argsort(key_codes[present], kind="mergesort")]
    sorted_codes = key_codes[by_key]
    heads = np.empty(by_key.shape[0] + 1, np.int64)
    g = 0
    for j in range(by_key.shape[0]):
        if j == 0 or sorted_codes[j] != sorted_codes[j - 1]:
            heads[g] = j
            g += 1
    heads[g] = by_key.shape[0]
    n_keys = g
    keys = np.empty(n_keys, np.int64)
    for k in range(n_keys):
        keys[k] = sorted_codes[heads[k]]
    ts_log = floats_log[0]
    # rows answered by their stored event, in the context of that event's key
    answer = np.full(n, -1, np.int64)  # the key (position in keys) whose stored event answers the row
    for r in present:
        s = stored[r]
        if s >= 0 and ts_log[s] >= since:
            k = _first_code(keys, codes_log[key_field, s], 0, n_keys)
            if k < n_keys and keys[k] == codes_log[key_field, s]:
                answer[r] = k
    # every other row: the first of its transaction joins the context, later ones share its answer
    owner = np.full(n, -1, np.int64)
    first_here = np.full(n, -1, np.int64)
    fresh = np.zeros(n, np.bool_)
    for r in present:
        if answer[r] >= 0:
            continue
        f = first_of[r]
        if first_here[f] < 0:
            first_here[f] = r
            fresh[r] = True
        owner[r] = first_here[f]
    # each key's stored events in the window
    lo = np.zeros(n_keys, np.int64)
    hi = np.zeros(n_keys, np.int64)
    l_lo = np.zeros(n_keys, np.int64)
    l_hi = np.zeros(n_keys, np.int64)
    total = 0
    labels_total = 0
    for k in range(n_keys):
        c = keys[k]
        if not math.isnan(since) and c < start.shape[0] and length[c] > 0:
            lo[k] = _cut(runs, start[c], length[c], ts_log, since)
            hi[k] = start[c] + length[c]
        if labelled and not math.isnan(since) and c < l_start.shape[0] and l_length[c] > 0:
            l_lo[k] = _cut(l_runs, l_start[c], l_length[c], ts_log, since)
            l_hi[k] = l_start[c] + l_length[c]
        total += hi[k] - lo[k]
        labels_total += l_hi[k] - l_lo[k]
        for j in range(heads[k], heads[k + 1]):
            if fresh[by_key[j]]:
                total += 1
                if batch_labels and is_fraud[by_key[j]] == 1 and not math.isnan(label_time[by_key[j]]):
                    labels_total += 1
    n_v, n_c = vals_f.shape[0], cps_f.shape[0]
    cts = np.empty(total)
    vals = np.empty((total, n_v))
    cps = np.empty((total, n_c), np.int64)
    out_row = np.empty(total, np.int64)
    bounds = np.empty(n_keys + 1, np.int64)
    l_tx = np.empty(labels_total)
    l_label = np.empty(labels_total)
    lbounds = np.empty(n_keys + 1 if labelled else 0, np.int64)
    at, l_at = 0, 0
    for k in range(n_keys):
        bounds[k] = at
        added = np.empty(heads[k + 1] - heads[k], np.int64)
        m = 0
        for j in range(heads[k], heads[k + 1]):
            if fresh[by_key[j]]:
                added[m] = by_key[j]
                m += 1
        added = added[:m]
        if m > 1:
            added = added[_by_time(ts[added])]
        i = lo[k]
        for a in range(m):  # stored events first among equal times; NaN times last
            r = added[a]
            t = ts[r]
            p = hi[k]
            if not math.isnan(t):
                p = _after(runs, i, hi[k], ts_log, t)
            at = _held(runs, i, p, at, cts, vals, cps, out_row, ts_log, floats_log, codes_log, vals_f, cps_f)
            i = p
            cts[at] = t
            for c in range(n_v):
                vals[at, c] = query[r, vals_f[c]]
            for c in range(n_c):
                cps[at, c] = query_codes[r, cps_f[c]]
            out_row[at] = r
            at += 1
        at = _held(runs, i, hi[k], at, cts, vals, cps, out_row, ts_log, floats_log, codes_log, vals_f, cps_f)
        if labelled:
            lbounds[k] = l_at
            l0 = l_at
            for i in range(l_lo[k], l_hi[k]):
                r = l_runs[i]
                l_tx[l_at] = ts_log[r]
                l_label[l_at] = label_log[r]
                l_at += 1
            if batch_labels:
                for r in added:
                    if is_fraud[r] == 1 and not math.isnan(label_time[r]):
                        l_tx[l_at] = ts[r]
                        l_label[l_at] = label_time[r]
                        l_at += 1
                if l_at - l0 > l_hi[k] - l_lo[k]:  # the batch's labels among the stored, by time
                    order = _by_time(l_tx[l0:l_at])
                    l_tx[l0:l_at] = l_tx[l0:l_at][order]
                    l_label[l0:l_at] = l_label[l0:l_at][order]
    bounds[n_keys] = at
    if labelled:
        lbounds[n_keys] = l_at
    # a row answered by a stored event: the first such row is that event's, the others copy it
    for r in present:
        k = answer[r]
        if k < 0:
            continue
        s = stored[r]
        t = ts_log[s]
        i = _after(runs, lo[k], hi[k], ts_log, t) - 1
        while runs[i] != s:  # among the events of its time
            i -= 1
        p = bounds[k] + i - lo[k]
        for j in range(heads[k], heads[k + 1]):  # the batch's rows placed before it: those earlier
            if fresh[by_key[j]] and ts[by_key[j]] < t:
                p += 1
        if out_row[p] < 0:
            out_row[p] = r
        owner[r] = out_row[p]
    if dense:  # codes counted distinct, numbered from 0 so that the kernel's tables stay small
        touched = np.empty(total, np.int64)
        for d in range(dslots.shape[0]):
            c = dslots[d, 0]
            done = False
            for e in range(d):
                done = done or dslots[e, 0] == c
            if done:
                continue
            top = 0
            for j in range(total):
                v = cps[j, c]
                if v >= 0:
                    if seen[v] < 0:
                        seen[v] = top
                        touched[top] = v
                        top += 1
                    cps[j, c] = seen[v]
            for j in range(top):  # leave the table as found
                seen[touched[j]] = -1
    group_features(
        bounds, cts, out_row, bwin, vals, streams, cps, dslots, nov, locs, lbounds, l_tx, l_label,
        ops, params, out, col0,
    )  # fmt: skip
    for r in present:
        o = owner[r]
        if o >= 0 and o != r:
            for c in range(width):
                out[r, col0 + c] = out[o, col0 + c]
