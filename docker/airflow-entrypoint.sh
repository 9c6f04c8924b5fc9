#!/usr/bin/env bash
# Entrypoint of the diskrisk/airflow image. Derives the Airflow settings that the local stack's
# airflow_env() (scripts/localstack/services.py) derives from .env variables, then runs the command.
#   init            airflow db migrate + the admin user of the simple auth manager (airflow-init)
#   anything else   exec'd as is (airflow api-server|scheduler|..., diskrisk init s3|mlflow, ...)
set -euo pipefail

urlquote() { python -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

if [ -n "${AIRFLOW_DB_USER:-}" ]; then
  : "${POSTGRES_HOST:?}" "${POSTGRES_PORT:?}" "${AIRFLOW_DB_NAME:?}" "${AIRFLOW_DB_PASSWORD:?}"
  : "${AIRFLOW_API_URL:?}" "${AIRFLOW_ADMIN_USERNAME:?}"
  api="${AIRFLOW_API_URL%/}"
  db_auth="$(urlquote "$AIRFLOW_DB_USER"):$(urlquote "$AIRFLOW_DB_PASSWORD")"
  db_addr="${POSTGRES_HOST}:${POSTGRES_PORT}/${AIRFLOW_DB_NAME}"
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://${db_auth}@${db_addr}"
  export AIRFLOW__CELERY__RESULT_BACKEND="db+postgresql://${db_auth}@${db_addr}"
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${api}/execution/"
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW_ADMIN_USERNAME}:admin"
  # The API server listens on every interface of the container, on the port of AIRFLOW_API_URL.
  # (No AIRFLOW__API__BASE_URL: the UI is reached through the published address, not this one.)
  export AIRFLOW__API__HOST="0.0.0.0"
  export AIRFLOW__API__PORT="${api##*:}"
  unset db_auth
fi

if [ "${1:-}" = "init" ]; then
  : "${AIRFLOW_ADMIN_PASSWORD:?}" "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?}"
  # Same file as the local stack's airflow_migrate(): {admin user: password}, mode 0600.
  python - <<'PY'
import json
import os

path = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as fh:
    json.dump({os.environ["AIRFLOW_ADMIN_USERNAME"]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, fh)
PY
  exec airflow db migrate
fi

exec "$@"
