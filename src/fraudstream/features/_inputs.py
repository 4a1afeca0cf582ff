"""The kernel's inputs for one entity of a batch: the context (history plus the batch's new events),
sorted by (entity, event time), with codes for the identifier columns and the entity's labels.

Two builders give the same inputs: :func:`many_inputs` with numpy, for batches and histories of any
size, and :func:`few_inputs` on plain lists, for batches of a few transactions with a short history,
where some forty numpy calls of fixed cost were most of the feature time (a few new transactions
skip both: :mod:`fraudstream.features._few`). The numba kernel
(:func:`fraudstream.features.kernels.group_features`) stays the one definition of the features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import accumulate
from typing import Any

import numpy as np

from fraudstream.events.batch import TransactionBatch
from fraudstream.features import keys
from fraudstream.features.kernels import dense_codes, merged_order
from fraudstream.features.plan import Group
from fraudstream.state.base import CODE, History

Coder = Callable[[str, np.ndarray], "np.ndarray | None"]
"""A state's :meth:`~fraudstream.state.base.FeatureState.codes`."""

_NO_FLOATS = np.empty(0)
_NO_BOUNDS = np.empty(0, dtype=np.int64)
Events = Mapping[str, np.ndarray]
"""A batch's event columns by schema name (what ``FeatureSet.events`` gives)."""
_Inputs = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
]  # fmt: skip
"""The arguments of :func:`group_features` before ``out`` and ``col0``, in its order."""
FEW = 64
"""Batches shorter than this are prepared in plain Python (the live path) ..."""
SHORT = 128
"""... when their context (history plus new events) is shorter than this; numpy otherwise."""


def _join(head: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """``head`` then ``tail``, without a copy when either is empty (context columns are only read)."""
    if tail.shape[0] == 0:
        return head
    if head.shape[0] == 0:
        return tail
    return np.concatenate([head, tail])


def _context_keys(history: History, added: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """``keys.factorize`` of the history's keys then the added events' keys (never missing). The history
    comes as a run of events per key: coding the runs, then looking up each added event's key, is far
    cheaper than hashing every event's key (a batch's customers bring hundreds of thousands). Says
    whether it coded the runs, in which case the history's rows are in (code, time) order."""
    heads = [key for key, _ in history.runs]
    code_of = {key: i for i, key in enumerate(heads)}
    if len(code_of) == len(heads) and all(k is not None and k == k for k in heads):
        tail = [code_of.setdefault(k, len(code_of)) for k in added.tolist()]
        uniques = np.empty(len(code_of), dtype=object)
        uniques[:] = list(code_of)
        codes = np.repeat(np.arange(len(heads), dtype=np.int64), [n for _, n in history.runs])
        return np.concatenate([codes, np.array(tail, dtype=np.int64)]), uniques, True
    return *keys.factorize(_join(history.key, added)), False


def _sorted_labels(
    l_code: np.ndarray, l_tx: np.ndarray, l_time: np.ndarray, groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels of the context's entities (``l_code`` their entity's code, -1 for none) grouped like the
    context, by transaction time: the kernel's ``lbounds``, ``l_tx`` and ``l_label``."""
    if l_code.shape[0] == 0:
        return np.zeros(groups + 1, dtype=np.int64), _NO_FLOATS, _NO_FLOATS
    keep = l_code >= 0
    l_code, l_tx, l_time = l_code[keep], l_tx[keep], l_time[keep]
    l_order = np.lexsort((l_tx, l_code))
    lbounds = np.searchsorted(l_code[l_order], np.arange(groups + 1)).astype(np.int64)
    return lbounds, np.ascontiguousarray(l_tx[l_order]), np.ascontiguousarray(l_time[l_order])


def few_inputs(
    group: Group,
    batch: TransactionBatch,
    events: Events,
    history: History,
    rows: list[int],
    slot: list[int],
    add: list[int],
    key_list: list[Any],
    times: list[float],
    labels_from_batch: bool,
) -> tuple[_Inputs, list[int]]:
    """The kernel's inputs built on lists, and the batch row each context event answers (-1 for
    none): :func:`many_inputs`'s answer without its fixed cost of some forty numpy calls."""
    held = history.events
    code_of: dict[Any, int] = {}
    key_codes: list[int] = []
    for key, n in history.runs:
        key_codes += [code_of.setdefault(key, len(code_of))] * n
    key_codes += [code_of.setdefault(key_list[i], len(code_of)) for i in add]
    ts = held["timestamp"].tolist() + [times[i] for i in add]
    groups = len(code_of)
    total = sum(ts)
    order: np.ndarray | None = None  # None: already sorted by (entity, time)
    if groups == 1 and total == total and ts == sorted(ts):  # NaN sums to NaN
        bounds = np.array([0, len(ts)], dtype=np.int64)
    else:
        order = np.lexsort((np.array(ts), np.array(key_codes)))
        counts = [0] * (groups + 1)
        for code in key_codes:
            counts[code + 1] += 1
        bounds = np.array(list(accumulate(counts)), dtype=np.int64)

    def arrange(values: np.ndarray) -> np.ndarray:
        return values if order is None else values[order]

    floats: dict[str, np.ndarray] = {"timestamp": arrange(np.array(ts, dtype=np.float64))}
    for f in group.values:
        column = events[f]
        floats[f] = arrange(np.array(held[f].tolist() + [column[i] for i in add], dtype=np.float64))
    coded = []
    for c in group.coded:
        column, first = events[c], dict[Any, int]()
        codes = [first.setdefault(v, i) for i, v in enumerate(held[c].tolist() + [column[i] for i in add])]
        codes_array = np.array(codes, dtype=np.int64)
        for v, i in first.items():  # equal values share a code; missing ones get -1
            if v is None or v != v:
                codes_array[codes_array == i] = -1
        coded.append(codes_array)
    placed = [-1] * len(ts)
    for s, r in zip(slot, rows, strict=True):
        placed[s] = r
    lbounds, l_tx, l_time = _NO_BOUNDS, _NO_FLOATS, _NO_FLOATS
    if group.labels:
        l_key = history.label_key.tolist()
        l_tx_list, l_time_list = history.label_tx_time.tolist(), history.label_time.tolist()
        if labels_from_batch:
            for i in add:
                if batch.is_fraud[i] == 1 and batch.label_time[i] == batch.label_time[i]:
                    l_key.append(key_list[i])
                    l_tx_list.append(times[i])
                    l_time_list.append(batch.label_time[i])
        lbounds, l_tx, l_time = _sorted_labels(
            np.array([code_of.get(k, -1) for k in l_key], dtype=np.int64),
            np.array(l_tx_list, dtype=np.float64),
            np.array(l_time_list, dtype=np.float64),
            len(code_of),
        )
    placed_array = arrange(np.array(placed, dtype=np.int64))
    return _pack(group, bounds, floats, placed_array, coded, arrange, (lbounds, l_tx, l_time)), placed


def _coded(
    held: Mapping[str, np.ndarray], field: str, added: np.ndarray, coder: Coder | None, dense: bool
) -> np.ndarray:
    """Codes of ``field`` over the context: the history's own codes and the state's for the added
    events when the state keeps them (renumbered from 0 where the kernel indexes a table by them),
    else the values hashed afresh. Equal values get equal codes either way, missing ones -1."""
    codes = held.get(CODE + field) if coder is not None else None
    new = coder(field, added) if codes is not None and coder is not None else None
    if codes is None or new is None:
        return keys.codes(_join(held[field], added))
    joined = _join(codes, new)
    return dense_codes(joined) if dense else joined


def many_inputs(
    group: Group,
    batch: TransactionBatch,
    events: Events,
    history: History,
    rows: np.ndarray,
    slot: np.ndarray,
    add: np.ndarray,
    labels_from_batch: bool,
    coder: Coder | None = None,
) -> tuple[_Inputs, np.ndarray]:
    """The kernel's inputs built with numpy, and the batch row each context event answers."""
    held = history.events
    entity_keys = events[group.column]
    key_codes, uniques, in_runs = _context_keys(history, entity_keys[add])
    ts = _join(held["timestamp"], events["timestamp"][add])
    order: np.ndarray | None = None  # None: already sorted by (entity, time), as one key's history is
    if uniques.shape[0] == 1 and (ts[1:] >= ts[:-1]).all():  # false for NaN
        bounds = np.array([0, ts.shape[0]], dtype=np.int64)
    elif in_runs and not np.isnan(ts[len(history) :]).any():  # a sorted history: merge the added in
        order, bounds = merged_order(key_codes, ts, len(history), uniques.shape[0])
    else:
        order = np.lexsort((ts, key_codes))
        bounds = np.searchsorted(key_codes[order], np.arange(uniques.shape[0] + 1)).astype(np.int64)

    def arrange(values: np.ndarray) -> np.ndarray:
        return values if order is None else values[order]

    ctx = {"timestamp": arrange(ts)}
    ctx.update({f: arrange(_join(held[f], events[f][add])) for f in group.values})
    dense = group.dense
    codes = [_coded(held, c, events[c][add], coder, j in dense) for j, c in enumerate(group.coded)]
    lbounds, l_tx, l_time = _NO_BOUNDS, _NO_FLOATS, _NO_FLOATS
    if group.labels:
        l_key, l_tx, l_time = history.label_key, history.label_tx_time, history.label_time
        if labels_from_batch:
            fraud = add[(batch.is_fraud[add] == 1) & ~np.isnan(batch.label_time[add])]
            l_key = _join(l_key, entity_keys[fraud])
            l_tx = _join(l_tx, batch.timestamp[fraud])
            l_time = _join(l_time, batch.label_time[fraud])
        l_code = keys.lookup(uniques, l_key) if l_key.shape[0] else np.empty(0, dtype=np.int64)
        lbounds, l_tx, l_time = _sorted_labels(l_code, l_tx, l_time, uniques.shape[0])
    placed = np.full(key_codes.shape[0], -1, dtype=np.int64)
    placed[slot] = rows
    return _pack(group, bounds, ctx, arrange(placed), codes, arrange, (lbounds, l_tx, l_time)), placed


def _pack(
    group: Group,
    bounds: np.ndarray,
    floats: dict[str, np.ndarray],
    placed: np.ndarray,
    coded: list[np.ndarray],
    arrange: Callable[[np.ndarray], np.ndarray],
    labels: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> _Inputs:
    """The kernel's arguments in its order, from the sorted context columns (``floats``), the
    identifier codes (``coded``, in context order: ``arrange`` sorts them) and the sorted labels."""
    n = bounds[-1] if bounds.shape[0] else 0
    vals = np.empty((int(n), len(group.values)), dtype=np.float64)
    for j, f in enumerate(group.values):
        vals[:, j] = floats[f]
    cps = (
        np.ascontiguousarray(arrange(np.array(coded, dtype=np.int64).T))
        if coded
        else np.zeros((int(n), 0), dtype=np.int64)
    )
    lbounds, l_tx, l_time = labels
    return (
        bounds,
        floats["timestamp"],
        placed,
        group.bwin,
        vals,
        group.streams,
        cps,
        group.dslots,
        group.nov,
        group.locs,
        lbounds,
        l_tx,
        l_time,
        group.ops,
        group.params,
    )
