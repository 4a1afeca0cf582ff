"""Which names rules may read, and the columns that carry them when scoring a batch."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Final, NamedTuple

import numpy as np

from fraudstream.events.batch import COLUMNS, KEY_COLUMNS, TransactionBatch
from fraudstream.expr.expression import NUMBER, STRING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fraudstream.features.plan import FeatureSet

LABEL_FIELDS: Final = ("is_fraud", "label_time")
"""Never readable by rules: labels arrive after the decision, so a rule using them could not work live."""


def default_known_names(feature_set: FeatureSet | None = None) -> dict[str, str]:
    """Names and kinds rules may read: the batch's transaction columns plus the feature set's names.

    Only columns a :class:`~fraudstream.events.batch.TransactionBatch` actually carries are offered,
    so a rule that loads is a rule that can be evaluated. Times are seconds since the epoch.
    """
    from fraudstream.features.engine import default_feature_set

    feature_set = feature_set or default_feature_set()
    text = {"transaction_id", *KEY_COLUMNS}
    known = {name: STRING if name in text else NUMBER for name in COLUMNS if name not in LABEL_FIELDS}
    known.update(dict.fromkeys(feature_set.names, NUMBER))
    return known


class _Layout(NamedTuple):
    fields: frozenset[str]
    columns: dict[str, int]
    names: tuple[str, ...]


_LAYOUTS: dict[tuple[type, tuple[str, ...]], _Layout] = {}


def _layout(batch_type: type, feature_names: tuple[str, ...]) -> _Layout:
    """The batch's fields, feature name → column (the last one if repeated) and every name in the
    order of a dict of batch fields updated with the features; worked out once per feature set."""
    key = (batch_type, feature_names)
    layout = _LAYOUTS.get(key)
    if layout is None:
        batch_fields = [name for name in COLUMNS if name not in LABEL_FIELDS]
        index = {name: i for i, name in enumerate(feature_names)}
        names = tuple(dict.fromkeys([*batch_fields, *feature_names]))
        layout = _Layout(frozenset(batch_fields), index, names)
        if len(_LAYOUTS) >= 16:
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    return layout


class RuleColumns(Mapping[str, np.ndarray]):
    """A batch's fields and feature columns by name, fetched only when read.

    Rules read a dozen of the batch's ~50 columns, and building them all cost more than applying
    the rules to a batch of one row. A feature shadows a batch field of the same name.
    """

    __slots__ = ("_batch", "_features", "_fields", "_index", "_names")

    def __init__(self, batch: TransactionBatch, features: np.ndarray, feature_names: tuple[str, ...]) -> None:
        self._batch = batch
        self._features = features
        self._fields, self._index, self._names = _layout(type(batch), feature_names)

    def __getitem__(self, name: str) -> np.ndarray:
        i = self._index.get(name)
        if i is not None:
            return self._features[:, i]
        if name in self._fields:
            column: np.ndarray = getattr(self._batch, name)
            return column
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self._index or name in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def rule_columns(
    batch: TransactionBatch, features: np.ndarray, feature_names: Sequence[str]
) -> Mapping[str, np.ndarray]:
    """The columns :meth:`~fraudstream.rules.RuleSet.apply` expects: batch fields and feature columns.

    ``features`` is the engine's matrix (rows of ``batch`` × ``feature_names``); its columns are
    views, not copies, taken only when a rule reads them (see :class:`RuleColumns`).
    """
    if features.shape != (len(batch), len(feature_names)):
        raise ValueError(
            f"features have shape {features.shape}, expected ({len(batch)}, {len(feature_names)})"
        )
    return RuleColumns(batch, features, tuple(feature_names))
