"""The feature engine: one implementation for building training data and for scoring live.

``compute`` takes a batch and, optionally, a :class:`FeatureState` holding earlier history. Offline,
a whole dataset is one batch with no state and its own labels; live, each incoming batch is answered
from the state's history plus the batch itself, then recorded. Either way a transaction sees only
events strictly before it in event time and fraud labels that had arrived before it. One path serves
every batch size: a key or network entry's features for the whole batch come from one compiled call
(:mod:`fraudstream.features._keyed`, :mod:`fraudstream.features._network`). What is computed is the
:class:`~fraudstream.features.plan.FeatureSet` the engine was built with.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np
import pandas as pd

from fraudstream.events.batch import TransactionBatch
from fraudstream.features import keys
from fraudstream.features._keyed import NO_FLOATS, NO_ROWS, key_features
from fraudstream.features._network import network_features
from fraudstream.features.plan import FeatureSet
from fraudstream.state.base import EventColumns, FeatureState, KeyIndex

_NO_LOG = EventColumns(np.empty((1, 0), dtype=np.float64), np.empty((0, 0), dtype=np.int64), NO_FLOATS, 0, 0)
_NO_INDEX = KeyIndex(0, NO_ROWS, NO_ROWS, NO_ROWS, NO_ROWS, NO_ROWS, NO_ROWS)


class FeatureEngine:
    """Computes a feature set's values for batches of transactions (by default the packaged
    ``handbook`` spec)."""

    def __init__(self, feature_set: FeatureSet | None = None) -> None:
        self.feature_set = feature_set if feature_set is not None else default_feature_set()
        self.feature_set.require_fitted()
        self.names = self.feature_set.names
        self.entity_columns = self.feature_set.entity_columns
        self.schema = self.feature_set.schema
        self._groups = self.feature_set.groups
        self._retention = self.feature_set.retention
        self._local = threading.local()
        self._programs = [
            (
                self.schema.ids.index(g.column),
                (g.vals_f, g.cps_f, g.bwin, g.streams, g.dslots, g.nov, g.locs, g.ops, g.params, g.labels),
            )
            for g in self._groups
        ]
        """Each key entry's key column, and its arguments to the compiled call that never change: the
        columns it reads and its program."""
        self._networks = [
            (
                n.entities,
                (n.fields_c, n.counted_c, n.ops, n.window, n.delay, n.hops, n.max_values, n.max_events),
                np.unique(np.concatenate([n.fields_c[:1], n.counted_c])),
            )
            for n in self.feature_set.networks
        ]
        """Each network entry's indexes in the state, its program, and the identifier columns whose
        codes it counts distinct."""

    def compute(
        self,
        batch: TransactionBatch,
        state: FeatureState | None = None,
        *,
        labels_from_batch: bool | None = None,
    ) -> np.ndarray:
        """Feature matrix (rows of ``batch`` × :attr:`names`), recording nothing (a state that codes
        identifiers may learn the batch's codes).

        With no ``state`` the batch is its own history and, unless told otherwise, its rows' own
        ``is_fraud``/``label_time`` are the labels (each usable only after its ``label_time``).
        """
        if labels_from_batch is None:
            labels_from_batch = state is None
        cols = self.feature_set.columns(batch)
        events = self.feature_set.events(batch, cols)
        out = np.full((len(batch), len(self.names)), np.nan)
        self.feature_set.row_features(batch, out, cols)
        if not (self._groups or self._networks) or len(batch) == 0:
            return out
        if state is None:
            self._keyed(batch, events, None, labels_from_batch, out)
        else:
            with state.reading():
                self._keyed(batch, events, state, labels_from_batch, out)
        return out

    def process(self, batch: TransactionBatch, state: FeatureState) -> tuple[np.ndarray, np.ndarray]:
        """Compute then record every row: the features and which rows were new. (The decider records
        only what it stored, after storing it: :meth:`compute`, then :meth:`record` with ``rows``.)"""
        features = self.compute(batch, state)
        return features, self.record(batch, state)

    def record(
        self, batch: TransactionBatch, state: FeatureState, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Record the batch's events (or those of ``rows``, a boolean mask or row positions) and
        return which rows of the whole batch were new; also how a state is warmed from storage."""
        events = self.feature_set.events(batch, self.feature_set.columns(batch))
        new = np.zeros(len(batch), dtype=bool)
        if rows is None:
            return state.record(events, self.entity_columns)
        chosen = np.asarray(rows)
        if chosen.dtype == bool:
            if chosen.all():
                return state.record(events, self.entity_columns)
            chosen = np.flatnonzero(chosen)
        if chosen.shape[0]:
            new[chosen] = state.record({f: v[chosen] for f, v in events.items()}, self.entity_columns)
        return new

    def frame(self, batch: TransactionBatch, values: np.ndarray) -> pd.DataFrame:
        """Features as a table indexed by ``transaction_id``, for training and inspection."""
        return pd.DataFrame(
            values, columns=self.names, index=pd.Index(batch.transaction_id, name="transaction_id")
        )

    def _keyed(
        self,
        batch: TransactionBatch,
        events: Mapping[str, np.ndarray],
        state: FeatureState | None,
        labels_from_batch: bool,
        out: np.ndarray,
    ) -> None:
        """Fill every key and network entry's columns of ``out``: one compiled call per entry (see
        :mod:`fraudstream.features._keyed` and :mod:`fraudstream.features._network`), reading the
        state's events in place."""
        ids = events["transaction_id"]
        n = len(batch)
        first_of = keys.first_rows(ids)
        schema = self.schema
        floats = np.empty((n, len(schema.floats)), dtype=np.float64)  # the batch's columns as the state's
        for j, f in enumerate(schema.floats):
            floats[:, j] = events[f]
        coded = np.empty((n, len(schema.ids)), dtype=np.int64)
        for j, f in enumerate(schema.ids):
            coded[:, j] = keys.codes(events[f]) if state is None else state.codes(f, events[f])
        if state is None:
            stored = np.full(n, -1, dtype=np.int64)
            log = _NO_LOG
            seen = NO_ROWS
        else:  # read after coding the batch, so that the state's columns cover its codes
            stored = state.positions(ids)
            log = state.columns()
            seen = self._seen(log.codes_given + 1)
        common = (
            floats, coded, first_of, stored, batch.is_fraud, batch.label_time, labels_from_batch,
            self._retention, state is not None, seen, log.floats, log.codes, log.label_time,
        )  # fmt: skip
        for group, (column, program) in zip(self._groups, self._programs, strict=True):
            index = (state.index(group.name) if state is not None else None) or _NO_INDEX
            key_features(coded[:, column], *common, *index, *program, out, group.col0)
        if not self._networks:
            return
        linked = (
            np.ascontiguousarray(floats[:, 0]), coded, first_of, stored, batch.is_fraud, batch.label_time,
            labels_from_batch, log.floats[0], log.codes, log.label_time,
        )  # fmt: skip
        for net, (entities, network, counted) in zip(self.feature_set.networks, self._networks, strict=True):
            indexes = [(state.index(e) if state is not None else None) or _NO_INDEX for e in entities]
            held = (
                tuple(i.start for i in indexes),
                tuple(i.length for i in indexes),
                tuple(i.rows for i in indexes),
            )
            # the codes it counts: the batch's own, each field's from 0, or the state's
            top = int(coded[:, counted].max(initial=-1)) + 1 if state is None else log.codes_given + 1
            network_features(*linked, *held, *network, self._seen(top), out, net.col0)

    def _seen(self, size: int) -> np.ndarray:
        """A table of -1 at least ``size`` long, this thread's own: the compiled call numbers the codes
        it counts distinct through it, and leaves it as it found it."""
        table: np.ndarray | None = getattr(self._local, "seen", None)
        if table is None or table.shape[0] < size:
            table = self._local.seen = np.full(max(size, 2 * (0 if table is None else table.shape[0])), -1)
        return table


_DEFAULT: list[FeatureSet] = []


def default_feature_set() -> FeatureSet:
    """The packaged ``handbook`` spec, compiled once (read on first use, not at import)."""
    if not _DEFAULT:
        _DEFAULT.append(FeatureSet.load())
    return _DEFAULT[0]
