"""What the streaming job's driver holds while the query runs: the services the settings name, and a
worker over them that publishes through the broker but leaves reading and acknowledging to Spark."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fraudstream.config import Settings
from fraudstream.spark._stream_batches import CheckpointedPublisher, MicroBatches
from fraudstream.worker.health import WorkerStats


def ensure_topic(settings: Settings, topic: str) -> None:
    """Create the transactions topic as the Kafka broker would on first use (with the URL's
    ``?partitions=``), so the job neither waits on a topic nobody made nor has the cluster make one of
    its default size; raises :class:`~fraudstream.brokers.BrokerError` when Kafka is out of reach."""
    from fraudstream._urls import split_prefix
    from fraudstream.brokers.kafka._admin import create_topic
    from fraudstream.brokers.kafka._urls import bootstrap_servers, partitions_option

    url = split_prefix(settings.broker_url)[0]
    unreachable = f"cannot reach Kafka at {url}: is it running? `make services`"
    create_topic(bootstrap_servers(url), topic, partitions_option(url), -1, 5.0, unreachable)


@contextmanager
def open_job(
    settings: Settings, topic: str, stopping: threading.Event, say: Callable[[str], None]
) -> Iterator[tuple[MicroBatches, WorkerStats]]:
    """The ``foreachBatch`` function over a worker set up as ``fraudstream worker``'s (see
    :func:`~fraudstream.runtime.open_worker`), and its running totals; everything is closed on exit."""
    from fraudstream.runtime import open_worker
    from fraudstream.worker.worker import DEAD_LETTERS, RESULTS

    ensure_topic(settings, topic)
    with open_worker(
        settings, say, broker=CheckpointedPublisher, results_topic=RESULTS, dead_letters_topic=DEAD_LETTERS
    ) as worker:
        say(f"spark stream: model {worker.decider.scorer.version}, decisions to {settings.broker_url}")
        yield MicroBatches(worker, stopping, say), worker.stats
