"""The feature engine: one implementation for building training data and for scoring live.

``compute`` takes a batch and, optionally, a :class:`FeatureState` holding earlier history. Offline,
a whole dataset is one batch with no state and its own labels; live, each incoming batch is answered
from the state's history plus the batch itself, then recorded. Either way a transaction sees only
events strictly before it in event time and fraud labels that had arrived before it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fraudstream.events.batch import TransactionBatch
from fraudstream.features import keys
from fraudstream.features._few import few_transactions, transaction_features_few
from fraudstream.features._inputs import ALWAYS, FEW, SHORT, Layout, few_inputs, many_inputs
from fraudstream.features._slots import slots_few, slots_many
from fraudstream.features.definitions import DEFAULT_FEATURE_SET, FeatureSet, transaction_values
from fraudstream.features.kernels import entity_features
from fraudstream.state.base import CODED_FIELDS, EVENT_FIELDS, FeatureState, History


class FeatureEngine:
    """Computes the feature set's values for a batch of transactions."""

    def __init__(self, feature_set: FeatureSet = DEFAULT_FEATURE_SET) -> None:
        self.feature_set = feature_set
        self.names = feature_set.names
        self.entity_columns = {e.name: e.column for e in feature_set.entities}
        self._layouts: list[Layout] = []
        self._retention = feature_set.retention
        col = len(feature_set.transaction_features)
        for spec in feature_set.entities:
            extra = (feature_set.ratio_window,) if spec.profile else ()
            bwin = np.array(
                sorted(
                    {
                        *spec.windows,
                        *spec.distinct_windows,
                        *spec.label_windows,
                        *extra,
                        feature_set.retention,
                    }
                )
            )
            index = {w: i for i, w in enumerate(bwin.tolist())}
            width = len(spec.names(feature_set))
            novelty = feature_set.novelty if spec.profile else ()
            coded = tuple(dict.fromkeys((*spec.distinct, *novelty)))
            self._layouts.append(
                Layout(
                    spec=spec,
                    col0=col,
                    width=width,
                    bwin=bwin,
                    agg_b=np.array([index[w] for w in spec.windows], dtype=np.int64),
                    dist_b=np.array([index[w] for w in spec.distinct_windows], dtype=np.int64),
                    ratio_b=index[feature_set.ratio_window] if spec.profile else 0,
                    label_b=np.array([index[w] for w in spec.label_windows], dtype=np.int64),
                    fields=tuple(
                        f
                        for f in EVENT_FIELDS
                        if f in ALWAYS or (spec.profile and f in ("latitude", "longitude"))
                    ),
                    coded=coded,
                    cps=tuple(coded.index(c) for c in spec.distinct),
                    nov=tuple(coded.index(c) for c in novelty),
                    cps_f=np.array([CODED_FIELDS.index(c) for c in spec.distinct], dtype=np.int64),
                    nov_f=np.array([CODED_FIELDS.index(c) for c in novelty], dtype=np.int64),
                )
            )
            col += width

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
        out = np.full((len(batch), len(self.names)), np.nan)
        if not transaction_features_few(self.feature_set.transaction_features, batch, out):
            self._transaction_features(batch, out)
        if state is None:
            for layout in self._layouts:
                self._entity(layout, batch, None, None, labels_from_batch, out)
            return out
        with state.reading():
            if not labels_from_batch and few_transactions(self._layouts, self._retention, batch, state, out):
                return out
            recorded = state.recorded(batch.transaction_id)
            for layout in self._layouts:
                self._entity(layout, batch, state, recorded, labels_from_batch, out)
        return out

    def process(self, batch: TransactionBatch, state: FeatureState) -> tuple[np.ndarray, np.ndarray]:
        """Compute then record: the live path. Returns the features and which rows were new."""
        features = self.compute(batch, state)
        return features, state.record(batch, self.entity_columns)

    def frame(self, batch: TransactionBatch, values: np.ndarray) -> pd.DataFrame:
        """Features as a table indexed by ``transaction_id``, for training and inspection."""
        return pd.DataFrame(
            values, columns=self.names, index=pd.Index(batch.transaction_id, name="transaction_id")
        )

    def _transaction_features(self, batch: TransactionBatch, out: np.ndarray) -> None:
        values = transaction_values(batch.timestamp, batch.amount, batch.account_created_at)
        for i, name in enumerate(self.feature_set.transaction_features):
            out[:, i] = values[name]

    def _entity(
        self,
        layout: Layout,
        batch: TransactionBatch,
        state: FeatureState | None,
        recorded: np.ndarray | None,
        labels_from_batch: bool,
        out: np.ndarray,
    ) -> None:
        """Fill this entity's columns of ``out``. Its history (fetched, or none) plus the batch's new
        events form the context, sorted by (entity, event time); the kernel answers each row from the
        context event that is its transaction, writing straight into ``out``. A few rows with a short
        history take plain Python lists to the kernel's inputs, the rest numpy: the same inputs."""
        entity_keys = getattr(batch, layout.spec.column)
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
        since = earliest - self.feature_set.retention
        history = state.fetch(layout.spec.name, asked, since) if state is not None else History.empty()
        coder = state.codes if state is not None else None
        q_tx = batch.transaction_id[rows]
        known = None if recorded is None else recorded[rows]
        slot: list[int] | np.ndarray
        placed: list[int] | np.ndarray
        if few:
            slot, add_list, shared = slots_few(history, rows_list, q_tx, known)
            if len(history) + len(add_list) < SHORT:
                inputs, placed = few_inputs(
                    layout, batch, history, rows_list, slot, add_list, key_list, times, labels_from_batch
                )
            else:
                slot = np.array(slot, dtype=np.int64)
                add = np.array(add_list, dtype=np.int64)
                inputs, placed = many_inputs(
                    layout, batch, history, rows, slot, add, labels_from_batch, coder
                )
        else:
            slot, add, shared = slots_many(history, rows, q_tx, known)
            inputs, placed = many_inputs(layout, batch, history, rows, slot, add, labels_from_batch, coder)
        entity_features(*inputs, out, layout.col0)
        if shared:  # rows answered by one event: copy its values to the rows the kernel did not write
            owner = np.asarray(placed, dtype=np.int64)[slot]
            copy = owner != rows
            cols = slice(layout.col0, layout.col0 + layout.width)
            out[rows[copy], cols] = out[owner[copy], cols]
