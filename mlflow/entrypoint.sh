#!/bin/sh
# Entrypoint of the mlflow image: what the local stack's mlflow service does
# (scripts/localstack/services.py): render the basic-auth ini (auth store MLFLOW_DB_NAME_auth),
# then `mlflow server --app-name basic-auth` on the PostgreSQL backend with artifacts in
# s3://MLFLOW_ARTIFACTS_BUCKET/, proxied by the server, with MLflow's own S3 identity.
set -eu
: "${POSTGRES_HOST:?}" "${POSTGRES_PORT:?}" "${MLFLOW_DB_NAME:?}" "${MLFLOW_DB_USER:?}" "${MLFLOW_DB_PASSWORD:?}"
: "${MLFLOW_ARTIFACTS_BUCKET:?}" "${S3_ENDPOINT_URL:?}" "${S3_REGION:?}"
: "${MLFLOW_S3_ACCESS_KEY:?}" "${MLFLOW_S3_SECRET_KEY:?}" "${MLFLOW_TRACKING_URI:?}"
: "${MLFLOW_AUTH_ADMIN_USERNAME:?}" "${MLFLOW_AUTH_ADMIN_PASSWORD:?}" "${MLFLOW_FLASK_SERVER_SECRET_KEY:?}"

urlquote() { python -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
db="postgresql+psycopg2://$(urlquote "$MLFLOW_DB_USER"):$(urlquote "$MLFLOW_DB_PASSWORD")@${POSTGRES_HOST}:${POSTGRES_PORT}"

MLFLOW_AUTH_DATABASE_URI="${db}/${MLFLOW_DB_NAME}_auth" \
  python /opt/render_auth_config.py "$MLFLOW_AUTH_CONFIG_PATH"

# The backend URI carries a password: pass it through mlflow's own environment variable rather
# than the command line, so it does not show in the process list.
export MLFLOW_BACKEND_STORE_URI="${db}/${MLFLOW_DB_NAME}"
export MLFLOW_S3_ENDPOINT_URL="$S3_ENDPOINT_URL"
export AWS_ACCESS_KEY_ID="$MLFLOW_S3_ACCESS_KEY"
export AWS_SECRET_ACCESS_KEY="$MLFLOW_S3_SECRET_KEY"
export AWS_DEFAULT_REGION="$S3_REGION"
unset db MLFLOW_S3_ACCESS_KEY MLFLOW_S3_SECRET_KEY MLFLOW_DB_PASSWORD

port="${MLFLOW_TRACKING_URI##*:}"
port="${port%%/*}"
exec mlflow server --app-name basic-auth \
  --artifacts-destination "s3://${MLFLOW_ARTIFACTS_BUCKET}/" --serve-artifacts \
  --host 0.0.0.0 --port "$port" --workers 2 "$@"
