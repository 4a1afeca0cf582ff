#!/usr/bin/env bash
# Apache Airflow for testing the DAG in deploy/airflow/dags/ (make test-airflow).
#
#   deploy/airflow/run.sh install          # the pinned Airflow into its own venv (again only when the lock changed)
#   deploy/airflow/run.sh test [ARGS...]   # install, then tests/integration/test_airflow_dag.py (pytest ARGS)
#
# Airflow lives in its own virtual environment (FRAUD_AIRFLOW_VENV, default .services/airflow/venv, made with
# FRAUD_SERVICES_PYTHON, default python3) installed from requirements/airflow.lock, so its pins never meet
# the project's: the DAG imports nothing of fraudstream and calls the project's .venv/bin/fraudstream.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${FRAUD_AIRFLOW_VENV:-$ROOT/.services/airflow/venv}"
LOCK="$ROOT/requirements/airflow.lock"

die() { printf 'airflow: %s\n' "$*" >&2; exit 1; }

install() {
    "$ROOT/services/tool-venv.sh" airflow "$VENV" "$LOCK" airflow
    printf 'airflow   installed in %s\n' "$VENV"
}

case "${1:-}" in
    install) install ;;
    test)
        shift
        install
        [[ -x "$ROOT/.venv/bin/pytest" ]] || die "no $ROOT/.venv: run make test first"
        cd "$ROOT"
        FRAUD_TEST_AIRFLOW="$VENV/bin/airflow" exec .venv/bin/pytest tests/integration/test_airflow_dag.py -m airflow "$@"
        ;;
    *) die "usage: $0 install|test [pytest args]" ;;
esac
