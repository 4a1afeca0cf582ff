"""deploy/airflow/dags/fraudstream.py in a real Airflow (``make test-airflow``): the DAGs load, and
``airflow dags test`` runs their tasks against the real ``fraudstream`` command on a small stored history.

Airflow lives in its own virtual environment; ``deploy/airflow/run.sh test`` installs it and names its
``airflow`` executable in FRAUD_TEST_AIRFLOW. Without it these tests are skipped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from fraudstream.cli import app
from fraudstream.events import Label, Transaction
from fraudstream.events.frame import iter_records
from fraudstream.storage import open_store
from tests.integration.conftest import MLFLOW_URL, require

pytestmark = pytest.mark.airflow

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "deploy" / "airflow" / "dags"
FRAUDSTREAM = Path(sys.executable).parent / "fraudstream"
#: retrain on thirty days of history in seconds (as tests/e2e/test_retrain.py does).
FAST = "--since 30d --label-delay-days 3 --eval-days 5 --trials 0 --models xgboost,logistic --folds 2"
FAST += " --min-fraud 5"
runner = CliRunner()


@pytest.fixture(scope="module")
def airflow_bin() -> Path:
    path = os.environ.get("FRAUD_TEST_AIRFLOW")
    if not path:
        pytest.skip("needs Apache Airflow in its own venv: run `make test-airflow`")
    return Path(path)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, small_frame: pd.DataFrame, bundle_path: Path) -> Path:
    """A data folder whose database holds the small dataset decided by the worker, with its fraud labels."""
    folder = tmp_path_factory.mktemp("fraudstream-data")
    url = f"sqlite:///{folder / 'fraudstream.db'}"
    with open_store(url) as store:
        store.migrate()
        store.queue.accept([Transaction.model_validate(r) for r in iter_records(small_frame)])
    env = {"FRAUD_DATA_DIR": str(folder), "FRAUD_MODEL_PATH": str(bundle_path)}
    result = runner.invoke(app, ["worker", "--burst", "--batch-size", "2000"], env=env)
    assert result.exit_code == 0, result.stderr
    end = small_frame["timestamp"].max()
    fraud = small_frame[(small_frame["is_fraud"] == True) & (small_frame["label_time"] <= end)]  # noqa: E712
    with open_store(url) as store:
        store.labels.add(
            [
                Label(transaction_id=t, is_fraud=True, label_time=w.to_pydatetime())
                for t, w in zip(fraud["transaction_id"], fraud["label_time"], strict=True)
            ]
        )
    return folder


@pytest.fixture(scope="module")
def airflow(
    airflow_bin: Path, tmp_path_factory: pytest.TempPathFactory, history: Path, bundle_path: Path
) -> dict[str, str]:
    """The environment of an Airflow with its own home and database, reading only our DAG folder."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUD_", "AIRFLOW"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONWARNINGS": "ignore",
        "AIRFLOW_VAR_FRAUDSTREAM_BIN": str(FRAUDSTREAM),
        "AIRFLOW_VAR_FRAUDSTREAM_RETRAIN_ARGS": FAST,
        "FRAUD_DATA_DIR": str(history),
        "FRAUD_MODEL_PATH": str(bundle_path),
    }
    migrated = subprocess.run(
        [str(airflow_bin), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return env


def run(airflow_bin: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(airflow_bin), *args], env=env, capture_output=True, text=True, timeout=900, check=False
    )


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    """The JSON of an ``-o json`` command (the last line: Airflow may print warnings before it)."""
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def dag_test(airflow_bin: Path, env: dict[str, str], dag: str, day: str) -> tuple[int, dict[str, str], str]:
    """``airflow dags test DAG DAY``: its exit code, each task's final state, and its output."""
    done = run(airflow_bin, env, "dags", "test", dag, day)
    output = done.stdout + done.stderr
    found = re.search(r"DagRun Finished: dag_id=\S+ logical_date=.*?, run_id=([^,]+),", output)
    assert found, output[-3000:]
    states = as_json(run(airflow_bin, env, "tasks", "states-for-dag-run", dag, found[1], "-o", "json"))
    return done.returncode, {s["task_id"]: s["state"] for s in states}, output


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


def test_the_dags_load_with_their_tasks_and_schedules(airflow_bin: Path, airflow: dict[str, str]) -> None:
    assert run(airflow_bin, airflow, "dags", "reserialize").returncode == 0
    assert as_json(run(airflow_bin, airflow, "dags", "list-import-errors", "-o", "json")) == []
    listed = as_json(run(airflow_bin, airflow, "dags", "list", "-o", "json"))
    assert sorted(d["dag_id"] for d in listed) == ["fraudstream_report", "fraudstream_retrain"]
    for dag, cron, tasks in (
        ("fraudstream_report", "0 6 * * *", ["report"]),
        ("fraudstream_retrain", "0 2 * * *", ["gate", "promote", "retrain"]),
    ):
        details = as_json(run(airflow_bin, airflow, "dags", "details", dag, "-o", "json"))[0]
        assert details["timetable_summary"] == cron and details["has_import_errors"] == "False"
        listed_tasks = run(airflow_bin, airflow, "tasks", "list", dag)
        assert listed_tasks.stdout.split()[-len(tasks) :] == tasks, listed_tasks.stdout


def test_the_report_task_writes_the_real_report_of_the_stored_decisions(
    airflow_bin: Path, airflow: dict[str, str], history: Path
) -> None:
    # The run of tomorrow reports on today, when the worker decided the stored history.
    code, states, output = dag_test(airflow_bin, airflow, "fraudstream_report", day(1))
    assert code == 0 and states == {"report": "success"}, output[-3000:]
    report = (history / "reports" / f"{day(0)}.md").read_text()
    rows = dict(re.findall(r"^\| (APPROVE|FLAG|BLOCK) \| ([\d,]+) \|", report, flags=re.MULTILINE))
    assert sum(int(n.replace(",", "")) for n in rows.values()) > 1000, report


def test_the_nightly_retrain_compares_a_challenger_and_promotes_nothing_by_default(
    airflow_bin: Path, airflow: dict[str, str], history: Path
) -> None:
    env = airflow | {"FRAUD_PROMOTION_GATE": "roc_auc>=-1"}  # a gate any challenger passes
    code, states, output = dag_test(airflow_bin, env, "fraudstream_retrain", day(2))
    assert code == 0, output[-3000:]
    assert states == {"retrain": "success", "gate": "success", "promote": "skipped"}
    assert "automatic promotion is off" in output
    comparisons = list((history / "retrain").glob("*/comparison.json"))
    assert len(comparisons) == 1 and json.loads(comparisons[0].read_text())["challenger"]["metrics"]["n"] > 0


def test_too_little_history_fails_the_retrain_with_the_reason(
    airflow_bin: Path, airflow: dict[str, str], tmp_path: Path
) -> None:
    env = airflow | {"FRAUD_DATA_DIR": str(tmp_path)}  # an empty database
    code, states, output = dag_test(airflow_bin, env, "fraudstream_retrain", day(3))
    assert code != 0
    assert states == {"retrain": "failed", "gate": "upstream_failed", "promote": "upstream_failed"}
    assert "no decisions are stored" in output


@pytest.mark.mlflow
def test_with_auto_promote_only_a_challenger_that_passes_the_gate_becomes_champion(
    airflow_bin: Path, airflow: dict[str, str], bundle_path: Path
) -> None:
    from fraudstream.config import Settings
    from fraudstream.registry import register

    url = require(MLFLOW_URL, "The MLflow tracking server")
    name = f"fs-airflow-{secrets.token_hex(4)}"
    register(
        bundle_path,
        {"average_precision": 0.5},
        settings=Settings(mlflow_tracking_uri=url, model_registry_name=name),
    )
    env = airflow | {
        "FRAUD_MLFLOW_TRACKING_URI": url,
        "FRAUD_MODEL_REGISTRY_NAME": name,
        "AIRFLOW_VAR_FRAUDSTREAM_AUTO_PROMOTE": "true",
        "AIRFLOW_VAR_FRAUDSTREAM_RETRAIN_ARGS": f"{FAST} --register",
    }

    def champion() -> str:
        listed = runner.invoke(app, ["models", "list", "--json"], env=env)
        assert listed.exit_code == 0, listed.output
        return next(v["version"] for v in json.loads(listed.stdout)["versions"] if "champion" in v["aliases"])

    refused = env | {"FRAUD_PROMOTION_GATE": "roc_auc>1"}  # a gate no challenger passes
    code, states, output = dag_test(airflow_bin, refused, "fraudstream_retrain", day(4))
    assert code == 0, output[-3000:]
    assert states == {"retrain": "success", "gate": "skipped", "promote": "skipped"}
    assert "roc_auc: FAILED" in output and champion() == "1"

    passed = env | {"FRAUD_PROMOTION_GATE": "roc_auc>=-1"}
    code, states, output = dag_test(airflow_bin, passed, "fraudstream_retrain", day(5))
    assert code == 0, output[-3000:]
    assert states == {"retrain": "success", "gate": "success", "promote": "success"}
    assert champion() == "3"  # the second night's challenger
