"""The worker: batches from a broker → scorer → storage → acknowledgement."""

from fraudstream.worker.health import WorkerStats
from fraudstream.worker.worker import Worker

__all__ = ["Worker", "WorkerStats"]
