"""The one place a Spark session is built, so the backfill and the streaming job configure it alike."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

LOCAL = "local[*]"


def spark_session(
    app_name: str,
    *,
    master: str | None = None,
    jars: Iterable[Path] = (),
    conf: Mapping[str, str] | None = None,
) -> Any:
    """A :class:`pyspark.sql.SparkSession` (the active one if a ``spark-submit`` already made it).

    ``master`` defaults to the submitter's choice, else ``local[*]``. The Python workers run the same
    interpreter as the driver unless ``PYSPARK_PYTHON`` says otherwise, so they import the same
    fraudstream and libraries. Timestamps are UTC, as everywhere in fraudstream.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "Spark needs PySpark: pip install 'fraudstream[spark]' (and Java 17 or newer on PATH)"
        ) from error

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is not None or "spark.master" not in _submitted_conf():
        builder = builder.master(master or LOCAL)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    jar_list = ",".join(str(j) for j in jars)
    if jar_list:
        settings["spark.jars"] = jar_list
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def spark_path(location: str) -> str:
    """A local path made absolute, as Spark must be given it (its JVM resolves a relative one from its
    own working folder, and on a cluster from elsewhere); a URL (hdfs://, s3a:// ...) as it is."""
    return location if "://" in location else str(Path(location).resolve())


def _submitted_conf() -> dict[str, str]:
    """The configuration ``spark-submit`` passed to this driver (empty when run as plain Python)."""
    keys = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    return {"spark.master": "given"} if "--master" in keys or os.environ.get("SPARK_ENV_LOADED") else {}
