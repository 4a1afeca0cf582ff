"""``POST /v1/score`` answered, then the server killed without a shutdown: no answered decision is lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from fraudstream.config import Settings
from fraudstream.runtime import open_services

N = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_decisions_answered_then_killed_are_stored_exactly_once(
    tmp_path: Path, bundle_path: Path, small_frame: pd.DataFrame
) -> None:
    keep = [c for c in small_frame.columns if c not in ("is_fraud", "label_time", "fraud_scenario")]
    rows = small_frame.iloc[-N:][keep].to_dict("records")
    bodies = [{k: v for k, v in r.items() if v is not None and v == v} for r in rows]
    for body in bodies:
        body["timestamp"] = body["timestamp"].isoformat()
        if "account_created_at" in body:
            body["account_created_at"] = body["account_created_at"].isoformat()
    settings = Settings(data_dir=tmp_path, model_path=bundle_path)
    port = free_port()
    env = os.environ | {
        "FRAUD_DATA_DIR": str(tmp_path),
        "FRAUD_MODEL_PATH": str(bundle_path),
    }
    command = [sys.executable, "-m", "fraudstream", "serve", "--port", str(port), "--no-with-worker"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not is_ready(f"http://127.0.0.1:{port}/ready"):
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            answers = {}
            for body in bodies:
                response = client.post("/v1/score", json=body)
                assert response.status_code == 200, response.text
                answers[body["transaction_id"]] = response.json()
    finally:
        server.send_signal(signal.SIGKILL)  # no shutdown: nothing more is written
        server.wait(30)

    services = open_services(settings)
    try:
        ids = list(answers)
        stored = services.store.decisions.get_many(ids)
        assert set(stored) == set(ids)
        for i, answer in answers.items():
            assert (stored[i].decision, stored[i].probability) == (answer["decision"], answer["probability"])
            row = services.store.decisions.get_transaction(i)
            assert row is not None and row["status"] == "decided"
        assert (
            services.store.decisions.stats(datetime.now(UTC) - timedelta(hours=1))["total"] == N
        )  # counted once
        recorded = services.state.recorded(np.array(ids, dtype=object))
        assert recorded is not None and recorded.all()  # feature state rebuilt with them
    finally:
        services.close()
