"""Compiled loops behind the feature engine.

Rows arrive sorted by (entity, event time). For each row to answer, one backward pass over the
entity's earlier events (strictly earlier timestamps, at most ``retention`` back) fills every nested
window at once. Sums are taken fresh for each row in the same order, so a value does not depend on
how much older history happened to be in the batch: live state and a whole dataset agree exactly.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

EARTH_RADIUS_KM = 6371.0088


@njit(cache=True)
def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@njit(cache=True)
def _window_values(vals, ts, lo, hi, vcol, fcol, since):  # pragma: no cover - compiled
    """The values of stream ``(vcol, fcol)`` among context events ``lo..hi-1`` at or after ``since``."""
    buf = np.empty(hi - lo, np.float64)
    m = 0
    for j in range(hi - 1, lo - 1, -1):
        if ts[j] < since:
            break
        if fcol >= 0 and not vals[j, fcol] > 0.5:
            continue
        v = vals[j, vcol]
        if not math.isnan(v):
            buf[m] = v
            m += 1
    return buf[:m]


@njit(cache=True)
def _quantile(values, q):  # pragma: no cover - compiled
    """The ``q`` quantile of ``values``, linear between the two nearest (numpy's default method)."""
    ordered = np.sort(values)
    at = q * (ordered.shape[0] - 1)
    lo = math.floor(at)
    hi = min(lo + 1, ordered.shape[0] - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo)


@njit(cache=True)
def group_features(
    bounds, ts, out_row, bwin, vals, streams, cps, dslots, nov, locs,
    lbounds, l_tx, l_label, ops, params, out, col0,
):  # fmt: skip  # pragma: no cover - compiled
    """Fill ``out[out_row[i], col0 + o]`` for every row ``i`` with ``out_row[i] >= 0`` and operation ``o``.

    Rows are sorted by (key, event time); ``bounds`` delimit the keys. ``bwin`` holds the ascending
    window lengths, the last one being the retention. ``vals`` holds the float columns the program
    reads (a row per event); ``streams`` pairs a value column (-1: none) with a filter column (-1: none,
    else an event counts where it is above 0.5); an event whose value is NaN is left out of its stream.
    ``cps`` holds identifier codes (-1 for missing), ``dslots`` pairs a code column with a filter for a
    distinct count, ``nov`` lists the code columns checked for first sight, ``locs`` the latitude and
    longitude columns (-1: none). ``lbounds``/``l_tx``/``l_label`` are each key's fraud labels by
    transaction time. ``ops`` holds ``(operation, stream or slot, window, row value column)`` per
    output column (see :mod:`fraudstream.features.plan`), ``params`` a number for each.

    For each row, one backward pass over the key's strictly earlier events fills every window's
    accumulators at once; sums are taken fresh per row in the same order, so a value does not depend
    on how much older history the batch happened to carry.
    """
    n_b = bwin.shape[0]
    n_s = streams.shape[0]
    n_d = dslots.shape[0]
    n_m = nov.shape[0]
    n_o = ops.shape[0]
    lat_c, lon_c = locs[0], locs[1]
    max_code = 1
    for d in range(n_d):
        c = dslots[d, 0]
        for j in range(cps.shape[0]):
            max_code = max(max_code, cps[j, c] + 1)
    mark = np.full((max(n_d, 1), max_code), -1, np.int64)
    ns = max(n_s, 1)
    times = np.zeros((2, ns))  # latest and earliest event time per stream, within the retention
    last_t, first_t = times[0], times[1]
    snap_n = np.zeros((n_b, ns), np.int64)
    snaps = np.zeros((4, n_b, ns))
    snap_s, snap_s2, snap_mx, snap_mn = snaps[0], snaps[1], snaps[2], snaps[3]
    ints = np.zeros((n_b + 1, max(n_d, 1)), np.int64)
    snap_d, dcount = ints[:n_b], ints[n_b]
    found = np.zeros(max(n_m, 1), np.bool_)
    # a row's known frauds per window (-1: not counted yet), the latest and the earliest of them
    known_in = np.full(n_b, -1, np.int64)
    known_span = np.zeros((2, n_b))
    others = n_d > 0 or n_m > 0 or lat_c >= 0
    for g in range(bounds.shape[0] - 1):
        a, b = bounds[g], bounds[g + 1]
        for i in range(a, b):
            row = out_row[i]
            if row < 0:
                continue
            t = ts[i]
            hi = i
            while hi > a and ts[hi - 1] >= t:
                hi -= 1
            # One backward pass per stream, its sums in scalars: the same order for every row.
            for q in range(n_s):
                f, vc = streams[q, 1], streams[q, 0]
                cnt, s, s2, mx, mn = 0, 0.0, 0.0, -np.inf, np.inf
                last, first = np.nan, np.nan
                k = 0
                for j in range(hi - 1, a - 1, -1):
                    tj = ts[j]
                    while k < n_b and tj < t - bwin[k]:
                        snap_n[k, q], snap_s[k, q], snap_s2[k, q] = cnt, s, s2
                        snap_mx[k, q], snap_mn[k, q] = mx, mn
                        k += 1
                    if k == n_b:
                        break
                    if f >= 0 and not vals[j, f] > 0.5:
                        continue
                    if vc >= 0:
                        v = vals[j, vc]
                        if math.isnan(v):
                            continue
                        s += v
                        s2 += v * v
                        mx = max(mx, v)
                        mn = min(mn, v)
                    cnt += 1
                    if math.isnan(last):
                        last = tj
                    first = tj
                while k < n_b:
                    snap_n[k, q], snap_s[k, q], snap_s2[k, q] = cnt, s, s2
                    snap_mx[k, q], snap_mn[k, q] = mx, mn
                    k += 1
                last_t[q], first_t[q] = last, first
            # One more for distinct counts, first sight and the previous location.
            dcount[:] = 0
            found[:] = False
            loc = False
            plat, plon, pt = 0.0, 0.0, 0.0
            if others:
                k = 0
                for j in range(hi - 1, a - 1, -1):
                    tj = ts[j]
                    while k < n_b and tj < t - bwin[k]:
                        snap_d[k, :] = dcount
                        k += 1
                    if k == n_b:
                        break
                    for d in range(n_d):
                        f = dslots[d, 1]
                        if f >= 0 and not vals[j, f] > 0.5:
                            continue
                        code = cps[j, dslots[d, 0]]
                        if code >= 0 and mark[d, code] != i:
                            mark[d, code] = i
                            dcount[d] += 1
                    for m in range(n_m):
                        c = nov[m]
                        if cps[j, c] >= 0 and cps[j, c] == cps[i, c]:
                            found[m] = True
                    if lat_c >= 0 and not loc and not math.isnan(vals[j, lat_c]):
                        loc = True
                        plat, plon, pt = vals[j, lat_c], vals[j, lon_c], tj
                while k < n_b:
                    snap_d[k, :] = dcount
                    k += 1

            la, lb = 0, 0
            if lbounds.shape[0] > 0:
                la, lb = lbounds[g], lbounds[g + 1]
            known_in[:] = -1
            for o in range(n_o):
                op, q, w, vr = ops[o, 0], ops[o, 1], ops[o, 2], ops[o, 3]
                col = col0 + o
                if op <= 6 or (op >= 10 and op <= 15) or op == 23 or op == 24:
                    nw = snap_n[w, q]
                    total = snap_s[w, q]
                    mean = total / nw if nw > 0 else np.nan
                    if op == 0:
                        out[row, col] = nw
                    elif op == 1:
                        out[row, col] = total
                    elif op == 2:
                        out[row, col] = mean
                    elif op == 3:
                        out[row, col] = snap_mn[w, q] if nw > 0 else np.nan
                    elif op == 4:
                        out[row, col] = snap_mx[w, q] if nw > 0 else np.nan
                    elif op == 5:
                        out[row, col] = (
                            math.sqrt(max(snap_s2[w, q] / nw - mean * mean, 0.0)) if nw > 0 else np.nan
                        )
                    elif op == 10:
                        x = vals[i, vr]
                        out[row, col] = x / mean if nw > 0 and mean > 0 else np.nan
                    elif op == 12:
                        x = vals[i, vr]
                        top = snap_mx[w, q]
                        out[row, col] = x / top if nw > 0 and top > 0 else np.nan
                    elif op == 13:
                        std = math.sqrt(max(snap_s2[w, q] / nw - mean * mean, 0.0)) if nw > 0 else np.nan
                        x = vals[i, vr]
                        out[row, col] = (x - mean) / max(std, 0.01 * mean + 1e-9) if nw > 1 else np.nan
                    else:  # order statistics: the window's values, gathered again
                        if nw == 0:
                            out[row, col] = np.nan if op != 14 else 0.0
                            continue
                        window = _window_values(vals, ts, a, hi, streams[q, 0], streams[q, 1], t - bwin[w])
                        if op == 23 or op == 24:
                            level = _quantile(window, params[o])
                            if op == 23:
                                out[row, col] = level
                            else:
                                x = vals[i, vr]
                                out[row, col] = x / level if level > 0 else np.nan
                            continue
                        med = np.median(window)
                        if op == 6:
                            out[row, col] = med
                        elif op == 11:
                            x = vals[i, vr]
                            out[row, col] = x / med if med > 0 else np.nan
                        else:
                            above = 0
                            for v in window:
                                if v > params[o] * med:
                                    above += 1
                            out[row, col] = above if op == 14 else above / nw
                elif op == 7:
                    out[row, col] = snap_d[w, q]
                elif op == 8:
                    out[row, col] = t - last_t[q]
                elif op == 9:
                    out[row, col] = t - first_t[q]
                elif op == 16:
                    c = nov[q]
                    out[row, col] = np.nan if cps[i, c] < 0 else (0.0 if found[q] else 1.0)
                elif op == 17 or op == 18:
                    if loc and not math.isnan(vals[i, lat_c]):
                        dist = _haversine(plat, plon, vals[i, lat_c], vals[i, lon_c])
                        out[row, col] = dist if op == 17 else dist / max((t - pt) / 3600.0, 1.0 / 60.0)
                    else:
                        out[row, col] = np.nan
                else:  # the labels known before t of the key's transactions in the window
                    if known_in[w] < 0:  # counted once per window, whichever operations read it
                        p = la + np.searchsorted(l_tx[la:lb], t - bwin[w])
                        count = 0
                        latest, earliest = np.nan, np.nan
                        for r in range(p, lb):
                            if l_tx[r] >= t:
                                break
                            if l_label[r] < t:
                                count += 1
                                latest = l_tx[r]
                                if math.isnan(earliest):
                                    earliest = l_tx[r]
                        known_in[w], known_span[0, w], known_span[1, w] = count, latest, earliest
                    known, latest, earliest = known_in[w], known_span[0, w], known_span[1, w]
                    if op == 19:
                        out[row, col] = known
                    elif op == 20:
                        nw = snap_n[w, q]
                        out[row, col] = known / nw if nw > 0 else np.nan
                    elif op == 25:  # among the events old enough to carry a label (older than the delay)
                        old = snap_n[w, q] - snap_n[vr, q]
                        out[row, col] = known / old if old > 0 else np.nan
                    elif op == 21:
                        out[row, col] = t - latest
                    elif op == 22:
                        out[row, col] = t - earliest
                    else:
                        out[row, col] = latest - earliest
