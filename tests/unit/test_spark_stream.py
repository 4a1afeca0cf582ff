"""The streaming job's parts that need no Spark: Kafka rows as the worker's messages, outages waited
out, and the command's refusals, each naming the setting to fix, before Java or Spark are started."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from fraudstream.brokers.base import Message
from fraudstream.cli import app
from fraudstream.config import Settings
from fraudstream.spark._java import JavaError, require_java
from fraudstream.spark._stream_attempts import Attempts
from fraudstream.spark._stream_batches import MicroBatches, Stopping, messages_of
from fraudstream.spark.stream import connector
from fraudstream.storage import StorageError
from fraudstream.worker.health import WorkerStats, check_health

runner = CliRunner()


def row(partition: int, offset: int, value: bytes | None, key: bytes | None = b"c1") -> dict[str, Any]:
    return {"key": key, "value": value, "partition": partition, "offset": offset}


def test_kafka_rows_become_the_brokers_messages_in_offset_order_per_partition() -> None:
    rows = [
        row(1, 7, orjson.dumps({"transaction_id": "b"})),
        row(0, 5, b"not json", key=None),
        row(1, 3, orjson.dumps({"transaction_id": "a"}), key=bytearray(b"c\xff")),
    ]
    assert messages_of(rows) == [
        Message("0:5", None, "not json"),
        Message("1:3", "c\ufffd", {"transaction_id": "a"}),
        Message("1:7", "c1", {"transaction_id": "b"}),
    ]


class FlakyWorker:
    """Fails its first ``outages`` batches as a database outage would, then takes them."""

    def __init__(self, outages: int) -> None:
        self.outages, self.handled = outages, []  # type: ignore[var-annotated]
        self.stats = WorkerStats()

    def health(self) -> dict[str, Any]:
        return self.stats.health(stopping=False, stale_after=30.0)

    def handle(self, messages: list[Message]) -> None:
        if self.outages:
            self.outages -= 1
            raise StorageError("database down")
        self.handled.append([m.id for m in messages])
        self.stats.decided += len(messages)


class Frame:
    """What ``foreachBatch`` is handed, as far as the job reads it."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def select(self, *columns: str) -> Frame:
        return self

    def collect(self) -> list[dict[str, Any]]:
        return self.rows


def test_a_micro_batch_waits_out_an_outage_and_is_decided_once_it_passes() -> None:
    worker, lines = FlakyWorker(outages=2), []  # type: ignore[var-annotated]
    batches = MicroBatches(worker, threading.Event(), lines.append)  # type: ignore[arg-type]
    batches(Frame([row(0, 1, orjson.dumps({"x": 1})), row(0, 0, orjson.dumps({"x": 0}))]), 4)
    assert worker.handled == [["0:0", "0:1"]]
    assert worker.stats.errors == 2
    assert lines == ["micro-batch 4: 2 messages; so far 2 decided, 0 duplicates, 0 dead letters"]


def test_an_outage_while_stopping_leaves_the_micro_batch_to_the_next_start() -> None:
    stopping = threading.Event()
    batches = MicroBatches(FlakyWorker(outages=1), stopping)  # type: ignore[arg-type]
    stopping.set()
    with pytest.raises(StorageError):
        batches.decide(messages_of([row(0, 0, b"{}")]))


def test_a_micro_batch_that_starts_while_stopping_is_refused_untouched() -> None:
    stopping = threading.Event()
    worker = FlakyWorker(outages=0)
    batches = MicroBatches(worker, stopping)  # type: ignore[arg-type]
    stopping.set()
    with pytest.raises(Stopping):
        batches(Frame([row(0, 0, b"{}")]), 1)
    assert worker.handled == []


def test_the_heartbeat_is_renewed_while_waiting_and_not_while_a_micro_batch_hangs(tmp_path: Path) -> None:
    health = tmp_path / "worker-health.json"

    def written() -> float:
        return float(json.loads(health.read_text())["written_at"])

    seen: list[float] = []

    class HangingWorker(FlakyWorker):
        def handle(self, messages: list[Message]) -> None:  # the main thread beats meanwhile
            batches.beat(health)
            seen.append(written())
            time.sleep(0.05)
            batches.beat(health)
            seen.append(written())

    batches = MicroBatches(HangingWorker(outages=0), threading.Event())  # type: ignore[arg-type]
    batches.beat(health)  # waiting for data
    assert check_health(health)[0]
    before = written()
    time.sleep(0.05)
    batches(Frame([row(0, 0, b"{}")]), 0)
    assert seen[0] > before and seen[1] == seen[0]  # beat once at the try, then not renewed
    time.sleep(0.05)
    batches.beat(health)  # waiting again
    assert written() > seen[1]


class ListFolder:
    def __init__(self) -> None:
        self.files: set[str] = {"notes.txt"}

    def names(self) -> list[str]:
        return sorted(self.files)

    def add(self, name: str) -> None:
        self.files.add(name)

    def remove(self, name: str) -> None:
        self.files.discard(name)


def test_the_starts_of_a_micro_batch_are_counted_and_forgotten_once_a_later_one_starts() -> None:
    folder = ListFolder()
    attempts = Attempts(folder)
    assert [attempts.start(7), attempts.start(7), attempts.start(7)] == [1, 2, 3]
    assert Attempts(folder).start(7) == 4  # kept where a restarted driver finds them
    assert attempts.start(8) == 1
    assert folder.files == {"notes.txt", "8-1"}


def test_a_micro_batch_started_again_hands_its_messages_over_as_delivered_again() -> None:
    delivered: list[int] = []

    class CountingWorker(FlakyWorker):
        def handle(self, messages: list[Message]) -> None:
            delivered.extend(m.deliveries for m in messages)

    lines: list[str] = []
    batches = MicroBatches(CountingWorker(outages=0), threading.Event(), lines.append)  # type: ignore[arg-type]
    batches.attempts = Attempts(ListFolder())
    frame = Frame([row(0, 0, b"{}"), row(0, 1, b"{}")])
    batches(frame, 3)
    batches(frame, 3)  # the driver died before Spark committed it: read again
    assert delivered == [1, 1, 2, 2]
    assert "micro-batch 3 (started 2 times): 2 messages" in lines[-1]


def test_the_stream_refuses_a_broker_that_is_not_kafka(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FRAUD_BROKER_URL", "database://")
    result = runner.invoke(app, ["spark", "stream"])
    assert result.exit_code == 2
    assert "FRAUD_BROKER_URL" in result.output and "kafka://" in result.output


def test_the_module_spark_submit_runs_takes_the_commands_options(tmp_path: Path) -> None:
    env = os.environ | {"FRAUD_DATA_DIR": str(tmp_path), "FRAUD_BROKER_URL": "database://"}
    done = subprocess.run(
        [sys.executable, "-m", "fraudstream.spark_submit", "stream", "--available-now"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "FRAUD_BROKER_URL" in done.stderr


def test_the_stream_refuses_a_jar_folder_without_jars(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FRAUD_BROKER_URL", "kafka://127.0.0.1:1")
    monkeypatch.setenv("FRAUD_SPARK_JARS", str(tmp_path))
    result = runner.invoke(app, ["spark", "stream"])
    assert result.exit_code == 2
    assert "FRAUD_SPARK_JARS" in result.output and "fetch.sh" in result.output


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--starting-offsets", "middle", "earliest"),
        ("--trigger-seconds", "inf", "trigger-seconds"),
        ("--trigger-seconds", "-1", "trigger-seconds"),
        ("--max-offsets-per-trigger", "0", "max-offsets-per-trigger"),
    ],
)
def test_the_stream_refuses_a_bad_option_naming_it(option: str, value: str, said: str) -> None:
    result = runner.invoke(app, ["spark", "stream", option, value])
    assert result.exit_code == 2
    assert said in result.output


def test_spark_fetches_the_connector_the_pom_pins_and_only_what_pyspark_lacks(tmp_path: Path) -> None:
    pom = (Path(__file__).resolve().parents[2] / "services" / "spark" / "pom.xml").read_text()
    pinned = re.search(r"<spark.version>(.+)</spark.version>", pom)
    assert pinned is not None
    jars, conf = connector(Settings(data_dir=tmp_path, spark_jars=None))
    assert jars == []
    assert conf["spark.jars.packages"] == f"org.apache.spark:spark-sql-kafka-0-10_2.13:{pinned[1]}"
    assert "org.apache.hadoop:hadoop-client-runtime" in conf["spark.jars.excludes"].split(",")


def test_the_connector_is_pinned_at_the_locked_pyspark_version() -> None:
    root = Path(__file__).resolve().parents[2]
    pom = re.search(
        r"<spark.version>(.+)</spark.version>", (root / "services" / "spark" / "pom.xml").read_text()
    )
    lock = re.search(r"^pyspark==(.+)$", (root / "requirements" / "dev.lock").read_text(), re.MULTILINE)
    assert pom is not None and lock is not None
    assert pom[1] == lock[1]


def test_a_jar_folder_replaces_the_fetch(tmp_path: Path) -> None:
    (tmp_path / "b.jar").touch()
    (tmp_path / "a.jar").touch()
    (tmp_path / ".pom-sha256").touch()
    assert connector(Settings(spark_jars=tmp_path)) == ([tmp_path / "a.jar", tmp_path / "b.jar"], {})


def fake_java(home: Path, version: str) -> Path:
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-04-15' >&2\n")
    java.chmod(0o755)
    return home


@pytest.mark.parametrize(("version", "major"), [("17.0.15", 17), ("21", 21)])
def test_java_17_or_newer_is_accepted(
    version: str, major: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, version)))
    assert require_java() == major


@pytest.mark.parametrize("version", ["11.0.2", "1.8.0_392"])
def test_an_older_java_is_refused_saying_what_to_install(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, version)))
    with pytest.raises(JavaError, match=r"needs Java 17 or newer.*openjdk-17"):
        require_java()


def test_a_missing_java_is_refused_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(JavaError, match=r"JAVA_HOME has no bin/java.*openjdk-17"):
        require_java()


def test_the_spark_submit_file_names_its_jobs_when_given_none() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fraudstream.spark_submit"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "stream" in done.stderr and "features" in done.stderr
