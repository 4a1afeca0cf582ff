# Everything runs inside .venv, created from the lock file on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help demo test test-airflow test-dvc lint format typecheck check docs docs-serve bench bench-api bench-wrk bench-replay services services-stop services-status lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)  ## train if needed, then API, worker, simulator and dashboard on live traffic (options: ARGS="--port 8001 --dashboard-port 8502 --duration 60")
	$(BIN)/fraudstream demo $(ARGS)

test: $(STAMP)  ## run the test suite
	$(BIN)/pytest $(PYTEST_ARGS)

test-airflow: $(STAMP)  ## the Airflow DAG in a real Airflow (own venv in .services/airflow/, installed once per lock)
	deploy/airflow/run.sh test $(PYTEST_ARGS)

test-dvc: $(STAMP)  ## dvc.yaml in a real DVC: repro, metrics, params (own venv in .services/dvc/, installed once per lock)
	services/tool-venv.sh dvc .services/dvc/venv requirements/dvc.lock dvc
	FRAUD_TEST_DVC=$(CURDIR)/.services/dvc/venv/bin/dvc $(BIN)/pytest tests/integration/test_dvc_pipeline.py -m dvc $(PYTEST_ARGS)

test-faults: $(STAMP)  ## the fault suite: workers, Redis, PostgreSQL and Kafka killed under live traffic; lost, doubled, state and parity per fault
	FRAUD_TEST_FAULTS=1 $(BIN)/pytest tests/faults -m faults $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)  ## apply ruff format and fixes
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

typecheck: $(STAMP)  ## mypy on src/
	$(BIN)/mypy

check: lint typecheck docs test  ## everything CI runs

docs: $(STAMP)  ## build the documentation site into site/ (fails on a broken link)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(STAMP)  ## serve the documentation with live reload on http://127.0.0.1:8008
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8008

bench: $(STAMP)  ## feature-computation benchmark on the Handbook data
	$(BIN)/python benchmarks/features.py

bench-api: $(STAMP)  ## POST /v1/score latency at 500 requests/s, three 20-s runs, each with the machine's floor (needs a model from make demo, and cc)
	$(BIN)/python benchmarks/api_latency.py --rate 500 --seconds 20 --repeat 3 --floor

bench-wrk: $(STAMP)  ## POST /v1/score throughput, closed loop with wrk (installed if missing), beside a canned uvicorn app; needs a model (options: ARGS="--connections 32 --seconds 20 --repeat 3")
	command -v wrk >/dev/null || { \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(BIN)/python benchmarks/api_throughput.py $(ARGS)

bench-replay: $(STAMP)  ## Handbook through the full online path, decisions written (model: FRAUD_MODEL_PATH)
	FRAUD_DATA_DIR=$${FRAUD_DATA_DIR:-fraudstream-data} $(BIN)/fraudstream replay handbook

services:  ## start local Redis :6380, PostgreSQL :5433, Kafka :9093, MLflow :5050, S3 :9010, schema registry :8085 (idempotent, state in .services/)
	services/run.sh start

services-stop:  ## stop the services that `make services` started
	services/run.sh stop

services-status:  ## one line per local service
	services/run.sh status

lock:  ## re-pin requirements/*.lock from pyproject.toml (needs uv)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 -o requirements/base.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements/dev.lock

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
