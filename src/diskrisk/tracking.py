"""Adapter around the MLflow tracking server (basic auth, artifacts proxied to S3)."""

from __future__ import annotations

import os

import mlflow
from mlflow import MlflowClient

from diskrisk.config import MlflowSettings, cached


def connect(settings: MlflowSettings | None = None) -> MlflowClient:
    """Point the mlflow client at the server with the pipeline's identity.

    The mlflow client reads basic-auth credentials and its retry count only from the process
    environment, so the validated settings (which may come from `.env`) are exported there.
    """
    s = settings or cached(MlflowSettings)
    os.environ["MLFLOW_TRACKING_USERNAME"] = s.username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = s.password.get_secret_value()
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(s.http_max_retries)
    uri = str(s.tracking_uri).rstrip("/")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


DRIFT_SUFFIX = "-drift"


def drift_experiment(settings: MlflowSettings | None = None) -> str:
    """Drift checks get their own experiment, beside the training runs."""
    return f"{(settings or cached(MlflowSettings)).experiment}{DRIFT_SUFFIX}"


def share_with_reader(resource_type: str, resource_id: str) -> bool:
    """Grant the reader identity READ on something the pipeline created (and so MANAGEs);
    True when granted now, False when it already was or no reader is configured."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    s = cached(MlflowSettings)
    if not s.reader_username:
        return False
    connect(s)  # the pipeline's identity grants
    try:
        AuthServiceClient(str(s.tracking_uri).rstrip("/")).grant_user_permission(
            s.reader_username, resource_type, resource_id, "READ"
        )
        return True
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return False


def set_shared_experiment(name: str) -> str:
    """``mlflow.set_experiment`` that also shares the experiment with the reader; its id."""
    experiment_id = str(mlflow.set_experiment(name).experiment_id)
    share_with_reader("experiment", experiment_id)
    return experiment_id
