"""fraudstream on Airflow: the daily report each morning; a nightly retrain, gated, optionally promoted.

Two DAGs, each a chain of BashOperator tasks calling the ``fraudstream`` command line. This file imports
nothing of fraudstream, so Airflow's own environment needs none of its dependencies: the tasks run the
executable named by the Variable ``fraudstream_bin``.

``fraudstream_report`` (default 06:00 UTC): ``fraudstream report`` for the day before the run's date,
written to ``<report dir>/<day>.md`` and printed into the task log.

``fraudstream_retrain`` (default 02:00 UTC):

* ``retrain``: ``fraudstream retrain`` with ``fraudstream_retrain_args`` (default ``--since 60d
  --register``: the challenger is registered in the MLflow registry under the alias challenger) into a
  fresh folder under ``<data dir>/retrain/``; the folder is the task's XCom.
* ``gate``: ``fraudstream models gate`` on that comparison.json; skipped when the challenger does not
  pass the gate (FRAUD_PROMOTION_GATE), so a worse challenger is not a failed run.
* ``promote``: ``fraudstream models promote --challenger --if-better``, only when the Variable
  ``fraudstream_auto_promote`` is ``true``; otherwise skipped. Nothing is ever promoted without it.

Each Variable falls back to an environment variable of the scheduler (upper case, e.g.
FRAUDSTREAM_BIN), then to the default below. The tasks inherit the worker's environment, so fraudstream's
own settings (FRAUD_DATA_DIR, FRAUD_DATABASE_URL, FRAUD_MLFLOW_TRACKING_URI, ...) are set there, or in a
``.env`` file in ``fraudstream_workdir``. The schedules come from FRAUDSTREAM_REPORT_SCHEDULE and
FRAUDSTREAM_RETRAIN_SCHEDULE (cron expressions), read when the file is parsed.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG  # type: ignore[no-redef,attr-defined]
    from airflow.operators.bash import BashOperator  # type: ignore[no-redef]

SKIP = 99
"""The exit code that marks a task skipped (BashOperator's skip_on_exit_code)."""

DEFAULTS = {
    "fraudstream_bin": "fraudstream",
    "fraudstream_workdir": "",
    "fraudstream_report_dir": "",
    "fraudstream_report_args": "",
    "fraudstream_retrain_args": "--since 60d --register",
    "fraudstream_auto_promote": "false",
}
"""Each Variable's default when neither it nor its environment variable (its name in upper case) is set.
An empty report dir means ``$FRAUD_DATA_DIR/reports``; an empty workdir, the task's own folder."""


def var(name: str) -> str:
    """A Jinja expression for the Variable ``name``, read when the task runs, not when the file is parsed."""
    fallback = os.environ.get(name.upper(), DEFAULTS[name])
    return "{{ var.value.get(%r, %r) }}" % (name, fallback)  # noqa: UP031 (Jinja braces)


# Every task: strict bash, the workdir (when set) as the current folder, the fraudstream executable.
PREAMBLE = f"""set -euo pipefail
workdir="{var("fraudstream_workdir")}"
if [ -n "$workdir" ]; then cd "$workdir"; fi
fs="{var("fraudstream_bin")}"
data="${{FRAUD_DATA_DIR:-fraudstream-data}}"
"""

REPORT = (
    PREAMBLE
    + f"""reports="{var("fraudstream_report_dir")}"
reports="${{reports:-$data/reports}}"
day="{{{{ macros.ds_add(ds, -1) if ds is defined and ds else '' }}}}"
day="${{day:-$(date -u -d yesterday +%Y-%m-%d)}}"
mkdir -p "$reports"
"$fs" report --date "$day" --output "$reports/$day.md" {var("fraudstream_report_args")}
cat "$reports/$day.md"
"""
)

RETRAIN = (
    PREAMBLE
    + f"""out="$data/retrain/$(date -u +%Y%m%dT%H%M%SZ)"
"$fs" retrain --out "$out" {var("fraudstream_retrain_args")} >&2
echo "$out"
"""
)

# The comparison comes from the retrain task's XCom: the folder it wrote.
COMPARISON = "{{ ti.xcom_pull(task_ids='retrain') }}/comparison.json"

GATE = (
    PREAMBLE
    + f"""status=0
"$fs" models gate "{COMPARISON}" || status=$?
if [ "$status" -eq 1 ]; then echo "the challenger did not pass the gate: skipped"; exit {SKIP}; fi
exit "$status"
"""
)

PROMOTE = (
    PREAMBLE
    + f"""if [ "{var("fraudstream_auto_promote")}" != "true" ]; then
    echo "automatic promotion is off (Variable fraudstream_auto_promote): promote by hand with"
    echo "  fraudstream models promote --challenger --if-better {COMPARISON}"
    exit {SKIP}
fi
"$fs" models promote --challenger --if-better "{COMPARISON}" --by airflow
"""
)


def common() -> dict[str, Any]:
    """What both DAGs share, fresh for each: no backfill, one run at a time, no retries (each command
    says what failed)."""
    return {
        "start_date": datetime(2026, 1, 1),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": {"retries": 0, "retry_delay": timedelta(minutes=10)},
        "tags": ["fraudstream"],
    }


with DAG(
    dag_id="fraudstream_report",
    description="fraudstream report: yesterday's decisions, rules, caught and missed fraud",
    schedule=os.environ.get("FRAUDSTREAM_REPORT_SCHEDULE", "0 6 * * *"),
    **common(),
):
    BashOperator(task_id="report", bash_command=REPORT, append_env=True, execution_timeout=timedelta(hours=1))

with DAG(
    dag_id="fraudstream_retrain",
    description="fraudstream retrain: a challenger from production history, gated, promoted only if enabled",
    schedule=os.environ.get("FRAUDSTREAM_RETRAIN_SCHEDULE", "0 2 * * *"),
    **common(),
):
    retrain = BashOperator(
        task_id="retrain",
        bash_command=RETRAIN,
        append_env=True,
        do_xcom_push=True,
        execution_timeout=timedelta(hours=6),
    )
    gate = BashOperator(
        task_id="gate", bash_command=GATE, append_env=True, skip_on_exit_code=SKIP, do_xcom_push=False
    )
    promote = BashOperator(
        task_id="promote", bash_command=PROMOTE, append_env=True, skip_on_exit_code=SKIP, do_xcom_push=False
    )
    retrain >> gate >> promote
