"""How often each micro-batch has been started, kept in the checkpoint, so that the job counts deliveries
as the brokers do. Spark replays a micro-batch after the driver died without saying so; a micro-batch
that comes back again and again holds a message that kills the driver, which the worker's handling then
decides alone and finally dead-letters (see :data:`~fraudstream.worker.worker.SUSPECT`)."""

from __future__ import annotations

from typing import Any, Protocol

FOLDER = "fraudstream-attempts"
"""The folder in the checkpoint that holds an empty file ``<batch id>-<attempt>`` per start."""


class Folder(Protocol):
    """The few file operations the count needs, on whatever file system holds the checkpoint."""

    def names(self) -> list[str]: ...

    def add(self, name: str) -> None: ...

    def remove(self, name: str) -> None: ...


class Attempts:
    """Counts the starts of each micro-batch in ``folder``; only the current micro-batch's are kept (a
    higher batch id means Spark committed the ones before)."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder

    def start(self, batch_id: int) -> int:
        """Record a start of micro-batch ``batch_id``; returns how often it has started, this time
        included. Files of earlier micro-batches are removed."""
        starts = 0
        for name in self.folder.names():
            batch, _, attempt = name.partition("-")
            if not (batch.isdigit() and attempt.isdigit()):
                continue
            if int(batch) < batch_id:
                self.folder.remove(name)
            elif int(batch) == batch_id:
                starts = max(starts, int(attempt))
        self.folder.add(f"{batch_id}-{starts + 1}")
        return starts + 1


class HadoopFolder:
    """A folder through Hadoop's FileSystem API, as Spark reaches its checkpoint: a local folder,
    ``hdfs://``, ``s3a://`` and the rest alike."""

    def __init__(self, spark: Any, location: str) -> None:
        jvm = spark.sparkContext._jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        self.dir = self._path(location.rstrip("/") + "/" + FOLDER)
        self.fs = self.dir.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def names(self) -> list[str]:
        if not self.fs.exists(self.dir):
            return []
        return [status.getPath().getName() for status in self.fs.listStatus(self.dir)]

    def add(self, name: str) -> None:
        self.fs.create(self._path(self.dir, name), True).close()

    def remove(self, name: str) -> None:
        self.fs.delete(self._path(self.dir, name), False)
