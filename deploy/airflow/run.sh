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
LOG="$(dirname "$VENV")/install.log"

die() { printf 'airflow: %s\n' "$*" >&2; exit 1; }

install() {
    local digest
    digest="$(sha256sum "$LOCK" | cut -d' ' -f1)"
    if [[ "$(cat "$VENV/.lock-sha256" 2>/dev/null)" == "$digest" && -x "$VENV/bin/airflow" ]]; then
        printf 'airflow   installed in %s\n' "$VENV"; return 0
    fi
    printf 'airflow   installing into %s (requirements/airflow.lock)\n' "$VENV"
    mkdir -p "$(dirname "$VENV")"
    rm -rf "$VENV"
    "${FRAUD_SERVICES_PYTHON:-python3}" -m venv "$VENV" \
        || die "could not create $VENV; install python3-venv or set FRAUD_SERVICES_PYTHON"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$LOCK" >"$LOG" 2>&1 \
        || die "installing Airflow failed; see $LOG"
    printf '%s\n' "$digest" >"$VENV/.lock-sha256"
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
