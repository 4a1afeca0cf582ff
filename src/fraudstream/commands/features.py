"""The ``features`` command: point-in-time features of a history, written to Parquet for training."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from fraudstream.commands.common import (
    DatasetOpt,
    DatasetsDirOpt,
    FeaturesOpt,
    JsonOpt,
    MappingOpt,
    PathOpt,
    SkipBadRowsOpt,
    console,
    date_option,
    emit,
    errors,
    fitted_features,
    settings_with,
    spec_features,
    utc,
)


class Engine(StrEnum):
    local = "local"
    spark = "spark"


def features(
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="<file|url>",
            help=(
                "Transactions file: canonical (.parquet, .csv, .jsonl), or your own with --mapping. "
                "With --engine spark a canonical Parquet file or folder is read by Spark, so it may be "
                "any path Spark reads (hdfs://, s3a://, ...)."
            ),
        ),
    ] = None,
    dataset: DatasetOpt = None,
    paths: PathOpt = None,
    mapping: MappingOpt = None,
    skip_bad_rows: SkipBadRowsOpt = False,
    spec: FeaturesOpt = None,
    datasets_dir: DatasetsDirOpt = None,
    fit_until: Annotated[
        datetime | None,
        date_option(
            "Learn the categorical features' values from the rows before this date (default: train's "
            "default training end, the last day of data less --gap-days and --test-days)"
        ),
    ] = None,
    gap_days: Annotated[
        float,
        typer.Option(min=0.0, help="Label delay given to dataset labels, as train's --gap-days."),
    ] = 7.0,
    test_days: Annotated[
        float, typer.Option(min=0.0, help="As train's --test-days: only places the default --fit-until.")
    ] = 7.0,
    out_path: Annotated[
        str | None,
        typer.Option(
            "--out",
            metavar="<path>",
            help=(
                "Parquet to write (default: FRAUD_DATA_DIR/features.parquet): one file with the local "
                "engine, a folder of parts with Spark (any path Spark writes). `train --data` reads either."
            ),
        ),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            case_sensitive=False,
            help="local: this process. spark: Spark partitions the rows by entity and runs the same "
            "kernels on each partition, for histories larger than one machine.",
        ),
    ] = Engine.local,
    master: Annotated[
        str | None,
        typer.Option(
            metavar="<url>",
            help="With --engine spark: the Spark master (`local[*]`, spark://host:7077, yarn, k8s://...; "
            "default: spark-submit's, else `local[*]`).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute point-in-time features for a history and write them to Parquet for `train`.

    The file holds the transactions' canonical columns, one `feature.<name>` column per feature, and the
    fitted feature set in its metadata; `train --data FILE`, `evaluate` and `backtest` then use the
    stored features instead of computing them again. Both engines compute the same values.

    Examples: fraudstream features --dataset handbook --out handbook-features.parquet;
    fraudstream features --data history.parquet --engine spark --master local[4] --out features/
    """
    with errors():
        started = time.monotonic()
        if master is not None and engine is not Engine.spark:
            raise ValueError("--master chooses where Spark runs: add --engine spark")
        settings = settings_with(datasets_dir)
        out = out_path or str(settings.data_dir / "features.parquet")
        if engine is Engine.local and not out.lower().endswith(".parquet"):
            raise ValueError(f"--out {out!r}: the local engine writes one Parquet file; name it *.parquet")
        request = _Request(
            settings, data, dataset, paths, mapping, spec, utc(fit_until), gap_days, test_days, out, master,
            skip_bad_rows,
        )  # fmt: skip
        rows, feature_set, learned = (_spark if engine is Engine.spark else _local)(request)
        payload: dict[str, Any] = {
            "out": out, "rows": rows, "features": len(feature_set.names), "spec": feature_set.version,
            "engine": engine.value, "fit_until": learned and learned.isoformat(),
            "seconds": round(time.monotonic() - started, 1),
        }  # fmt: skip
        console.print(
            f"wrote {len(feature_set.names)} features ({feature_set.describe()}) for {rows:,} transactions "
            f"to [bold]{out}[/] with the {engine.value} engine"
            + (f"; categorical values learned before {learned:%Y-%m-%d}" if learned else "")
        )
        emit(payload, as_json)


def default_fit_until(last: datetime, gap_days: float, test_days: float) -> datetime:
    """What ``train`` would use as its training end for the same data and days."""
    return last - timedelta(days=gap_days + test_days)


@dataclass(frozen=True)
class _Request:
    """What the command was asked for, as both engines take it."""

    settings: Any
    data: str | None
    dataset: str | None
    paths: list[Path] | None
    mapping: Path | None
    spec: str | None
    fit_until: datetime | None
    gap_days: float
    test_days: float
    out: str
    master: str | None
    skip_bad_rows: bool = False

    def until(self, last: datetime) -> datetime:
        """The date categorical values are learned before: --fit-until, else train's default."""
        return self.fit_until or default_fit_until(last, self.gap_days, self.test_days)

    def learned(self, until: datetime) -> datetime | None:
        """``until`` if the spec learns categorical values from the data (the file records it)."""
        return None if spec_features(self.spec, self.dataset).fitted else until

    def load(self, data: str | None) -> tuple[Any, Any]:
        """The source's canonical frame and its batch (``data``: --data as the engine reads it); a
        history with no rows or a repeated id is refused."""
        from fraudstream.datasets.source import load_source
        from fraudstream.events.batch import TransactionBatch

        frame = load_source(
            self.settings, Path(data) if data else None, self.dataset, self.gap_days,
            paths=self.paths, mapping=self.mapping, skip_bad_rows=self.skip_bad_rows,
        )  # fmt: skip
        if frame.empty:
            raise ValueError("the source holds no transactions")
        ids = frame["transaction_id"]
        repeated = ids[ids.duplicated()]
        if len(repeated):
            raise _repeated(repeated.iloc[0])
        return frame, TransactionBatch.from_frame(frame)


def _local(request: _Request) -> tuple[int, Any, datetime | None]:
    """Features computed in this process, written to one file."""
    from fraudstream.features import FeatureEngine
    from fraudstream.features.stored import write_features

    frame, batch = request.load(request.data)
    until = request.until(frame["timestamp"].max().to_pydatetime())
    engine = FeatureEngine(fitted_features(batch, request.spec, request.dataset, until))
    with console.status(f"computing {len(engine.names)} features for {len(frame):,} transactions"):
        values = engine.compute(batch)
    learned = request.learned(until)
    write_features(frame, engine.feature_set, values, Path(request.out), learned)
    return len(frame), engine.feature_set, learned


def _spark(request: _Request) -> tuple[int, Any, datetime | None]:
    """Features computed by Spark (:mod:`fraudstream.spark.backfill`), written as a folder of parts.
    The feature set is fitted here, on the driver, and shipped to the executors."""
    from fraudstream.spark import backfill as spark_backfill
    from fraudstream.spark.session import spark_path, spark_session

    data, out = (spark_path(request.data) if request.data else None), spark_path(request.out)
    read_by_spark = (
        data is not None and request.dataset is None and request.mapping is None and _parquet(data)
    )
    if not read_by_spark:
        frame, batch = request.load(data)
    with console.status("starting Spark"):
        session = spark_session(
            "fraudstream features", master=request.master, conf=spark_backfill.SESSION_CONF
        )
    try:
        if read_by_spark:
            assert data is not None
            with console.status(f"reading {data} with Spark"):
                source = spark_backfill.read(session, data)
                seen = spark_backfill.overview(source)
            if seen.rows == 0 or seen.last is None:
                raise ValueError("the source holds no transactions")
            if seen.repeated is not None:
                raise _repeated(seen.repeated)
            rows, last, batch = seen.rows, seen.last, seen.present
        else:
            source = spark_backfill.from_frame(session, frame)
            rows, last = len(frame), frame["timestamp"].max().to_pydatetime()
        until = request.until(last)
        if read_by_spark:  # the categorical values are counted by Spark, over the rows before `until`
            feature_set = spark_backfill.fit(
                source, fitted_features(batch, request.spec, request.dataset, None, fit=False), until
            )
        else:
            feature_set = fitted_features(batch, request.spec, request.dataset, until)
        learned = request.learned(until)
        with console.status(
            f"computing {len(feature_set.names)} features for {rows:,} transactions in Spark"
        ):
            spark_backfill.write(spark_backfill.compute(source, feature_set, learned), out)
    except Exception as error:  # an executor's error arrives wrapped in Spark's; say it plainly
        raise _plain(error) from None
    return rows, feature_set, learned


def _parquet(data: str) -> bool:
    """Whether Spark reads ``--data`` itself: a Parquet file or folder, here or at a URL."""
    return data.lower().rstrip("/").endswith(".parquet") or "://" in data or Path(data).is_dir()


def _plain(error: Exception) -> Exception:
    """A Python error from Spark's executors as the error it was (its last line names the field and
    row, as the local engine would); other errors as they are."""
    try:
        from pyspark.errors import PythonException
    except ImportError:  # pragma: no cover - PySpark is there if Spark ran
        return error
    if isinstance(error, PythonException):
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raised = [line for line in lines if line.split(":")[0].endswith(("Error", "Exception"))]
        last = raised[-1].split(": ", 1)[-1] if raised else (lines[-1] if lines else "")
        return ValueError(f"in Spark's executors: {last}")
    return error


def _repeated(transaction_id: str) -> ValueError:
    """A history holds each transaction once: a repeated id is a redelivery the features would count
    twice, or two transactions the features could not tell apart."""
    return ValueError(
        f"transaction_id: {transaction_id!r} appears more than once; a history holds each "
        "transaction once (drop the repeats first)"
    )
