"""Serving commands as a user chains them: simulate → worker --burst, and replay with evaluation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream._malloc import MALLOC_ENV
from fraudstream.cli import app
from fraudstream.datasets.io import write_frame
from fraudstream.storage import open_store
from tests.waiting import wait_for

runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundle_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FRAUD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FRAUD_MODEL_PATH", str(bundle_path))
    monkeypatch.setenv("FRAUD_MAX_WAIT", "0.01")
    return tmp_path


def test_simulate_then_worker_burst_decides_everything(workdir: Path) -> None:
    result = runner.invoke(
        app, ["simulate", "--rate", "5000", "--limit", "400", "--customers", "100", "--days", "5"]
    )
    assert result.exit_code == 0, result.stderr
    assert "sent 400" in result.stderr
    result = runner.invoke(app, ["worker", "--burst", "--batch-size", "150"])
    assert result.exit_code == 0, result.stderr
    assert "400 decided" in result.stderr
    check = runner.invoke(app, ["worker", "--check"])
    assert check.exit_code == 0 and "worker alive" in check.stderr
    health = json.loads((workdir / "worker-health.json").read_text())
    health["written_at"] -= 120
    (workdir / "worker-health.json").write_text(json.dumps(health))
    stale = runner.invoke(app, ["worker", "--check"])
    assert stale.exit_code == 1 and "stuck or gone" in stale.stderr
    store = open_store(f"sqlite:///{workdir / 'fraudstream.db'}")
    assert (
        store.queue.pending("transactions") == 0
        and store.decisions.stats(pd.Timestamp(0, tz="UTC"))["total"] == 400
    )
    store.close()


def test_replay_a_file_through_the_online_path(workdir: Path, small_frame: pd.DataFrame) -> None:
    write_frame(small_frame.iloc[-3000:], workdir / "tail.parquet")
    result = runner.invoke(app, ["replay", str(workdir / "tail.parquet"), "--batch-size", "1000", "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["transactions"] == 3000 and payload["rate"] > 0 and payload["n_fraud"] > 0
    assert "replayed 3,000 transactions" in result.stderr and "3,000 decisions stored" in result.stderr
    again = runner.invoke(app, ["replay", str(workdir / "tail.parquet"), "--json"])
    assert "0 decisions stored" in again.stderr  # a replay never makes a second decision


def test_worker_reports_a_missing_model_in_one_line(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_MODEL_PATH", str(workdir / "nope.fsb"))
    result = runner.invoke(app, ["worker", "--burst"])
    assert result.exit_code == 2 and "fraudstream train" in result.stderr and "Traceback" not in result.stderr


def test_serve_on_a_taken_port_says_so_before_starting(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 2
    assert f"port {port} on 127.0.0.1 is not free" in result.stderr and "--port" in result.stderr
    assert not (workdir / "fraudstream.db").exists()  # nothing opened before the check


@pytest.mark.skipif(
    sys.platform != "linux" or not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc's malloc settings only"
)
def test_the_worker_restarts_itself_with_glibc_keeping_freed_memory(workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    env["MALLOC_TOP_PAD_"] = str(64 << 20)  # one set by whoever started it
    worker = subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "worker"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for((workdir / "worker-health.json").exists, "the worker's first heartbeat", timeout=120)
        started_with = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
    finally:
        worker.terminate()
        assert worker.wait(30) == 0  # the same process, stopped cleanly by SIGTERM
    environ = dict(entry.decode().split("=", 1) for entry in started_with if entry)
    assert environ["MALLOC_TOP_PAD_"] == str(64 << 20)
    assert environ["MALLOC_MMAP_THRESHOLD_"] == MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]
    assert environ["MALLOC_TRIM_THRESHOLD_"] == MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"]


def test_serve_and_worker_take_the_model_to_serve(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = Path(os.environ["FRAUD_MODEL_PATH"])
    monkeypatch.setenv("FRAUD_MODEL_PATH", str(workdir / "nope.fsb"))  # --model wins over the setting
    result = runner.invoke(app, ["worker", "--burst", "--model", str(bundle)])
    assert result.exit_code == 0, result.stderr
    assert "worker stopped" in result.stderr
    missing = workdir / "missing.fsb"
    result = runner.invoke(app, ["serve", "--port", "1", "--model", str(missing)])
    assert result.exit_code == 2 and f"no model bundle at {missing}" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_serve_refuses_rules_of_ones_own_naming_what_the_model_lacks(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = workdir / "shop-rules.yaml"
    rules.write_text("rules:\n  - {name: risky, when: card_risky_count_7d > 2, action: FLAG, reason: r}\n")
    monkeypatch.setenv("FRAUD_RULES_PATH", str(rules))
    result = runner.invoke(app, ["serve", "--port", "1"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "rule 'risky': unknown name 'card_risky_count_7d'" in said, said
    assert "Traceback" not in result.stderr
