"""A network entry's features for a whole batch, in one compiled call.

A row's neighbourhood is read from two sources merged by time: the state's events of each value (its
index by that field, a slice already in time order) and the batch's own new rows with that value. An
event is named by one integer: a position in the state's columns (``>= 0``), or ``-(row + 1)`` for a
row of the batch. Walking a value's events newest first, the batch's rows come before the stored
events of the same time (they arrived after them), so the ``max_events`` most recent events of a
value are the same whether the history was recorded batch by batch or is one whole file.

A row whose transaction the state holds (a redelivery) is answered from its stored event; a second
row of one transaction is answered as the first. Only events strictly earlier than the row count, so
a row is never its own neighbour. Nothing is done per row in Python: one transaction and a million
take the same path, and each row costs at most ``max_events × (1 + links × max_values)`` events read
(see :class:`~fraudstream.features.plan.Network`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fraudstream.features._keyed import _by_time, _cut
from fraudstream.features.plan import NET_AGE as _AGE
from fraudstream.features.plan import NET_COUNT as _COUNT
from fraudstream.features.plan import NET_KNOWN as _KNOWN
from fraudstream.features.plan import NET_KNOWN_SHARE as _KNOWN_SHARE


@njit(cache=True)
def _time(e, ts, ts_log):  # pragma: no cover - compiled
    return ts_log[e] if e >= 0 else ts[-e - 1]


@njit(cache=True)
def _code(e, c, codes, codes_log):  # pragma: no cover - compiled
    return codes_log[c, e] if e >= 0 else codes[-e - 1, c]


@njit(cache=True)
def _past(b_rows, b_codes, b_n, ts, v, t, p):  # pragma: no cover - compiled
    """Whether batch position ``p`` is at or past value ``v``'s events earlier than ``t``: a greater
    value, or ``v`` at ``t`` or later (the batch's rows are sorted by value, then time)."""
    return p >= b_n or b_codes[p] > v or (b_codes[p] == v and ts[b_rows[p]] >= t)


@njit(cache=True)
def _batch_end(b_rows, b_codes, b_n, ts, v, t, hint):  # pragma: no cover - compiled
    """The first batch position past value ``v``'s rows earlier than ``t``: by galloping from
    ``hint`` (a position near it, -1: none), so that finding it costs the log of the distance."""
    lo, hi = -1, b_n  # not past at lo (or before the start), past at hi
    if hint >= 0:
        step = 1
        if _past(b_rows, b_codes, b_n, ts, v, t, hint):
            hi = hint
            while hi - step >= 0 and _past(b_rows, b_codes, b_n, ts, v, t, hi - step):
                hi -= step
                step *= 2
            lo = max(hi - step, -1)
        else:
            lo = hint
            while lo + step < b_n and not _past(b_rows, b_codes, b_n, ts, v, t, lo + step):
                lo += step
                step *= 2
            hi = min(lo + step, b_n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _past(b_rows, b_codes, b_n, ts, v, t, mid):
            hi = mid
        else:
            lo = mid
    return hi


@njit(cache=True)
def _recent(
    v, t, since, limit, s_lo, s_hi, runs, ts_log, b_rows, b_codes, b_hi, ts, buf, nb
):  # fmt: skip  # pragma: no cover - compiled
    """Append to ``buf`` (from ``nb``) value ``v``'s events in ``[since, t)``, newest first, at most
    ``limit``: its stored run ends at ``s_hi``, its batch rows at ``b_hi``; the batch's rows come
    before the stored events of their time. Returns the new length."""
    i, j = s_hi - 1, b_hi - 1
    for _ in range(limit):
        t_s = ts_log[runs[i]] if i >= s_lo else -np.inf
        t_b = ts[b_rows[j]] if j >= 0 and b_codes[j] == v else -np.inf
        if max(t_s, t_b) < since:
            break
        if t_b >= t_s:
            buf[nb] = -(b_rows[j] + 1)
            j -= 1
        else:
            buf[nb] = runs[i]
            i -= 1
        nb += 1
    return nb


@njit(cache=True)
def _earliest(
    v, since, s_lo, s_hi, runs, ts_log, b_rows, b_codes, b_n, b_hi, ts
):  # fmt: skip  # pragma: no cover - compiled
    """The time of value ``v``'s earliest event in ``[since, t)``, its stored run ending at ``s_hi``
    and its batch rows at ``b_hi`` (infinity when it has none)."""
    first = np.inf
    i = _cut(runs, s_lo, s_hi - s_lo, ts_log, since)
    if i < s_hi:
        first = ts_log[runs[i]]
    j = _batch_end(b_rows, b_codes, b_n, ts, v, since, b_hi)
    if j < b_hi:
        first = min(first, ts[b_rows[j]])
    return first


@njit(cache=True)
def _value(
    v, t, since, limit, hint, start, length, runs, ts_log, b_rows, b_codes, b_n, ts, buf, nb, age
):  # fmt: skip  # pragma: no cover - compiled
    """Append value ``v``'s most recent events before ``t`` to ``buf`` (see :func:`_recent`); returns
    the new length and, when ``age``, the time of its earliest event in the window (else infinity).
    ``hint`` is a batch position of ``v``'s (-1: none)."""
    s_lo, s_hi = 0, 0
    if v < start.shape[0] and length[v] > 0:
        s_lo = start[v]
        s_hi = _cut(runs, s_lo, length[v], ts_log, t)
    b_hi = _batch_end(b_rows, b_codes, b_n, ts, v, t, hint)
    nb = _recent(v, t, since, limit, s_lo, s_hi, runs, ts_log, b_rows, b_codes, b_hi, ts, buf, nb)
    first = np.inf
    if age:
        first = _earliest(v, since, s_lo, s_hi, runs, ts_log, b_rows, b_codes, b_n, b_hi, ts)
    return nb, first


@njit(cache=True)
def network_features(
    ts, codes, first_of, stored, is_fraud, label_time, batch_labels, ts_log, codes_log, label_log,
    starts, lengths, runs, fields, counted, ops, window, delay, hops, max_values, max_events,
    mark, out, col0,
):  # fmt: skip  # pragma: no cover - compiled
    """Fill ``out[:, col0 : col0 + width]`` for every row of a batch whose node value is known.

    The batch: ``ts`` its times and ``codes`` its identifier codes as the state holds them (a column
    per identifier field of the schema), ``first_of`` the first row of each row's transaction,
    ``stored`` where the state holds each row's transaction (-1: nowhere), ``is_fraud``/``label_time``
    its labels (read when ``batch_labels``). The state: ``ts_log``, ``codes_log`` and ``label_log`` its
    events' times, codes and fraud label times; ``starts``, ``lengths`` and ``runs`` (one each per
    entry of ``fields``) its index of the events by that field's value. The program: ``fields`` the
    node's then the links' identifier columns, ``counted`` those counted distinct, ``ops`` an
    ``(operation, argument)`` per output column, and the neighbourhood's bounds. ``mark`` is a table
    of -1 longer than any code of the node's and the counted fields, left as found.
    """
    n = ts.shape[0]
    n_f = fields.shape[0]
    n_o = ops.shape[0]
    # the batch's new rows (the first of each transaction the state does not hold), by field and value
    fresh = np.empty(n, np.int64)
    m = 0
    for r in range(n):
        if stored[r] < 0 and first_of[r] == r and not math.isnan(ts[r]):
            fresh[m] = r
            m += 1
    by_time = fresh[:m][_by_time(ts[fresh[:m]])]
    b_rows = np.empty((n_f, m), np.int64)
    b_codes = np.empty((n_f, m), np.int64)
    b_n = np.zeros(n_f, np.int64)
    place = np.full((n_f, n), -1, np.int64)  # where each new row sits among its value's rows
    for k in range(n_f):
        c = fields[k]
        keyed = np.empty(m, np.int64)
        q = 0
        for r in by_time:
            if codes[r, c] >= 0:
                keyed[q] = r
                q += 1
        keyed = keyed[:q]
        keys = np.empty(q, np.int64)
        for i in range(q):
            keys[i] = codes[keyed[i], c]
        order = np.argsort(keys, kind="mergesort")  # by value, then time, then batch order
        b_rows[k, :q] = keyed[order]
        b_codes[k, :q] = keys[order]
        b_n[k] = q
        for i in range(q):
            place[k, b_rows[k, i]] = i
    links = n_f - 1
    buf = np.empty(max_events * (1 + links * max_values), np.int64)
    values = np.empty((max(links, 1), max_values), np.int64)
    hints = np.empty((max(links, 1), max_values), np.int64)
    held = np.zeros(max(links, 1), np.int64)
    touched = np.empty(buf.shape[0], np.int64)
    age = False
    for o in range(n_o):
        age = age or ops[o, 0] == _AGE
    node_c = fields[0]
    for r in range(n):
        e = stored[r] if stored[r] >= 0 else -(first_of[r] + 1)
        t = _time(e, ts, ts_log)
        node = _code(e, node_c, codes, codes_log)
        if math.isnan(t) or node < 0:
            continue
        since = t - window
        nb = 0
        earliest = np.inf
        if hops == 2:  # the node's own recent events
            nb, earliest = _value(
                node, t, since, max_events, place[0, -e - 1] if e < 0 else -1, starts[0], lengths[0],
                runs[0], ts_log, b_rows[0], b_codes[0], b_n[0], ts, buf, 0, age,
            )  # fmt: skip
        # the links: the row's own values, then those of the node's recent events, newest first
        for f in range(links):
            v = _code(e, fields[f + 1], codes, codes_log)
            values[f, 0] = v
            hints[f, 0] = place[f + 1, -e - 1] if e < 0 else -1
            held[f] = 1 if v >= 0 else 0
        for q in range(nb):
            ev = buf[q]
            for f in range(links):
                if held[f] >= max_values:
                    continue
                v = _code(ev, fields[f + 1], codes, codes_log)
                if v < 0:
                    continue
                known = False
                for x in range(held[f]):
                    known = known or values[f, x] == v
                if not known:
                    values[f, held[f]] = v
                    hints[f, held[f]] = place[f + 1, -ev - 1] if ev < 0 else -1
                    held[f] += 1
        for f in range(links):
            for x in range(held[f]):
                nb, first = _value(
                    values[f, x], t, since, max_events, hints[f, x], starts[f + 1], lengths[f + 1],
                    runs[f + 1], ts_log, b_rows[f + 1], b_codes[f + 1], b_n[f + 1], ts, buf, nb, age,
                )  # fmt: skip
                earliest = min(earliest, first)
        labelled = False
        known_members, old_members, latest = 0, 0, np.nan
        for o in range(n_o):
            op, arg = ops[o, 0], ops[o, 1]
            col = col0 + o
            if op == _COUNT:
                c = counted[arg]
                own = node if c == node_c else -1  # the node's own field counts the others
                nt = 0
                for q in range(nb):
                    v = _code(buf[q], c, codes, codes_log)
                    if v >= 0 and v != own and mark[v] < 0:
                        mark[v] = 0
                        touched[nt] = v
                        nt += 1
                for x in range(nt):
                    mark[touched[x]] = -1
                out[r, col] = nt
            elif op == _AGE:
                out[r, col] = t - earliest if earliest < np.inf else np.nan
            else:
                if not labelled:  # the other nodes' known frauds, counted once for every operation
                    labelled = True
                    nt = 0
                    for q in range(nb):
                        ev = buf[q]
                        member = _code(ev, node_c, codes, codes_log)
                        if member < 0 or member == node:
                            continue
                        flag = mark[member]
                        if flag < 0:
                            flag = 0
                            touched[nt] = member
                            nt += 1
                        if ev >= 0:
                            labelled_at = label_log[ev]
                        elif batch_labels and is_fraud[-ev - 1] == 1:
                            labelled_at = label_time[-ev - 1]
                        else:
                            labelled_at = np.nan
                        at = _time(ev, ts, ts_log)
                        if labelled_at < t:
                            if flag & 1 == 0:
                                flag |= 1
                                known_members += 1
                            if math.isnan(latest) or at > latest:
                                latest = at
                        if at < t - delay and flag & 2 == 0:
                            flag |= 2
                            old_members += 1
                        mark[member] = flag
                    for x in range(nt):
                        mark[touched[x]] = -1
                if op == _KNOWN:
                    out[r, col] = known_members
                elif op == _KNOWN_SHARE:
                    out[r, col] = known_members / old_members if old_members > 0 else np.nan
                else:
                    out[r, col] = t - latest
