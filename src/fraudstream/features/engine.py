"""The feature engine: one implementation for building training data and for scoring live.

``compute`` takes a batch and, optionally, a :class:`FeatureState` holding earlier history. Offline,
a whole dataset is one batch with no state and its own labels; live, each incoming batch is answered
from the state's history plus the batch itself, then recorded. Either way a transaction sees only
events strictly before it in event time and fraud labels that had arrived before it. What is computed
is the :class:`~fraudstream.features.plan.FeatureSet` the engine was built with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.events.batch import TransactionBatch
from fraudstream.features import keys
from fraudstream.features._few import few_transactions
from fraudstream.features._inputs import FEW, SHORT, Events, few_inputs, many_inputs
from fraudstream.features._slots import slots_few, slots_many
from fraudstream.features.kernels import group_features
from fraudstream.features.plan import FeatureSet, Group
from fraudstream.state.base import FeatureState, History


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
        cols = self.feature_set.columns(batch)
        return self._compute(batch, self.feature_set.events(batch, cols), state, labels_from_batch, cols)

    def _compute(
        self,
        batch: TransactionBatch,
        events: Events,
        state: FeatureState | None,
        labels_from_batch: bool | None,
        cols: Any = None,
    ) -> np.ndarray:
        if labels_from_batch is None:
            labels_from_batch = state is None
        out = np.full((len(batch), len(self.names)), np.nan)
        self.feature_set.row_features(batch, out, cols)
        if state is None:
            for group in self._groups:
                self._group(group, batch, events, None, None, labels_from_batch, out)
            return out
        with state.reading():
            if not labels_from_batch and few_transactions(
                self._groups, self.schema, self._retention, events, state, out
            ):
                return out
            recorded = state.recorded(batch.transaction_id)
            for group in self._groups:
                self._group(group, batch, events, state, recorded, labels_from_batch, out)
        return out

    def process(
        self,
        batch: TransactionBatch,
        state: FeatureState,
        keep: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Compute then record: the live path. Returns the features and which rows were new.

        ``keep`` receives the features before anything is recorded and returns which rows to record
        (a boolean mask): a caller that stores its decisions first records only the rows it stored, so
        a row refused there leaves the state as it was. If ``keep`` raises, nothing is recorded.
        """
        cols = self.feature_set.columns(batch)
        events = self.feature_set.events(batch, cols)
        features = self._compute(batch, events, state, None, cols)
        if keep is not None:
            kept = np.asarray(keep(features), dtype=bool)
            if not kept.all():
                new = np.zeros(len(batch), dtype=bool)
                if kept.any():
                    chosen = {name: values[kept] for name, values in events.items()}
                    new[kept] = state.record(chosen, self.entity_columns)
                return features, new
        return features, state.record(events, self.entity_columns)

    def record(self, batch: TransactionBatch, state: FeatureState) -> np.ndarray:
        """Record the batch's events without computing features (warming a state from storage)."""
        return state.record(self.feature_set.events(batch), self.entity_columns)

    def frame(self, batch: TransactionBatch, values: np.ndarray) -> pd.DataFrame:
        """Features as a table indexed by ``transaction_id``, for training and inspection."""
        return pd.DataFrame(
            values, columns=self.names, index=pd.Index(batch.transaction_id, name="transaction_id")
        )

    def _group(
        self,
        group: Group,
        batch: TransactionBatch,
        events: Events,
        state: FeatureState | None,
        recorded: np.ndarray | None,
        labels_from_batch: bool,
        out: np.ndarray,
    ) -> None:
        """Fill this group's columns of ``out``. Its history (fetched, or none) plus the batch's new
        events form the context, sorted by (key, event time); the kernel answers each row from the
        context event that is its transaction, writing straight into ``out``. A few rows with a short
        history take plain Python lists to the kernel's inputs, the rest numpy: the same inputs."""
        entity_keys = events[group.column]
        few = entity_keys.shape[0] < FEW
        if few:
            key_list = entity_keys.tolist()
            rows_list = [i for i, v in enumerate(key_list) if v is not None and v == v]
            if not rows_list:
                return
            rows = np.array(rows_list, dtype=np.int64)
            times = batch.timestamp.tolist()
            first = [times[i] for i in rows_list]
            earliest = min(first) if all(t == t for t in first) else math.nan
            wanted = list(dict.fromkeys([key_list[i] for i in rows_list]))
            asked = np.empty(len(wanted), dtype=object)
            asked[:] = wanted
        else:
            rows = np.flatnonzero(keys.present(entity_keys))
            if rows.size == 0:
                return
            earliest = float(batch.timestamp[rows].min())
            asked = keys.distinct(entity_keys[rows])
        since = earliest - self._retention
        history = state.fetch(group.name, asked, since) if state is not None else History.empty(self.schema)
        coder = state.codes if state is not None else None
        q_tx = batch.transaction_id[rows]
        known = None if recorded is None else recorded[rows]
        slot: list[int] | np.ndarray
        placed: list[int] | np.ndarray
        if few:
            slot, add_list, shared = slots_few(history, rows_list, q_tx, known)
            if len(history) + len(add_list) < SHORT:
                inputs, placed = few_inputs(
                    group,
                    batch,
                    events,
                    history,
                    rows_list,
                    slot,
                    add_list,
                    key_list,
                    times,
                    labels_from_batch,
                )
            else:
                slot = np.array(slot, dtype=np.int64)
                add = np.array(add_list, dtype=np.int64)
                inputs, placed = many_inputs(
                    group, batch, events, history, rows, slot, add, labels_from_batch, coder
                )
        else:
            slot, add, shared = slots_many(history, rows, q_tx, known)
            inputs, placed = many_inputs(
                group, batch, events, history, rows, slot, add, labels_from_batch, coder
            )
        group_features(*inputs, out, group.col0)
        if shared:  # rows answered by one event: copy its values to the rows the kernel did not write
            owner = np.asarray(placed, dtype=np.int64)[slot]
            copy = owner != rows
            cols = slice(group.col0, group.col0 + group.width)
            out[rows[copy], cols] = out[owner[copy], cols]


_DEFAULT: list[FeatureSet] = []


def default_feature_set() -> FeatureSet:
    """The packaged ``handbook`` spec, compiled once (read on first use, not at import)."""
    if not _DEFAULT:
        _DEFAULT.append(FeatureSet.load())
    return _DEFAULT[0]
