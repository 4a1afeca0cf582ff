"""Point-in-time features of a history in Spark: the backfill behind ``fraudstream features --engine spark``.

The local engine computes a dataset's features as one batch that is its own history. Here Spark
decides where the rows are, and fraudstream's engine computes the same values on each part:

1. one ``mapInPandas`` pass computes each row's row features (they read the row alone) and its key
   for every key entry of the spec (``customer_id``, a composite key, a key with a condition);
2. for each key entry in turn, the rows are partitioned by that key and sorted by (key, input
   position), and a ``mapInPandas`` pass runs the compiled kernels on whole entities: an entity's
   history is its own rows, with the labels they carry, exactly as in the local engine's no-state
   path, so an entity's values do not depend on which other entities share its partition;
3. the rows are put back in input order and written as Parquet parts, with the fitted feature set in
   the schema (see :mod:`fraudstream.features.stored`), which ``train --data`` reads.

A partition holds many entities, so the engine runs once per part of Spark's batches rather than once
per entity (a ``groupBy().applyInPandas`` would call Python, and rebuild a batch, per customer).
The feature set is fitted on the driver and travels to the executors as JSON; executors need
fraudstream installed (see the backfill page of the docs for ``spark-submit``).

``spark-submit .../fraudstream/spark_submit.py features ARGS`` runs it on a cluster (see
:mod:`fraudstream.spark_submit`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from fraudstream.events.batch import TransactionBatch
from fraudstream.events.frame import extra_from_json, extra_to_json
from fraudstream.features.plan import FeatureSet
from fraudstream.features.stored import METADATA_KEY, column_name, describe
from fraudstream.spark._backfill_udf import (
    ROW,
    Plan,
    compiled,
    feature_column,
    group_stage,
    key_column,
    row_stage,
)

SESSION_CONF = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}
"""Times written as UTC microseconds (Spark's default, INT96, reads back as naive nanoseconds)."""


def from_frame(spark: Any, frame: pd.DataFrame) -> Any:
    """A canonical frame loaded on the driver as a Spark DataFrame, with its rows' positions."""
    extra = extra_to_json(frame["extra"])
    prepared = frame.assign(extra=extra, **{ROW: np.arange(len(frame), dtype=np.int64)})
    return spark.createDataFrame(prepared)


def read(spark: Any, path: str) -> Any:
    """A canonical Parquet file or folder (any path Spark reads) as a Spark DataFrame with its rows'
    positions: file order within a file, which is the order the local engine reads a file in. The
    column names are checked here; the values are checked as the executors read them."""
    from pyspark.sql import functions as F

    from fraudstream.events.frame import COLUMNS, REQUIRED, extra_name, is_extra_column

    source = spark.read.parquet(path)
    unknown = [c for c in source.columns if c not in COLUMNS and not is_extra_column(c)]
    if unknown:
        raise ValueError(
            f"{path}: unknown column {unknown[0]!r}: a canonical transactions file has the columns "
            f"{', '.join(COLUMNS)} and extra.<name> (read your own format with --mapping, on the driver)"
        )
    for column in source.columns:
        if is_extra_column(column):
            extra_name(column)
    missing = [c for c in REQUIRED if c not in source.columns]
    if missing:
        raise ValueError(f"{path}: required column {missing[0]!r} is missing")
    return source.withColumn(ROW, F.monotonically_increasing_id())


@dataclass(frozen=True)
class Overview:
    """What the driver learns of a history read by Spark before fitting: its size, its last time,
    a repeated ``transaction_id`` if any, and a batch of one row holding each column's first value
    (so :meth:`FeatureSet.absent` can tell the fields no row carries)."""

    rows: int
    last: datetime | None
    repeated: str | None
    present: TransactionBatch


def overview(source: Any) -> Overview:
    from pyspark.sql import functions as F

    from fraudstream.events.frame import COLUMNS, TIME_COLUMNS

    names = [c for c in source.columns if c != ROW]
    firsts = [F.first(F.col(f"`{c}`"), ignorenulls=True).alias(f"c{i}") for i, c in enumerate(names)]
    last = F.unix_micros(F.max("timestamp")).alias("last")
    got = source.agg(F.count(F.lit(1)).alias("rows"), last, *firsts).first()
    repeated = source.groupBy("transaction_id").count().where(F.col("count") > 1).limit(1).collect()
    values: dict[str, list[Any]] = {c: [None] for c in COLUMNS}
    values.update({name: [got[f"c{i}"]] for i, name in enumerate(names)})
    values["extra"] = [extra_from_json(values["extra"][0])]
    first = pd.DataFrame(values)
    for column in TIME_COLUMNS:
        first[column] = pd.to_datetime(first[column], utc=True)
    micros = got["last"]
    return Overview(
        int(got["rows"]),
        None if micros is None else datetime.fromtimestamp(micros / 1e6, UTC),
        str(repeated[0]["transaction_id"]) if repeated else None,
        TransactionBatch.from_frame(first),
    )


def fit(source: Any, feature_set: FeatureSet, until: datetime) -> FeatureSet:
    """``feature_set`` with each categorical field's ``top`` most frequent values among the rows
    before ``until``, counted by Spark and chosen by :meth:`FeatureSet.fit_counts`, as the local
    engine chooses them."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    before = source.where(F.col("timestamp") < F.lit(until))

    def counts(field: str) -> dict[str, int]:
        if field not in source.columns or not isinstance(source.schema[field].dataType, T.StringType):
            raise ValueError(
                f"categorical {field!r}: Spark learns a categorical's values from a text column of the "
                "file; this one is not (fit it with the local engine, or flatten it into a text column)"
            )
        counted = before.where(F.col(f"`{field}`").isNotNull()).groupBy(F.col(f"`{field}`")).count()
        return {str(r[0]): int(r[1]) for r in counted.collect()}

    return feature_set.fit_counts(counts)


def compute(source: Any, feature_set: FeatureSet, fit_until: datetime | None = None) -> Any:
    """The features of ``source`` (canonical columns and ``_row``, the input position) as a Spark
    DataFrame: the canonical columns then ``feature.<name>`` per feature, in input order, with the
    fitted feature set in the ``transaction_id`` column's metadata."""
    feature_set.require_fitted()
    if feature_set.networks:
        raise ValueError(
            f"{feature_set.describe()}: network entries ({', '.join(n.name for n in feature_set.networks)}) "
            "read the events of other keys, which Spark spreads over partitions by key: compute them "
            "with the local engine (--engine local)"
        )
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    names = tuple(c for c in source.columns if c != ROW)
    if "transaction_id" not in names:
        raise ValueError("the transactions have no transaction_id column")
    plan = Plan(json.dumps(feature_set.to_dict(), sort_keys=True, default=str), names)
    parts = compiled(plan.spec)  # fails here, on the driver, if the parts do not add up
    frame = source.select(*[F.col(f"`{n}`").alias(plan.column(i)) for i, n in enumerate(names)], ROW)

    def grown(fields: list[Any]) -> Any:
        return T.StructType([*frame.schema.fields, *fields])

    keys = [T.StructField(key_column(g), T.StringType()) for g in range(len(feature_set.groups))]
    rows = [T.StructField(feature_column(j), T.DoubleType()) for j in parts.row_columns]
    frame = frame.mapInPandas(partial(row_stage, plan), grown(keys + rows))
    for g, group in enumerate(feature_set.groups):
        key = F.col(key_column(g))
        spread = F.coalesce(key, F.concat(F.lit("\x00"), F.col(ROW).cast("string")))
        columns = [T.StructField(feature_column(group.col0 + j), T.DoubleType()) for j in range(group.width)]
        frame = (
            frame.repartition(spread)
            .sortWithinPartitions(key, ROW)
            .mapInPandas(partial(group_stage, plan, g), grown(columns))
        )
    stored = describe(feature_set, fit_until, "spark")
    return frame.orderBy(ROW).select(
        *[
            F.col(plan.column(i)).alias(n, metadata={METADATA_KEY: stored} if n == "transaction_id" else {})
            for i, n in enumerate(names)
        ],
        *[F.col(feature_column(j)).alias(column_name(n)) for j, n in enumerate(feature_set.names)],
    )


def write(result: Any, out: str) -> None:
    """Write the features as a folder of Parquet parts at ``out``, replacing what was there."""
    result.write.mode("overwrite").parquet(out)
