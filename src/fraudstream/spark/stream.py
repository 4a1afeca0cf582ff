"""The Spark Structured Streaming scorer: the Kafka transactions topic, read by Spark, decided by the
worker's own batch handling.

Each micro-batch that Spark reads from the topic the workers read (``FRAUD_BROKER_URL=kafka://...``) is
handed, in ``foreachBatch`` on the driver, to :meth:`Worker.handle
<fraudstream.worker.worker.Worker.handle>`: the same parsing, deduplication, scoring against the shared
feature state (FRAUD_STATE_URL), storing (FRAUD_DATABASE_URL), publishing to the decisions and
dead-letters topics. Spark keeps the offsets in its checkpoint and commits a micro-batch only after the
function returns; a job killed mid-batch reads that micro-batch again on restart, and the worker's
idempotence by ``transaction_id`` turns the replay into no second decision and no second feature event.

Run it as ``fraudstream spark stream``, or through ``spark-submit .../fraudstream/spark_submit.py stream``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from fraudstream.config import Settings
from fraudstream.spark._stream_batches import Stopping
from fraudstream.spark.session import spark_path, spark_session
from fraudstream.worker.health import HEALTH_FILE, WorkerStats

log = logging.getLogger("fraudstream.spark.stream")

CONNECTOR = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"
"""The Kafka connector Spark fetches itself when FRAUD_SPARK_JARS is unset; the coordinate
services/spark/pom.xml pins, at the version of the PySpark the dev lock pins."""

ALREADY_IN_PYSPARK = (
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.slf4j:slf4j-api",
    "at.yawk.lz4:lz4-java",
    "org.lz4:lz4-java",
    "org.xerial.snappy:snappy-java",
    "com.google.code.findbugs:jsr305",
    "org.scala-lang.modules:scala-parallel-collections_2.13",
)
"""What the connector depends on that PySpark's jars folder already has: left out when Spark fetches
the connector, as services/spark/pom.xml leaves them out, so no second copy lands on the classpath."""

APP_NAME = "fraudstream-stream"
STOP_GRACE = 60.0
"""Seconds a stop waits for the micro-batch in hand to be decided and committed before stopping the
query anyway (a micro-batch cut short is read again at the next start, and decides nothing twice)."""


class StreamError(RuntimeError):
    """The streaming job cannot start or has failed; the message says why and what to do."""


@dataclass(frozen=True)
class StreamOptions:
    """How the query reads: a micro-batch every ``trigger_seconds`` (0: as soon as the last is done) of at
    most ``max_offsets_per_trigger`` messages (``None``: all that arrived); a new checkpoint starts at the
    topic's ``earliest`` or ``latest`` offsets; ``available_now`` decides what the topic holds, then
    stops; ``master`` is Spark's (default: what ``spark-submit`` says, else ``local[*]``)."""

    trigger_seconds: float = 1.0
    max_offsets_per_trigger: int | None = 10_000
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    available_now: bool = False
    master: str | None = None


def kafka_options(settings: Settings, options: StreamOptions) -> dict[str, str]:
    """The Kafka source's options: the servers and the transactions topic (with the URL's ``?prefix=``)
    that the Kafka broker and ``fraudstream worker`` use."""
    from fraudstream._urls import split_prefix
    from fraudstream.brokers.kafka._urls import bootstrap_servers
    from fraudstream.worker.worker import TRANSACTIONS

    if not settings.broker_url.startswith("kafka://"):
        raise StreamError(
            f"FRAUD_BROKER_URL is {settings.broker_url!r}: the Spark job reads Kafka, so set it to the "
            "workers' kafka://host:port (with the same ?prefix=, if any)"
        )
    url, prefix = split_prefix(settings.broker_url)
    source = {
        "kafka.bootstrap.servers": bootstrap_servers(url),
        "subscribe": (prefix or "") + TRANSACTIONS,
        "startingOffsets": options.starting_offsets,
    }
    if options.max_offsets_per_trigger is not None:
        source["maxOffsetsPerTrigger"] = str(options.max_offsets_per_trigger)
    return source


def connector(settings: Settings) -> tuple[list[Path], dict[str, str]]:
    """The connector's jars from FRAUD_SPARK_JARS, or (unset) the Spark configuration that has Spark
    fetch :data:`CONNECTOR` and what it needs from Maven Central itself."""
    if settings.spark_jars is None:
        return [], {"spark.jars.packages": CONNECTOR, "spark.jars.excludes": ",".join(ALREADY_IN_PYSPARK)}
    jars = sorted(settings.spark_jars.glob("*.jar"))
    if not jars:
        raise StreamError(
            f"FRAUD_SPARK_JARS={settings.spark_jars} holds no jars: fill it with "
            "services/spark/fetch.sh, or unset it to have Spark fetch the connector"
        )
    return jars, {}


def run_stream(
    settings: Settings,
    options: StreamOptions,
    *,
    say: Callable[[str], None] = print,
    stopping: threading.Event | None = None,
) -> WorkerStats:
    """Run the streaming query until ``stopping`` is set (SIGTERM or Ctrl-C set it when this runs in the
    main thread) or, with ``available_now``, until the topic is decided; returns what was decided.

    Raises :class:`StreamError` when the query fails (its micro-batch stays uncommitted, to be read again
    at the next start), and :class:`~fraudstream.spark._java.JavaError` without a usable Java.
    """
    from fraudstream.spark._java import require_java
    from fraudstream.spark._stream_attempts import Attempts, HadoopFolder

    source = kafka_options(settings, options)
    jars, conf = connector(settings)
    location = spark_path(settings.spark_checkpoint_location)
    health_file = settings.data_dir / HEALTH_FILE
    require_java()
    stopping = stopping or threading.Event()
    if threading.current_thread() is threading.main_thread():
        _stop_on_signals(stopping, say)

    from fraudstream.spark._stream_job import open_job

    with open_job(settings, source["subscribe"], stopping, say) as (handler, stats):
        # The job hands Spark no pandas data, so PySpark's caution about pandas 3 does not apply.
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
        try:
            spark = spark_session(APP_NAME, master=options.master, jars=jars, conf=conf)
        except Exception as error:  # PySpark's own error says only that the JVM exited
            raise StreamError(_not_started(error, fetching=not jars)) from None
        spark.sparkContext.setLogLevel("WARN")
        handler.attempts = Attempts(HadoopFolder(spark, location))
        writer = (
            spark.readStream.format("kafka")
            .options(**source)
            .load()
            .writeStream.foreachBatch(handler)
            .option("checkpointLocation", location)
            .queryName(APP_NAME)
        )
        if options.available_now:
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=f"{options.trigger_seconds:g} seconds")
        servers = source["kafka.bootstrap.servers"]
        say(f"spark stream: reading {source['subscribe']!r} at {servers}, checkpoint {location}")
        query = writer.start()
        _await(query, stopping, lambda: handler.beat(health_file))
    return stats


def _await(query: Any, stopping: threading.Event, beat: Callable[[], None]) -> None:
    """Wait for the query to end by itself (``available_now``) or for ``stopping``; then let the
    micro-batch in hand finish and be committed to the checkpoint (up to :data:`STOP_GRACE` seconds),
    and stop the query. One that starts meanwhile is refused untouched (see
    :class:`~fraudstream.spark._stream_batches.Stopping`), which ends the query too."""
    from pyspark.errors import StreamingQueryException

    try:
        while query.isActive and not stopping.is_set():
            beat()
            query.awaitTermination(1)
        if query.isActive:
            deadline = time.monotonic() + STOP_GRACE
            while query.isActive and query.status["isTriggerActive"] and time.monotonic() < deadline:
                time.sleep(0.1)
            query.stop()
        query.awaitTermination()
    except StreamingQueryException as error:
        if stopping.is_set() and Stopping.__name__ in str(error):
            return  # the micro-batch that started while stopping was refused: done
        raise StreamError(f"the streaming query failed: {_first_line(error)}") from None


def _not_started(error: BaseException, *, fetching: bool) -> str:
    """Why Spark did not start, and what to try: its own output, printed above, has the cause."""
    hint = (
        "Spark fetched the Kafka connector itself: when that failed (see the lines above), fetch it with "
        "services/spark/fetch.sh and set FRAUD_SPARK_JARS to the folder it prints"
        if fetching
        else "see Spark's lines above"
    )
    return f"Spark did not start ({_first_line(error)}); {hint}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _stop_on_signals(stopping: threading.Event, say: Callable[[str], None]) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        say(f"signal {signum}: finishing the micro-batch in hand, then stopping")
        stopping.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
