"""Online/offline feature parity: were decisions made on the features the offline engine computes?

Every stored decision keeps the feature vector it was made on. The check reads the decisions on the
transactions of a period and computes the same features again with the offline engine, point in time,
from the stored transactions (read back by the spec's retention before the period, so that windows at
its start are whole) and their fraud labels with the times those became known, as ``retrain`` does.
Where the two differ, the live feature state saw another history than storage holds: events it missed
or saw late (a redelivered message decided after later ones, a state lost and rebuilt) or events of
one key that reached different workers (a merchant's transactions across Kafka partitions keyed by
customer). See docs/operations/delivery.md for the guarantee that remains.

Values are compared with a relative tolerance of :data:`RTOL` (NaN equals NaN) and reported per
feature group (the key a group aggregates over; ``row`` for the features of the transaction alone),
so a difference points at the entity whose history went astray. Only decisions logged with the spec's
feature names and whose transaction is stored can be checked; the others are counted apart (``replay``
stores decisions without their transactions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.events.batch import TransactionBatch
from fraudstream.features.engine import FeatureEngine
from fraudstream.features.plan import FeatureSet
from fraudstream.training.fit import Progress
from fraudstream.training.retrain import HistorySource, read_history, read_transactions

RTOL = 1e-9
"""Relative tolerance: the engine is the same code online and offline, so values agree to rounding."""
ROW = "row"
"""The group of the features computed from the transaction alone."""


@dataclass
class Parity:
    """What the check found for the decisions on the transactions of ``[start, end)``."""

    start: datetime
    end: datetime
    decisions: int
    """Decisions on the period's transactions."""
    compared: int
    """Of those, the ones checked (logged with the spec's names, transaction stored)."""
    differing: int
    """Checked decisions whose vector differs from the offline one in at least one feature."""
    other_features: int = 0
    """Decisions logged with other feature names than the spec's (another model served them)."""
    not_stored: int = 0
    """Decisions whose transaction is not stored (``replay`` stores decisions only)."""
    groups: dict[str, int] = field(default_factory=dict)
    """Per feature group, the checked decisions differing in one of its features (every group listed)."""
    features: dict[str, int] = field(default_factory=dict)
    """Per feature that differs anywhere, how many checked decisions it differs in, most first."""

    @property
    def share(self) -> float:
        """The share of checked decisions that differ (0 when none was checked)."""
        return self.differing / self.compared if self.compared else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "decisions": self.decisions,
            "compared": self.compared,
            "differing": self.differing,
            "share": self.share,
            "other_features": self.other_features,
            "not_stored": self.not_stored,
            "groups": self.groups,
            "features": self.features,
        }


def check_parity(
    source: HistorySource,
    feature_set: FeatureSet,
    start: datetime,
    end: datetime,
    progress: Progress | None = None,
) -> Parity:
    """Compare the vectors logged with the decisions on the transactions of ``[start, end)`` with
    ``feature_set`` computed again offline from ``source`` (the store's ``history``, or the archive's)."""
    history = read_history(source, start, end, progress)
    names = feature_set.names
    logged, same = history.logged(names)
    frame = read_transactions(source, start - timedelta(seconds=feature_set.retention), end, progress)
    where = pd.Index(frame["transaction_id"]).get_indexer(history.transaction_id)
    checked = same & (where >= 0)
    parity = Parity(
        start, end, len(history), int(checked.sum()), 0,
        other_features=int((~same).sum()), not_stored=int((same & (where < 0)).sum()),
    )  # fmt: skip
    spans = _groups(feature_set)
    if not parity.compared:
        parity.groups = dict.fromkeys(spans, 0)
        return parity
    if progress:
        progress(f"computing {len(names)} features offline", 0, 1)
    offline = FeatureEngine(feature_set).compute(TransactionBatch.from_frame(frame))[where[checked]]
    if progress:
        progress(f"computing {len(names)} features offline", 1, 1)
    online = logged[checked]
    differs = ~(np.isclose(online, offline, rtol=RTOL, atol=0.0) | (np.isnan(online) & np.isnan(offline)))
    parity.differing = int(differs.any(axis=1).sum())
    parity.groups = {group: int(differs[:, columns].any(axis=1).sum()) for group, columns in spans.items()}
    per_feature = differs.sum(axis=0)
    parity.features = {
        names[j]: int(per_feature[j]) for j in np.argsort(-per_feature, kind="stable") if per_feature[j]
    }
    return parity


def _groups(feature_set: FeatureSet) -> dict[str, np.ndarray]:
    """Each feature group's columns: a keyed or network group's, then the rest as :data:`ROW`."""
    spans: dict[str, np.ndarray] = {}
    keyed = np.zeros(len(feature_set.names), dtype=bool)
    parts = [(g.name, g.col0, g.width) for g in feature_set.groups]
    for name, col0, width in [*parts, *((n.name, n.col0, n.width) for n in feature_set.networks)]:
        columns = np.arange(col0, col0 + width)
        spans[name] = np.concatenate([spans.get(name, columns[:0]), columns])
        keyed[columns] = True
    spans[ROW] = np.flatnonzero(~keyed)
    return spans
