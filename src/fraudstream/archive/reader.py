"""Reading the archive back: a dataset as an Arrow table, or the transactions as a canonical frame with
their labels, for ``fraudstream train --data s3://bucket/prefix``.

Labels come from the archive's own ``labels`` dataset, so training from an archive needs no database: each
source's verdict is the newest it archived (a changed verdict is archived again), and a transaction is
fraud from the earliest ``label_time`` of a source whose verdict says so, as in the store. One without a
fraud verdict is legitimate from ``label_delay`` after it (the chargeback window, as ``retrain`` takes
it), or from a source's legitimate verdict if that came earlier. Labels reach the archive as
``fraudstream archive`` copies them, so a run of it just before training brings in those that arrived
since.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pyarrow as pa

from fraudstream.archive.location import ArchiveError, Location, open_location, translate
from fraudstream.archive.writer import DATASETS, SCHEMAS
from fraudstream.events.frame import records_to_frame
from fraudstream.events.transaction import Transaction


def read_dataset(location: Location, name: str) -> pa.Table:
    """Every object of the archive's dataset ``name`` as one table (empty if none were written), with
    the partition's ``date`` as a column (``feature_sets`` and ``explainers``, not partitioned, have none)."""
    import pyarrow.dataset as ds
    from pyarrow import fs

    if name not in SCHEMAS:
        raise ValueError(f"dataset: expected one of {', '.join(SCHEMAS)}, got {name!r}")
    folder = location.path(name)
    partitioned = name in DATASETS
    schema = SCHEMAS[name].append(pa.field("date", pa.string())) if partitioned else SCHEMAS[name]
    try:
        if location.fs.get_file_info(folder).type != fs.FileType.Directory:
            return schema.empty_table()
        dataset = ds.dataset(
            folder, schema=schema, filesystem=location.fs, format="parquet",
            partitioning="hive" if partitioned else None,
        )  # fmt: skip
        return dataset.to_table()
    except OSError as exc:
        raise translate(exc, location.url) from None


def label_times(labels: pa.Table) -> pd.DataFrame:
    """Per labelled transaction id (the index), ``fraud``: the earliest ``label_time`` among the sources
    whose newest archived verdict is fraud, and ``legit``: the same for legitimate verdicts (``NaT``
    where no source says so)."""
    current = (
        labels.select(["id", "transaction_id", "is_fraud", "label_time", "source", "received_at"])
        .to_pandas()
        .sort_values(["received_at", "id"])
        .drop_duplicates(["transaction_id", "source"], keep="last")
    )
    fraud = current["is_fraud"].astype(bool)
    return pd.DataFrame(
        {
            "fraud": current["label_time"].where(fraud).groupby(current["transaction_id"]).min(),
            "legit": current["label_time"].where(~fraud).groupby(current["transaction_id"]).min(),
        }
    )


def labels_of(known: pd.DataFrame, ids: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The fraud and legitimate label times (``NaT`` where none) of the transactions ``ids``, on their
    index, from :func:`label_times`. Looked up by reindexing, not ``Series.map``, which casts an empty
    lookup (an archive with no labels yet) to float and fails."""
    keys = ids.to_numpy(dtype=object)
    fraud, legit = (
        pd.Series(pd.to_datetime(known[source].reindex(keys).to_numpy(), utc=True), index=ids.index)
        for source in ("fraud", "legit")
    )
    return fraud, legit


def read_archive(url: str, label_delay: timedelta = timedelta(days=7)) -> pd.DataFrame:
    """The archived transactions at ``url`` as a canonical, labelled frame in event-time order: fraud
    from the earliest archived fraud verdict, otherwise legitimate from ``label_delay`` after the
    transaction (or an earlier legitimate verdict).

    Raises :class:`ArchiveError` saying what to do when there is no archive there or it is empty.
    """
    location = open_location(url)
    transactions = read_dataset(location, "transactions")
    if transactions.num_rows == 0:
        decisions = read_dataset(location, "decisions").num_rows
        if decisions:
            raise ArchiveError(
                f"the archive at {location.url} holds {decisions:,} decisions but no transactions: "
                "decisions stored by `fraudstream replay` keep no transaction bodies to train on (train "
                "on the replayed file itself), and those from `serve` and `worker` do; `fraudstream "
                "retrain --data` trains on the archived decisions' logged features"
            )
        raise ArchiveError(
            f"no archived transactions at {location.url}: run `fraudstream archive run` with "
            "FRAUD_ARCHIVE_URL set to it first (rows newer than FRAUD_ARCHIVE_SETTLE_SECONDS wait for a "
            "later pass), or check the URL"
        )
    transactions = transactions.sort_by([("timestamp", "ascending"), ("transaction_id", "ascending")])
    bodies = transactions.column("body").to_pylist()
    frame = records_to_frame(Transaction.model_validate(json.loads(body)) for body in bodies)
    fraud, legit = labels_of(label_times(read_dataset(location, "labels")), frame["transaction_id"])
    window = frame["timestamp"] + label_delay
    legit = legit.where(legit.notna() & (legit < window), window)
    frame["is_fraud"] = pd.array(fraud.notna().to_numpy(), dtype="boolean")
    frame["label_time"] = fraud.where(fraud.notna(), legit).astype("datetime64[us, UTC]")
    return frame


__all__ = ["label_times", "labels_of", "read_archive", "read_dataset"]
