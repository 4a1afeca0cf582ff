"""Serving commands as a user chains them: simulate → worker --burst, and replay with evaluation."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.datasets.io import write_frame
from fraudstream.storage import open_store

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
    assert store.pending("transactions") == 0 and store.stats(pd.Timestamp(0, tz="UTC"))["total"] == 400
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
