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
    """The ``foreachBatch`` function over a worker like ``fraudstream worker``'s (alerts, drift
    monitoring, following a registry alias), and its running totals; everything is closed on exit."""
    from fraudstream._gc import paused_gc
    from fraudstream._kernels import limit_kernel_threads
    from fraudstream._numba_cache import refresh_stale_kernels
    from fraudstream.alerts import alerts_for
    from fraudstream.models.registry import watch_model
    from fraudstream.monitoring.drift import watch
    from fraudstream.runtime import open_services
    from fraudstream.worker import Worker
    from fraudstream.worker.worker import DEAD_LETTERS, RESULTS

    ensure_topic(settings, topic)
    refresh_stale_kernels()
    limit_kernel_threads(settings.worker_threads)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    services = open_services(settings)
    alerts = alerts_for(services)
    follower = None
    try:
        watch(services.scorer, settings, alerts.raise_alerts)
        follower = watch_model(services, settings, say)
        worker = Worker(
            CheckpointedPublisher(services.broker),
            services.scorer,
            services.store,
            on_decided=alerts.submit,
            max_deliveries=settings.max_deliveries,
            results_topic=RESULTS,
            dead_letters_topic=DEAD_LETTERS,
            around_batch=paused_gc,
        )
        say(f"spark stream: model {services.scorer.version}, decisions to {settings.broker_url}")
        yield MicroBatches(worker, stopping, say), worker.stats
    finally:
        if follower is not None:
            follower.stop()
        alerts.close()
        services.close()
