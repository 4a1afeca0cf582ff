"""One micro-batch of the streaming job: Kafka rows become the broker's messages, and the worker decides
them. Spark's checkpoint, not a consumer group, remembers which offsets are done.

Needs no PySpark itself: it is handed the rows Spark read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from fraudstream.brokers.base import Broker, BrokerError, Message
from fraudstream.brokers.kafka._member import load
from fraudstream.spark._stream_attempts import Attempts
from fraudstream.worker.health import write_health
from fraudstream.worker.worker import OUTAGES, Worker

log = logging.getLogger("fraudstream.spark.stream")

COLUMNS = ("key", "value", "partition", "offset")
"""The Kafka source's columns a micro-batch needs."""


class CheckpointedPublisher(Broker):
    """The worker's broker inside the streaming job: decisions and dead letters are published through
    ``broker`` (the one FRAUD_BROKER_URL names), while reading and acknowledging are Spark's. A
    micro-batch counts as done once its function returns and Spark writes that to the checkpoint, so
    acknowledging and releasing here do nothing, and consuming is refused."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def publish(self, topic: str, messages: Sequence[tuple[str | None, Any]]) -> None:
        self.broker.publish(topic, messages)

    def consume(self, topic: str, max_messages: int, max_wait: float) -> list[Message]:
        raise BrokerError("the Spark streaming job reads the topic through Spark, not the broker")

    def ack(self, topic: str, messages: Sequence[Message]) -> None:
        """Nothing: Spark commits the micro-batch to its checkpoint once it is handled."""

    def release(self, topic: str, messages: Sequence[Message]) -> None:
        """Nothing: a micro-batch that fails is not committed, and Spark reads it again."""

    def close(self) -> None:
        self.broker.close()

    def ping(self) -> str:
        return self.broker.ping()


def messages_of(rows: Iterable[Any], deliveries: int = 1) -> list[Message]:
    """Rows of the Kafka source (``key``, ``value``, ``partition``, ``offset``) as the Kafka broker
    delivers them: in offset order within each partition, the payload decoded JSON (or text when a
    producer wrote something else, which the worker then dead-letters), the id ``partition:offset``,
    each delivered ``deliveries`` times (how often their micro-batch has started)."""
    ordered = sorted(rows, key=lambda r: (r["partition"], r["offset"]))
    return [
        Message(
            f"{row['partition']}:{row['offset']}",
            None if not row["key"] else bytes(row["key"]).decode("utf-8", errors="replace"),
            load(None if row["value"] is None else bytes(row["value"])),
            deliveries,
        )
        for row in ordered
    ]


class Stopping(RuntimeError):
    """A micro-batch that started after the job was asked to stop: refused before anything is done, so
    Spark leaves it uncommitted and the next start reads it afresh."""


class MicroBatches:
    """The ``foreachBatch`` function: each micro-batch is collected to the driver and handed to
    :meth:`Worker.handle <fraudstream.worker.worker.Worker.handle>`, so the job decides exactly as a
    worker does. An outage of the database, Redis or Kafka is waited out with growing pauses (up to
    10 s), as the worker waits; once ``stopping`` is set it is raised instead, leaving the micro-batch
    uncommitted for the next start, and a micro-batch that starts then raises :class:`Stopping`.
    ``report`` hears a line per micro-batch. With ``attempts`` (set once Spark has started), the starts
    of each micro-batch are counted as the messages' deliveries, so one that keeps killing the driver
    is decided message by message and its killer dead-lettered, as a worker's is."""

    def __init__(
        self,
        worker: Worker,
        stopping: threading.Event,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.worker, self.stopping, self.report = worker, stopping, report
        self.busy = False
        self._written = 0.0
        self.attempts: Attempts | None = None

    def beat(self, health_file: Path | None) -> None:
        """The job's heartbeat, called every second or so: alive while it waits for data, and while a
        micro-batch is being tried (each try beats); then written where ``fraudstream worker --check``
        reads it, so one container health check serves workers and this job alike."""
        stats = self.worker.stats
        if not self.busy:
            stats.heartbeat = time.time()
        if health_file is not None and stats.heartbeat > self._written:  # a stuck one goes stale
            self._written = stats.heartbeat
            write_health(health_file, self.worker.health())

    def __call__(self, frame: Any, batch_id: int) -> None:
        if self.stopping.is_set():
            raise Stopping(f"micro-batch {batch_id} started after the job was asked to stop")
        self.busy = True
        try:
            starts = 1 if self.attempts is None else self.attempts.start(batch_id)
            batch = messages_of(frame.select(*COLUMNS).collect(), starts)
            if batch:
                self.decide(batch)
        finally:
            self.busy = False
        if batch and self.report is not None:
            stats = self.worker.stats
            again = f" (started {starts} times)" if starts > 1 else ""
            self.report(
                f"micro-batch {batch_id}{again}: {len(batch):,} messages; so far {stats.decided:,} "
                f"decided, {stats.duplicates:,} duplicates, {stats.dead:,} dead letters"
            )

    def decide(self, batch: list[Message]) -> None:
        """Hand ``batch`` to the worker until it is decided, through outages."""
        backoff = 0.0
        while True:
            self.worker.stats.heartbeat = time.time()
            try:
                self.worker.handle(batch)
                return
            except OUTAGES as error:
                if self.stopping.is_set():
                    raise
                backoff = min(max(2 * backoff, 0.1), 10.0)
                self.worker.stats.errors += 1
                log.warning("spark stream: %s; retrying the micro-batch in %.1f s", error, backoff)
                self.stopping.wait(backoff)
