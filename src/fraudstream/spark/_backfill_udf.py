"""What the backfill runs inside Spark's Python workers: pandas in, pandas out, fraudstream's engine
in between. Spark pickles these module-level functions by reference, so every executor imports them
from its own installed fraudstream; the feature set travels as JSON and is compiled once per worker.

Columns inside Spark have plain names (``c<i>`` for the input's i-th column, ``k<g>`` for group g's
key, ``f<j>`` for the j-th feature, ``_row`` for the input position): Spark reads a dot in a column
name as a field access, and canonical tables have ``extra.<name>`` columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.events.frame import extra_from_json

ROW = "_row"


@dataclass(frozen=True)
class Plan:
    """What every stage needs to know: the fitted feature set (JSON) and the input's column names."""

    spec: str
    names: tuple[str, ...]

    def column(self, i: int) -> str:
        return f"c{i}"


def key_column(g: int) -> str:
    return f"k{g}"


def feature_column(j: int) -> str:
    return f"f{j}"


@dataclass(frozen=True)
class Compiled:
    """The fitted feature set split in parts the stages compute apart: the row features (one engine
    for all of them, and where their columns sit among the set's) and one engine per key entry."""

    feature_set: Any
    rows: Any
    row_columns: tuple[int, ...]
    groups: tuple[Any, ...]


@lru_cache(maxsize=4)
def compiled(spec: str) -> Compiled:
    """The feature set of ``spec`` and an engine per part, each a spec of the same entries: one key
    entry compiles to the same program whatever entries surround it, so computing it alone gives the
    columns the whole set gives (the names are checked to be the same)."""
    from fraudstream.features import FeatureEngine, FeatureSet
    from fraudstream.features.spec import KeyFeatures

    feature_set = FeatureSet.from_dict(json.loads(spec))
    data = feature_set.to_dict()
    raws = list(zip(data["features"], feature_set.entries, strict=True))
    keyed = [raw for raw, entry in raws if isinstance(entry, KeyFeatures)]
    plain = [raw for raw, entry in raws if not isinstance(entry, KeyFeatures)]
    in_groups = {j for g in feature_set.groups for j in range(g.col0, g.col0 + g.width)}
    row_columns = tuple(j for j in range(len(feature_set.names)) if j not in in_groups)
    source = feature_set.source
    rows = FeatureEngine(FeatureSet({**data, "features": plain}, source)) if plain else None
    groups = tuple(FeatureEngine(FeatureSet({**data, "features": [raw]}, source)) for raw in keyed)
    parted = [*(rows.names if rows else []), *(n for e in groups for n in e.names)]
    expected = [feature_set.names[j] for j in row_columns]
    expected += [n for g in feature_set.groups for n in feature_set.names[g.col0 : g.col0 + g.width]]
    if parted != expected:  # pragma: no cover - a spec the split does not reproduce
        raise ValueError(f"{feature_set.describe()}: its parts do not compute its columns")
    return Compiled(feature_set, rows, row_columns, groups)


def canonical(pdf: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """The input columns of a Spark batch as a canonical table (``extra`` parsed back from JSON)."""
    from fraudstream.events.frame import normalize_frame

    columns: dict[str, Any] = {name: pdf[plan.column(i)].to_numpy() for i, name in enumerate(plan.names)}
    if "extra" in columns:
        columns["extra"] = [extra_from_json(v) for v in columns["extra"].tolist()]
    frame = pd.DataFrame(columns)
    return normalize_frame(frame)


def row_stage(plan: Plan, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Each row's key for every group (``None`` where it has none) and its row features."""
    from fraudstream.events.batch import TransactionBatch

    parts = compiled(plan.spec)
    for pdf in batches:
        batch = TransactionBatch.from_frame(canonical(pdf, plan))
        events = parts.feature_set.events(batch)
        added: dict[str, Any] = {}
        for g, group in enumerate(parts.feature_set.groups):
            added[key_column(g)] = pd.Series(
                [k if isinstance(k, str) else None for k in events[group.column].tolist()],
                dtype=object,
                index=pdf.index,
            )
        if parts.rows is not None:
            values = parts.rows.compute(batch)
            for j, column in enumerate(parts.row_columns):
                added[feature_column(column)] = values[:, j]
        yield _widened(pdf, added)


def group_stage(plan: Plan, g: int, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Group ``g``'s features for a partition sorted by (key, input position): each entity's rows
    arrive together and in their input order, and are computed together with their own rows as their
    history, as the local engine does with a whole dataset. An entity whose rows straddle two of
    Spark's batches waits for the next; rows without a key get no value (NaN), as locally."""
    parts = compiled(plan.spec)
    engine, group = parts.groups[g], parts.feature_set.groups[g]
    key = key_column(g)
    columns = [feature_column(group.col0 + j) for j in range(group.width)]
    pending: list[pd.DataFrame] = []

    def compute(frames: list[pd.DataFrame]) -> pd.DataFrame:
        from fraudstream.events.batch import TransactionBatch

        pdf = _joined(frames) if len(frames) > 1 else frames[0]
        values = engine.compute(TransactionBatch.from_frame(canonical(pdf, plan)))
        return _widened(pdf, {c: values[:, j] for j, c in enumerate(columns)})

    for pdf in batches:
        present = pdf[key].notna().to_numpy()
        if not present.all():
            none = pdf[~present]
            yield _widened(none, {c: np.full(len(none), np.nan) for c in columns})
        rest = pdf[present]
        if rest.empty:
            continue
        keys = rest[key].to_numpy()
        last = keys == keys[-1]
        cut = len(keys) - int(np.argmin(last[::-1])) if not last.all() else 0
        if cut:
            yield compute([*pending, rest.iloc[:cut]])
            pending = []
        pending.append(rest.iloc[cut:])
    if pending:
        yield compute(pending)


def _widened(pdf: pd.DataFrame, added: dict[str, Any]) -> pd.DataFrame:
    """``pdf`` with the ``added`` columns, joined at once (a column at a time fragments the frame)."""
    return pd.concat([pdf, pd.DataFrame(added, index=pdf.index)], axis=1)


def _joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames one after the other, text as Python objects: joined Arrow-backed text is in several
    chunks, which Spark's conversion back to Arrow does not take."""
    joined = pd.concat(frames, ignore_index=True)
    text = {c: object for c, dtype in joined.dtypes.items() if _arrow_text(dtype)}
    return joined.astype(text) if text else joined


def _arrow_text(dtype: Any) -> bool:
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"
