"""The feature engine: one implementation for building training data and for scoring live.

``compute`` takes a batch and, optionally, a :class:`FeatureState` holding earlier history. Offline,
a whole dataset is one batch with no state and its own labels; live, each incoming batch is answered
from the state's history plus the batch itself, then recorded. Either way a transaction sees only
events strictly before it in event time and fraud labels that had arrived before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraudstream.events.batch import TransactionBatch
from fraudstream.features import keys
from fraudstream.features.definitions import DAY, DEFAULT_FEATURE_SET, EntitySpec, FeatureSet
from fraudstream.features.kernels import entity_features
from fraudstream.state.base import EVENT_FIELDS, FeatureState, History

_EMPTY_CODES = np.zeros((0, 0), dtype=np.int64)
_ALWAYS = frozenset({"timestamp", "amount", "latitude", "longitude"})


def _code_matrix(columns: list[np.ndarray], n: int) -> np.ndarray:
    if not columns:
        return np.zeros((n, 0), dtype=np.int64)
    return np.ascontiguousarray(np.stack([keys.factorize(c)[0] for c in columns], axis=1))


@dataclass(frozen=True)
class _Layout:
    spec: EntitySpec
    col0: int
    width: int
    bwin: np.ndarray
    agg_b: np.ndarray
    dist_b: np.ndarray
    ratio_b: int
    label_b: np.ndarray
    fields: tuple[str, ...]  # the event fields this entity's features read


class FeatureEngine:
    """Computes the feature set's values for a batch of transactions."""

    def __init__(self, feature_set: FeatureSet = DEFAULT_FEATURE_SET) -> None:
        self.feature_set = feature_set
        self.names = feature_set.names
        self.entity_columns = {e.name: e.column for e in feature_set.entities}
        self._layouts: list[_Layout] = []
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
            self._layouts.append(
                _Layout(
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
                        if f in _ALWAYS or f in spec.distinct or (spec.profile and f in feature_set.novelty)
                    ),
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
        """Feature matrix (rows of ``batch`` × :attr:`names`), without changing any state.

        With no ``state`` the batch is its own history and, unless told otherwise, its rows' own
        ``is_fraud``/``label_time`` are the labels (each usable only after its ``label_time``).
        """
        if labels_from_batch is None:
            labels_from_batch = state is None
        out = np.full((len(batch), len(self.names)), np.nan)
        self._transaction_features(batch, out)
        recorded = state.recorded(batch.transaction_id) if state is not None else None
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
        ts = batch.timestamp
        hour = np.floor((ts % DAY) / 3600.0)
        weekday = (np.floor(ts / DAY) + 3) % 7
        values = {
            "amount": batch.amount,
            "log_amount": np.log1p(batch.amount),
            "hour": hour,
            "weekday": weekday,
            "is_night": (hour < 6).astype(np.float64),
            "is_weekend": (weekday >= 5).astype(np.float64),
            "account_age_days": (ts - batch.account_created_at) / DAY,
        }
        for i, name in enumerate(self.feature_set.transaction_features):
            out[:, i] = values[name]

    def _entity(
        self,
        layout: _Layout,
        batch: TransactionBatch,
        state: FeatureState | None,
        recorded: np.ndarray | None,
        labels_from_batch: bool,
        out: np.ndarray,
    ) -> None:
        spec, fs = layout.spec, self.feature_set
        entity_keys = getattr(batch, spec.column)
        rows = np.flatnonzero(keys.present(entity_keys))
        if rows.size == 0:
            return
        q_keys = entity_keys[rows]
        q_tx = batch.transaction_id[rows]
        since = float(np.min(batch.timestamp[rows])) - fs.retention
        history = (
            state.fetch(spec.name, keys.distinct(q_keys), since) if state is not None else History.empty()
        )

        if recorded is None:
            slot = keys.lookup(history.events["transaction_id"], q_tx)
        else:  # only a recorded (redelivered) transaction can be among the fetched events
            slot = np.full(rows.shape[0], -1, dtype=np.int64)
            known = np.flatnonzero(recorded[rows])
            if known.size:
                slot[known] = keys.lookup(history.events["transaction_id"], q_tx[known])
        first = keys.first_seen(q_tx)
        fresh = (slot < 0) & first
        add = rows[fresh]
        ctx = {f: np.concatenate([history.events[f], getattr(batch, f)[add]]) for f in layout.fields}
        ctx_key = np.concatenate([history.key, entity_keys[add]])
        slot[fresh] = len(history) + np.arange(add.shape[0])
        repeated = (slot < 0) & ~first
        if repeated.any():
            slot[repeated] = slot[fresh][keys.lookup(q_tx[fresh], q_tx[repeated])]
        answered, inverse = np.unique(slot, return_inverse=True)
        out_row = np.full(ctx_key.shape[0], -1, dtype=np.int64)
        out_row[answered] = np.arange(answered.shape[0])

        codes, uniques = keys.factorize(ctx_key)
        order = np.lexsort((ctx["timestamp"], codes))
        codes = codes[order]
        bounds = np.searchsorted(codes, np.arange(uniques.shape[0] + 1)).astype(np.int64)
        cps = _code_matrix([ctx[c][order] for c in spec.distinct], order.shape[0])
        nov = (
            _code_matrix([ctx[c][order] for c in fs.novelty], order.shape[0])
            if spec.profile
            else _EMPTY_CODES
        )

        l_key, l_tx, l_time = history.label_key, history.label_tx_time, history.label_time
        if labels_from_batch:
            fraud = rows[fresh & (batch.is_fraud[rows] == 1) & ~np.isnan(batch.label_time[rows])]
            l_key = np.concatenate([l_key, entity_keys[fraud]])
            l_tx = np.concatenate([l_tx, batch.timestamp[fraud]])
            l_time = np.concatenate([l_time, batch.label_time[fraud]])
        l_code = keys.lookup(uniques, l_key)
        keep = l_code >= 0
        l_code, l_tx, l_time = l_code[keep], l_tx[keep], l_time[keep]
        l_order = np.lexsort((l_tx, l_code))
        lbounds = np.searchsorted(l_code[l_order], np.arange(uniques.shape[0] + 1)).astype(np.int64)

        result = np.full((answered.shape[0], layout.width), np.nan)
        entity_features(
            bounds,
            np.ascontiguousarray(ctx["timestamp"][order]),
            np.ascontiguousarray(ctx["amount"][order]),
            out_row[order],
            layout.bwin,
            layout.agg_b,
            cps,
            layout.dist_b,
            nov,
            np.ascontiguousarray(ctx["latitude"][order]),
            np.ascontiguousarray(ctx["longitude"][order]),
            spec.profile,
            layout.ratio_b,
            lbounds,
            np.ascontiguousarray(l_tx[l_order]),
            np.ascontiguousarray(l_time[l_order]),
            layout.label_b,
            result,
            0,
        )
        out[rows, layout.col0 : layout.col0 + layout.width] = result[inverse]
