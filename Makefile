# diskrisk — every workflow is a target; CI and the README call these.
SHELL := /bin/bash
VENV  := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup env up down status logs test test-stack test-deploy check test-unit test-integration lint format typecheck \
        demo lock bench-ingest soak clean-stack

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

# The two halves run side by side: most of either is waiting on its own scheduler, so on 2 cores
# the pair takes little more than the longer one (they share no port, project or data).
# Their output is prefixed [stack]/[deploy]; -o setup: `check` has just run it, once.
test: check compose-tool  ## README's test command: lint, then the local-stack tests and the compose deployment side by side
	@set -o pipefail; rc=0; \
	( $(MAKE) --no-print-directory -o setup test-deploy 2>&1 | sed -u 's/^/[deploy] /' ) & deploy=$$!; \
	( $(MAKE) --no-print-directory -o setup test-stack 2>&1 | sed -u 's/^/[stack] /' ) || rc=$$?; \
	wait $$deploy || rc=$$?; exit $$rc

test-stack: up        ## every test but the deployment's, on the local stack (stopped afterwards)
	@rc=0; DISKRISK_REQUIRE_INTEGRATION=1 $(VENV)/pytest -m "not deploy" --durations=25 $(PYTEST_ARGS) || rc=$$?; \
	[ $$rc -eq 0 ] || scripts/stack logs >&2 || true; scripts/stack down; exit $$rc

test-deploy: setup images-offline  ## the compose deployment on a real Docker engine (tests/test_deploy.py)
	$(VENV)/pytest -m deploy tests/test_deploy.py --durations=0 --basetemp="$${TMPDIR:-/tmp}/diskrisk-deploy-tests" $(PYTEST_ARGS)

check: lint typecheck actionlint  ## static checks: ruff, ruff format, mypy, actionlint

test-unit: setup
	$(VENV)/pytest -m "not integration and not deploy" $(PYTEST_ARGS)

test-integration: up
	$(VENV)/pytest -m integration $(PYTEST_ARGS)

lint: setup
	$(VENV)/ruff check src tests scripts/localstack airflow bench mlflow docker
	$(VENV)/ruff format --check src tests scripts/localstack airflow bench mlflow docker

format: setup
	$(VENV)/ruff format src tests scripts/localstack airflow bench mlflow docker
	$(VENV)/ruff check --fix src tests scripts/localstack airflow bench mlflow docker

typecheck: setup
	$(VENV)/mypy src

demo: up              ## README's main job: the pipeline end to end on the local stack
	scripts/demo

lock:                 ## re-pin requirements.txt from the current virtualenv
	$(VENV)/pip freeze --exclude-editable | grep -ivE '^(ruff|mypy|pytest|pytest-timeout|iniconfig)==' \
	  | { echo "# Exact pins that resolved together with pip on Python 3.11 (pip check clean)."; \
	      echo "# Regenerate with: make lock"; \
	      echo "# soupsieve stays on 2.x: 3.x needs Python >= 3.11.5, the offline images run Debian bookworm's 3.11.2."; \
	      cat; } > requirements.txt

bench-ingest: up
	$(VENV)/python bench/ingest.py

soak: up              ## 60 daily intervals backfilled through the running scheduler (test_soak; CI runs 3)
	DISKRISK_SOAK_INTERVALS=$${DISKRISK_SOAK_INTERVALS:-60} DISKRISK_REQUIRE_INTEGRATION=1 \
	  $(VENV)/pytest -s tests/test_soak.py $(PYTEST_ARGS)

clean-stack: down     ## forget all local data (buckets, databases, HBase tables)
	rm -rf .stack

# --- deployment & CI (compose, workflows) ----------------------------------------------------------
# A compose CLI (scripts/compose: the docker plugin, else one built from the Go module proxy) and a
# Docker engine (scripts/docker-engine: started here with its data in the cache when none runs).
DISKRISK_CACHE     := $(or $(DISKRISK_CACHE_DIR),.cache)
ACTIONLINT_VERSION := v1.7.12
ENV_FILE           ?= .env
COMPOSE_PROJECT    ?= diskrisk
COMPOSE_WAIT       ?= 900
WORKERS            ?= 2
SMOKE_CONF         ?= {}
SMOKE_TIMEOUT      ?= 3600
SYNTH_DIR          ?= /opt/airflow/data/synth
SYNTH_DRIVES       ?= 3000
SYNTH_DAYS         ?= 60
SYNTH_START        ?= 2013-04-10
OUT                ?= out
START              ?=
END                ?=
ROUNDS             ?= 3
COMPOSE = scripts/compose --project-name $(COMPOSE_PROJECT) --env-file $(ENV_FILE)
define need_docker
	@docker info >/dev/null 2>&1 || { echo "make $@: needs a running Docker engine and \`docker info\` fails here:" \
	  "start one with \`make engine\` (Debian's docker.io), or use the local stack (make up / make test)." >&2; exit 1; }
endef

.PHONY: engine engine-down compose-tool compose-config test-compose compose-env images images-offline images-push \
        compose-up compose-up-celery compose-synth compose-smoke compose-artifacts compose-down compose-clean retrain \
        actionlint test-dag-import ci-system-deps retrain-args

engine:               ## a Docker engine: Debian's docker.io, data under the cache dir (no-op if one runs)
	scripts/docker-engine up

engine-down:          ## stop the engine `make engine` started
	scripts/docker-engine down

compose-tool:         ## a compose CLI: the docker plugin, else docker-compose built into the cache
	@scripts/compose version

compose-config: compose-tool  ## docker-compose.yml validates (Compose schema + interpolation), both profiles
	scripts/compose --project-name $(COMPOSE_PROJECT) --env-file .env.example config --quiet
	scripts/compose --project-name $(COMPOSE_PROJECT) --env-file .env.example --profile celery config --quiet

test-compose: setup compose-tool  ## static tests of the Compose deployment (no Docker engine needed)
	$(VENV)/pytest tests/test_compose.py $(PYTEST_ARGS)

compose-env:          ## .env for compose (same generator as the local stack), without the virtualenv
	@if [ -f "$(ENV_FILE)" ]; then exit 0; fi; \
	if [ -x $(VENV)/python ]; then DISKRISK_ENV_FILE="$(ENV_FILE)" scripts/stack env; else \
	  python3 -m venv "$(DISKRISK_CACHE)/envtool" \
	  && "$(DISKRISK_CACHE)/envtool/bin/pip" install -q "python-dotenv==$$(sed -n 's/^python-dotenv==//p' requirements.txt)" \
	  && DISKRISK_ENV_FILE="$(ENV_FILE)" PYTHONPATH=scripts "$(DISKRISK_CACHE)/envtool/bin/python" -m localstack env; fi

images: compose-env compose-tool  ## build the images from public bases and PyPI (a normal Docker host)
	$(need_docker)
	DISKRISK_GIT_REVISION="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" $(COMPOSE) --profile celery build

images-offline: setup  ## the same images with no registry: local Debian base, host-built wheels/jars/MinIO
	scripts/images

images-push: compose-env compose-tool  ## push them to $DISKRISK_IMAGE_PREFIX (registry/namespace)
	$(need_docker)
	$(COMPOSE) --profile celery push

compose-up: compose-env compose-tool  ## start the Compose deployment, wait until every service is healthy
	$(need_docker)
	$(COMPOSE) up -d --wait --wait-timeout $(COMPOSE_WAIT)

compose-up-celery: compose-env compose-tool  ## the same with CeleryExecutor, redis and WORKERS workers
	$(need_docker)
	AIRFLOW__CORE__EXECUTOR=CeleryExecutor $(COMPOSE) --profile celery up -d --wait \
	  --wait-timeout $(COMPOSE_WAIT) --scale airflow-worker=$(WORKERS)

compose-synth: compose-tool  ## synthetic Backblaze days in the airflow-data volume (BACKBLAZE_SOURCE=$(SYNTH_DIR))
	$(need_docker)
	$(COMPOSE) exec -T airflow-scheduler diskrisk synth --era 2013 --drives $(SYNTH_DRIVES) \
	  --days $(SYNTH_DAYS) --start $(SYNTH_START) --out $(SYNTH_DIR)

compose-smoke: compose-tool  ## trigger diskrisk_pipeline via the REST API, check champion and scores
	$(need_docker)
	$(COMPOSE) exec -T -e SMOKE_CONF='$(subst ','\'',$(SMOKE_CONF))' -e SMOKE_TIMEOUT=$(SMOKE_TIMEOUT) \
	  airflow-apiserver python - < docker/compose_smoke.py
	$(COMPOSE) exec -T airflow-apiserver diskrisk top --k 5

compose-artifacts: compose-tool  ## logs, the champion zip and the drift report into $(OUT)/compose
	$(need_docker)
	mkdir -p $(OUT)/compose
	$(COMPOSE) ps --all > $(OUT)/compose/ps.txt
	$(COMPOSE) logs --no-color --timestamps > $(OUT)/compose/compose.log
	$(COMPOSE) cp airflow-apiserver:/tmp/diskrisk-smoke $(OUT)/compose/smoke || true

compose-down: compose-tool  ## stop the deployment (volumes kept)
	$(need_docker)
	$(COMPOSE) --profile celery down --remove-orphans

compose-clean: compose-tool  ## stop it and delete its volumes
	$(need_docker)
	$(COMPOSE) --profile celery down --remove-orphans --volumes

retrain: retrain-args up  ## make retrain START=YYYY-MM-DD END=YYYY-MM-DD [ROUNDS=n]: on the local stack
	$(VENV)/diskrisk retrain --start $(START) --end $(END) --rounds $(ROUNDS) --out $(OUT)/retrain

retrain-args:
	@[[ "$(START)" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$$ && "$(END)" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$$ && "$(ROUNDS)" =~ ^[0-9]+$$ ]] \
	  || { echo "usage: make retrain START=YYYY-MM-DD END=YYYY-MM-DD [ROUNDS=n]" >&2; exit 2; }

actionlint:           ## lint .github/workflows (actionlint from the Go module proxy, pinned)
	@if ! "$(DISKRISK_CACHE)/bin/actionlint" -version 2>/dev/null | grep -qx '$(ACTIONLINT_VERSION)'; then \
	  mkdir -p "$(DISKRISK_CACHE)/bin"; \
	  GOBIN="$$(cd "$(DISKRISK_CACHE)/bin" && pwd)" go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION); fi
	"$(DISKRISK_CACHE)/bin/actionlint" .github/workflows/*.yml

test-dag-import: setup  ## the DAG imports (no stack needed)
	$(VENV)/pytest tests/test_dag.py -k import $(PYTEST_ARGS)

ci-system-deps:       ## CI containers (Debian 12 with python3.11 but no venv module): what bootstrap assumes
	@python3.11 -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-venv; }
