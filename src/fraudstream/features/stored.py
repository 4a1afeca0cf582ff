"""Features stored next to their transactions: the Parquet that ``fraudstream features`` writes and
``train``, ``evaluate`` and ``backtest`` read.

The table holds the canonical transaction columns (``extra`` as JSON text, as
:func:`~fraudstream.datasets.io.write_frame` stores it) and one ``feature.<name>`` column per feature,
in the feature set's order; the prefix keeps a feature named like a field (``amount``) apart from it.
A feature without a value is stored as null and read back as NaN. The fitted feature set that computed
the columns (spec, names, the categorical values it learned and the date it learned them before) is
stored with them as JSON under :data:`METADATA_KEY`: in the file's key-value metadata when one file is
written here, and in the ``transaction_id`` column's metadata when Spark writes a folder of parts
(Spark keeps column metadata in its schema, which it stores in every part). Reading accepts both, so
a reader always knows which spec and which fitted values made the numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.events.frame import extra_from_json, extra_to_json, normalize_frame
from fraudstream.features.plan import FeatureSet

FEATURE_PREFIX = "feature."
METADATA_KEY = "fraudstream.features"
SPARK_SCHEMA_KEY = "org.apache.spark.sql.parquet.row.metadata"
"""Where Spark stores its schema (with each column's metadata) in the Parquet files it writes."""


@dataclass(frozen=True)
class StoredFeatures:
    """A features file read back: the canonical transactions, the feature set that computed the
    features, the feature matrix (rows of ``frame`` × ``feature_set.names``) and how it was made."""

    frame: pd.DataFrame
    feature_set: FeatureSet
    values: np.ndarray
    fit_until: datetime | None
    engine: str


def describe(feature_set: FeatureSet, fit_until: datetime | None, engine: str) -> str:
    """The JSON stored with the features: what a reader needs to trust and reuse them."""
    return json.dumps(
        {
            "format": 1,
            "spec": feature_set.to_dict(),
            "names": feature_set.names,
            "fit_until": None if fit_until is None else fit_until.isoformat(),
            "engine": engine,
        },
        sort_keys=True,
        default=str,
    )


def column_name(feature: str) -> str:
    return FEATURE_PREFIX + feature


def write_features(
    frame: pd.DataFrame,
    feature_set: FeatureSet,
    values: np.ndarray,
    path: Path,
    fit_until: datetime | None = None,
) -> Path:
    """Write one Parquet file of ``frame``'s transactions and their features ``values``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if values.shape != (len(frame), len(feature_set.names)):
        raise ValueError(
            f"features of shape {values.shape} do not fit {len(frame)} rows × {len(feature_set.names)}"
        )
    frame = normalize_frame(frame)
    table = pa.Table.from_pandas(frame.assign(extra=extra_to_json(frame["extra"])), preserve_index=False)
    for j, name in enumerate(feature_set.names):
        table = table.append_column(column_name(name), pa.array(values[:, j], from_pandas=True))
    metadata = {
        **(table.schema.metadata or {}),
        METADATA_KEY.encode(): describe(feature_set, fit_until, "local"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(metadata), path)
    return path


def parts(path: Path) -> list[Path]:
    """The Parquet files of ``path``: itself, or a folder's part files in name order (Spark's output;
    files starting with ``_`` or ``.`` are Spark's and Hadoop's markers, not data)."""
    if path.is_dir():
        return sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix == ".parquet" and p.name[0] not in "_."
        )
    return [path]


def stored_metadata(path: Path) -> dict[str, Any] | None:
    """The stored feature set's description if ``path`` is a features file (or folder), else ``None``
    (a plain transactions file, or not Parquet at all)."""
    import pyarrow.parquet as pq

    if path.suffix.lower() != ".parquet" and not path.is_dir():
        return None
    files = parts(path)
    if not files or not files[0].is_file():
        return None
    try:
        metadata = pq.read_schema(files[0]).metadata or {}
    except OSError:
        return None
    found = metadata.get(METADATA_KEY.encode())
    if found is None and SPARK_SCHEMA_KEY.encode() in metadata:
        fields = json.loads(metadata[SPARK_SCHEMA_KEY.encode()]).get("fields", [])
        found = next(
            (f["metadata"][METADATA_KEY] for f in fields if METADATA_KEY in f.get("metadata", {})), None
        )
    return None if found is None else dict(json.loads(found))


def read_features(path: Path) -> StoredFeatures | None:
    """A features file (or Spark's folder of parts) read back, or ``None`` when ``path`` holds no
    stored features. The transactions are validated like any canonical table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    described = stored_metadata(path)
    if described is None:
        return None
    feature_set = FeatureSet.from_dict(described["spec"])
    names = list(described["names"])
    if feature_set.names != names:
        raise ValueError(f"{path}: the stored feature names do not match the stored spec; recompute them")
    table = pa.concat_tables([pq.read_table(p) for p in parts(path)])
    wanted = [column_name(n) for n in names]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: the column {missing[0]!r} of the stored feature set is missing")
    values = np.empty((table.num_rows, len(names)), dtype=np.float64)
    for j, column in enumerate(wanted):
        values[:, j] = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    frame = table.drop_columns(wanted).to_pandas()
    if "extra" in frame.columns:
        frame["extra"] = frame["extra"].astype(object).map(extra_from_json)
    fit_until = described.get("fit_until")
    return StoredFeatures(
        normalize_frame(frame),
        feature_set,
        values,
        None if fit_until is None else datetime.fromisoformat(fit_until),
        str(described.get("engine", "?")),
    )
