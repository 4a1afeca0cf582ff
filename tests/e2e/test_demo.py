"""``fraudstream demo`` as a newcomer runs it: API, worker and simulator in one process, then a summary."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd

from fraudstream.datasets.io import write_frame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_serves_scores_and_summarises(
    tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_frame(small_frame, data / "transactions.parquet")
    shutil.copy(bundle_path, data / "model.fsb")
    port = free_port()
    env = os.environ | {"FRAUD_DATA_DIR": str(data), "COLUMNS": "200"}
    command = [sys.executable, "-m", "fraudstream", "demo", "--duration", "6", "--rate", "100"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--no-dashboard"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "streaming" in line:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                assert json.load(response) == {"status": "ok"}
    assert proc.wait(timeout=120) == 0, "".join(lines)
    output = "".join(lines)
    assert f"http://127.0.0.1:{port}/docs" in output
    sent = int(next(x for x in lines if "transactions sent" in x).split()[-2].replace(",", ""))
    decided = int(next(x for x in lines if "decided" in x and "sent" not in x).split()[-2].replace(",", ""))
    assert 50 <= sent <= 700 and decided == sent
    assert "scoring latency" in output and "caught" in output
    # serve opens another database: the demo says how to serve its own decisions again
    served = re.escape(f"FRAUD_DATABASE_URL=sqlite:///{data / 'demo.db'} ") + r"(\S*/)?fraudstream serve"
    assert re.search(served, output), output  # the program as this shell can run it


def test_demo_on_a_taken_port_says_so_before_any_work(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "fraudstream", "demo", "--port", str(port), "--no-dashboard"],
            env=os.environ | {"FRAUD_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"},
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"port {port} on 127.0.0.1 is not free" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "transactions.parquet").exists()  # nothing generated or trained first
