#!/usr/bin/env bash
# Runs once, when the postgres image (postgres/entrypoint.sh) initialises an empty data volume
# (/docker-entrypoint-initdb.d). Creates what the local stack's postgres `after()` step creates
# (scripts/localstack/services.py): a login role and a database for Airflow, a login role for
# MLflow owning two databases (tracking store MLFLOW_DB_NAME, auth store MLFLOW_DB_NAME_auth).
# Idempotent; values are passed as psql variables (:"ident" / :'literal'), never spliced into SQL.
set -euo pipefail
: "${AIRFLOW_DB_NAME:?}" "${AIRFLOW_DB_USER:?}" "${AIRFLOW_DB_PASSWORD:?}"
: "${MLFLOW_DB_NAME:?}" "${MLFLOW_DB_USER:?}" "${MLFLOW_DB_PASSWORD:?}"

role_and_db() {  # user password database...
  local user="$1" password="$2"
  shift 2
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v user="$user" -v password="$password" <<'SQL'
SELECT format(CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user')
                   THEN 'ALTER ROLE %I LOGIN PASSWORD %L' ELSE 'CREATE ROLE %I LOGIN PASSWORD %L' END,
              :'user', :'password') \gexec
SQL
  local db
  for db in "$@"; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
         -v user="$user" -v db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
-- Only its owner may connect (PUBLIC may by default).
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', :'db') \gexec
SQL
  done
}

role_and_db "$AIRFLOW_DB_USER" "$AIRFLOW_DB_PASSWORD" "$AIRFLOW_DB_NAME"
role_and_db "$MLFLOW_DB_USER" "$MLFLOW_DB_PASSWORD" "$MLFLOW_DB_NAME" "${MLFLOW_DB_NAME}_auth"
