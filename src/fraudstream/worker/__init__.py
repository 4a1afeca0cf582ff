"""The worker: batches from a broker → scorer → storage → acknowledgement."""

from fraudstream.worker.worker import Worker, WorkerStats

__all__ = ["Worker", "WorkerStats"]
