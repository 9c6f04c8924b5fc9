# diskrisk — every workflow is a target; CI and the README call these.
SHELL := /bin/bash
VENV  := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup env up down status logs test test-unit test-integration lint format typecheck \
        demo lock bench-ingest clean-stack

setup:                ## install system packages, the pinned virtualenv, HBase jars, MinIO
	scripts/bootstrap

env: setup            ## create .env with random credentials (once)
	scripts/stack env

up: env               ## start the local stack (real services on loopback)
	scripts/stack up

down:                 ## stop what `up` started
	scripts/stack down

status:
	scripts/stack status

logs:
	scripts/stack logs

test: up              ## README's test command: install, start the stack, run every test
	$(VENV)/pytest $(PYTEST_ARGS)

test-unit: setup
	$(VENV)/pytest -m "not integration" $(PYTEST_ARGS)

test-integration: up
	$(VENV)/pytest -m integration $(PYTEST_ARGS)

lint: setup
	$(VENV)/ruff check src tests scripts/localstack airflow bench mlflow
	$(VENV)/ruff format --check src tests scripts/localstack airflow bench mlflow

format: setup
	$(VENV)/ruff format src tests scripts/localstack airflow bench mlflow
	$(VENV)/ruff check --fix src tests scripts/localstack airflow bench mlflow

typecheck: setup
	$(VENV)/mypy src

demo: up              ## README's main job
	$(VENV)/diskrisk demo

lock:                 ## re-pin requirements.txt from the current virtualenv
	$(VENV)/pip freeze --exclude-editable | grep -ivE '^(ruff|mypy|pytest|pytest-timeout|iniconfig)==' \
	  | { echo "# Exact pins that resolved together with pip on Python 3.11 (pip check clean)."; \
	      echo "# Regenerate with: make lock"; cat; } > requirements.txt

bench-ingest: up
	$(VENV)/python bench/ingest.py

clean-stack: down     ## forget all local data (buckets, databases, HBase tables)
	rm -rf .stack
