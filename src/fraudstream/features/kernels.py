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
def dense_codes(codes):
    """Codes renumbered 0, 1, 2, ... in order of first appearance (-1 stays -1): what
    ``pandas.factorize`` gives for the values they stand for, in one pass over integers."""
    top = -1
    for c in codes:
        top = max(top, c)
    seen = np.full(top + 1, -1, np.int64)
    out = np.empty_like(codes)
    n = 0
    for i in range(codes.shape[0]):
        c = codes[i]
        if c < 0:
            out[i] = -1
        else:
            if seen[c] < 0:
                seen[c] = n
                n += 1
            out[i] = seen[c]
    return out


@njit(cache=True)
def merged_order(codes, ts, n_hist, groups):
    """``np.lexsort((ts, codes))`` and the group bounds, for a context whose first ``n_hist`` rows are
    already in that order (a history, by key then time): only the added rows are sorted, then merged
    in, history first among equals, as the stable sort places them. Added times must not be NaN."""
    n = codes.shape[0]
    added = np.arange(n_hist, n)
    added = added[np.argsort(ts[added], kind="mergesort")]
    added = added[np.argsort(codes[added], kind="mergesort")]
    order = np.empty(n, np.int64)
    counts = np.zeros(groups + 1, np.int64)
    i, j = 0, 0
    for k in range(n):
        if j == added.shape[0] or (
            i < n_hist
            and (codes[i] < codes[added[j]] or (codes[i] == codes[added[j]] and ts[i] <= ts[added[j]]))
        ):
            order[k] = i
            i += 1
        else:
            order[k] = added[j]
            j += 1
        counts[codes[order[k]] + 1] += 1
    return order, np.cumsum(counts)


@njit(cache=True)
def entity_features(
    bounds, ts, amount, out_row, bwin, agg_b, cps, dist_b, nov, lat, lon, profile, ratio_b,
    lbounds, l_tx, l_label, label_b, out, col0,
):  # fmt: skip
    """Fill ``out[out_row[i], col0:]`` for every row ``i`` with ``out_row[i] >= 0``.

    ``bwin`` holds the ascending window lengths, the last one being the retention; ``agg_b``,
    ``dist_b``, ``ratio_b`` and ``label_b`` point into it. ``cps`` and ``nov`` hold integer codes of
    counterpart columns (-1 when missing). ``lbounds``/``l_tx``/``l_label`` are the entity groups'
    fraud labels sorted by transaction time.
    """
    n_b = bwin.shape[0]
    n_c = cps.shape[1]
    n_m = nov.shape[1]
    n_l = label_b.shape[0]
    max_code = 1
    for c in range(n_c):
        for j in range(cps.shape[0]):
            max_code = max(max_code, cps[j, c] + 1)
    mark = np.full((max(n_c, 1), max_code), -1, np.int64)
    snap_n = np.zeros(n_b, np.int64)
    snap_s = np.zeros(n_b)
    snap_s2 = np.zeros(n_b)
    snap_mx = np.zeros(n_b)
    snap_d = np.zeros((n_b, max(n_c, 1)), np.int64)
    dcount = np.zeros(max(n_c, 1), np.int64)
    found = np.zeros(max(n_m, 1), np.bool_)
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
            k = 0
            cnt, s, s2, mx = 0, 0.0, 0.0, -np.inf
            dcount[:] = 0
            found[:] = False
            last_t, first_t = np.nan, np.nan
            loc = False
            plat, plon, pt = 0.0, 0.0, 0.0
            for j in range(hi - 1, a - 1, -1):
                tj = ts[j]
                while k < n_b and tj < t - bwin[k]:
                    snap_n[k], snap_s[k], snap_s2[k], snap_mx[k] = cnt, s, s2, mx
                    snap_d[k, :] = dcount
                    k += 1
                if k == n_b:
                    break
                v = amount[j]
                cnt += 1
                s += v
                s2 += v * v
                mx = max(mx, v)
                for c in range(n_c):
                    code = cps[j, c]
                    if code >= 0 and mark[c, code] != i:
                        mark[c, code] = i
                        dcount[c] += 1
                if profile:
                    for m in range(n_m):
                        if nov[j, m] >= 0 and nov[j, m] == nov[i, m]:
                            found[m] = True
                    if not loc and not math.isnan(lat[j]):
                        loc = True
                        plat, plon, pt = lat[j], lon[j], tj
                if j == hi - 1:
                    last_t = tj
                first_t = tj
            while k < n_b:
                snap_n[k], snap_s[k], snap_s2[k], snap_mx[k] = cnt, s, s2, mx
                snap_d[k, :] = dcount
                k += 1

            col = col0
            for w in range(agg_b.shape[0]):
                bi = agg_b[w]
                nw = snap_n[bi]
                out[row, col] = nw
                out[row, col + 1] = snap_s[bi]
                out[row, col + 2] = snap_s[bi] / nw if nw > 0 else np.nan
                out[row, col + 3] = snap_mx[bi] if nw > 0 else np.nan
                col += 4
            for c in range(n_c):
                for w in range(dist_b.shape[0]):
                    out[row, col] = snap_d[dist_b[w], c]
                    col += 1
            out[row, col] = t - last_t
            out[row, col + 1] = t - first_t
            col += 2
            if profile:
                nr = snap_n[ratio_b]
                mean = snap_s[ratio_b] / nr if nr > 0 else np.nan
                std = math.sqrt(max(snap_s2[ratio_b] / nr - mean * mean, 0.0)) if nr > 0 else np.nan
                x = amount[i]
                out[row, col] = x / mean if nr > 0 and mean > 0 else np.nan
                out[row, col + 1] = (x - mean) / max(std, 0.01 * mean + 1e-9) if nr > 1 else np.nan
                col += 2
                for m in range(n_m):
                    out[row, col] = np.nan if nov[i, m] < 0 else (0.0 if found[m] else 1.0)
                    col += 1
                if loc and not math.isnan(lat[i]):
                    dist = _haversine(plat, plon, lat[i], lon[i])
                    out[row, col] = dist
                    out[row, col + 1] = dist / max((t - pt) / 3600.0, 1.0 / 60.0)
                else:
                    out[row, col] = np.nan
                    out[row, col + 1] = np.nan
                col += 2
            if n_l > 0:
                la, lb = lbounds[g], lbounds[g + 1]
                longest = bwin[label_b[n_l - 1]]
                p = la + np.searchsorted(l_tx[la:lb], t - longest)
                latest = np.nan
                for w in range(n_l):
                    known = 0
                    start = t - bwin[label_b[w]]
                    for q in range(p, lb):
                        if l_tx[q] >= t:
                            break
                        if l_tx[q] >= start and l_label[q] < t:
                            known += 1
                            latest = l_tx[q]
                    nw = snap_n[label_b[w]]
                    out[row, col] = known
                    out[row, col + 1] = known / nw if nw > 0 else np.nan
                    col += 2
                out[row, col] = t - latest
