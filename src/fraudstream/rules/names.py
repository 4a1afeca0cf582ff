"""Which names rules may read, and the columns that carry them when scoring a batch."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Final

import numpy as np

from fraudstream.events.batch import KEY_COLUMNS, TransactionBatch
from fraudstream.rules.expr import NUMBER, STRING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fraudstream.features.definitions import FeatureSet

LABEL_FIELDS: Final = ("is_fraud", "label_time")
"""Never readable by rules: labels arrive after the decision, so a rule using them could not work live."""


def default_known_names(feature_set: FeatureSet | None = None) -> dict[str, str]:
    """Names and kinds rules may read: the batch's transaction columns plus the feature set's names.

    Only columns a :class:`~fraudstream.events.batch.TransactionBatch` actually carries are offered,
    so a rule that loads is a rule that can be evaluated. Times are seconds since the epoch.
    """
    from fraudstream.features.definitions import DEFAULT_FEATURE_SET

    feature_set = feature_set or DEFAULT_FEATURE_SET
    text = {"transaction_id", *KEY_COLUMNS}
    known = {
        f.name: STRING if f.name in text else NUMBER
        for f in fields(TransactionBatch)
        if f.name not in LABEL_FIELDS
    }
    known.update(dict.fromkeys(feature_set.names, NUMBER))
    return known


def rule_columns(
    batch: TransactionBatch, features: np.ndarray, feature_names: Sequence[str]
) -> dict[str, np.ndarray]:
    """The columns :meth:`~fraudstream.rules.RuleSet.apply` expects: batch fields and feature columns.

    ``features`` is the engine's matrix (rows of ``batch`` × ``feature_names``); its columns are
    views, not copies.
    """
    if features.shape != (len(batch), len(feature_names)):
        raise ValueError(
            f"features have shape {features.shape}, expected ({len(batch)}, {len(feature_names)})"
        )
    columns = {f.name: getattr(batch, f.name) for f in fields(batch) if f.name not in LABEL_FIELDS}
    columns.update({name: features[:, i] for i, name in enumerate(feature_names)})
    return columns
