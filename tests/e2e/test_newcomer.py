"""What a newcomer meets first: ``make demo`` with options, bad options refused at once, ``serve`` after
the demo pointing at the demo's decisions, the README's ``curl`` example, the rate flowing now in
``/v1/stats``, and reasons that read as words."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from tests.conftest import REPO_ROOT
from tests.e2e.apitools import Api, tx

runner = CliRunner()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_passes_its_arguments_on_and_says_what_it_runs() -> None:
    # Under `make test` this make is a sub-make: no directory lines, no inherited flags.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo", "ARGS=--port 8001 --dashboard-port 8502"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip().splitlines()[-1].endswith("fraudstream demo --port 8001 --dashboard-port 8502")
    listed = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    demo = next(line for line in listed.stdout.splitlines() if line.strip().startswith("demo"))
    assert "dashboard" in demo and "ARGS=" in demo and "evaluate" not in demo


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("demo", "--duration", "-5"), "--duration"),
        (("demo", "--duration", "0"), "--duration"),
        (("demo", "--rate", "nan"), "--rate"),
        (("demo", "--port", "0"), "--port"),
        (("demo", "--dashboard-port", "70000"), "--dashboard-port"),
        (("serve", "--port", "-1"), "--port"),
        (("worker", "--batch-size", "0"), "--batch-size"),
        (("simulate", "--limit", "0"), "--limit"),
        (("simulate", "--duration", "-1"), "--duration"),
        (("generate", "--rate", "-2"), "--rate"),
        (("train", "--test-days", "-1"), "--test-days"),
        (("backtest", "--test-start", "2018-06-02", "--train-days", "0"), "--train-days"),
    ],
)
def test_a_bad_number_is_refused_before_any_work(workdir: Path, args: tuple[str, ...], option: str) -> None:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.stderr and "Traceback" not in result.stderr
    assert not (workdir / "data").exists()  # nothing generated, trained or opened


def _serve_on_a_taken_port(data: Path) -> str:
    """``fraudstream serve``'s output when it cannot listen: it stops there, after what it says first."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "FRAUD_DATABASE_URL"}
        done = subprocess.run(
            [sys.executable, "-m", "fraudstream", "serve", "--port", str(port)],
            env=env | {"FRAUD_DATA_DIR": str(data), "COLUMNS": "80"},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2 and f"port {port}" in done.stderr, done.stderr
    return done.stderr


def test_serve_after_the_demo_says_how_to_serve_the_demos_decisions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert "demo" not in _serve_on_a_taken_port(data)  # no demo ran: nothing to say
    (data / "demo.db").touch()
    said = _serve_on_a_taken_port(data)
    command = re.escape(f"FRAUD_DATABASE_URL=sqlite:///{data / 'demo.db'} ") + r"(\S*/)?fraudstream serve"
    assert re.search(command, said.replace("\n", ""))  # on one line, to copy as it is
    assert str(data / "fraudstream.db") in said


def _readme_score_example() -> tuple[str, dict[str, object]]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(
        r"curl -s (\S+/v1/score) -H 'Content-Type: application/json' -d '(\{.*?\})'", readme, re.S
    )
    assert found, "README has no curl example for POST /v1/score"
    return found.group(1), json.loads(found.group(2))


def test_the_readme_score_example_is_a_valid_request(api: Api) -> None:
    client, _, _ = api
    url, body = _readme_score_example()
    assert url.endswith("localhost:8000/v1/score")
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "-H 'X-API-Key: <key>'" in readme
    answer = client.post("/v1/score", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["decision"] in ("APPROVE", "FLAG", "BLOCK")


def test_stats_give_the_rate_flowing_now_next_to_the_window_average(api: Api) -> None:
    client, _, _ = api
    for i in range(30):
        assert client.post("/v1/score", json=tx(f"r{i}", customer_id=f"c{i}")).status_code == 200
    stats = client.get("/v1/stats", params={"window": 3600}).json()
    assert stats["total"] == 30 and stats["recent_s"] == pytest.approx(60, abs=5)
    assert stats["recent_throughput_per_s"] == pytest.approx(30 / stats["recent_s"], rel=0.05)
    # averaged from the first decision on, not over an hour the service did not run
    assert stats["throughput_per_s"] >= stats["recent_throughput_per_s"] > 30 / 3600
    schema = client.get("/openapi.json").json()["components"]["schemas"]["StatsOut"]["properties"]
    assert "recent_throughput_per_s" in schema and "last" in schema["recent_throughput_per_s"]["description"]


def test_served_reasons_are_described_and_an_approve_has_no_model_reasons(api: Api) -> None:
    client, _, _ = api
    answers = [client.post("/v1/score", json=tx(f"a{i}", amount=20.0 + 97 * i)).json() for i in range(25)]
    for answer in answers:
        for reason in answer["reasons"]:
            assert reason["direction"] in ("raises_risk", "lowers_risk")
            if reason["source"] != "rules":
                assert answer["decision"] != "APPROVE"
                assert reason["description"] and reason["value"] is not None
    stored = client.get(f"/v1/transactions/{answers[0]['transaction_id']}").json()["decision"]
    assert stored["reasons"] == answers[0]["reasons"]  # stored as answered
