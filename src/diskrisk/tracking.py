"""Adapter around the MLflow tracking server (basic auth, artifacts proxied to S3)."""

from __future__ import annotations

import os

import mlflow
from mlflow import MlflowClient

from diskrisk.config import MlflowSettings, cached


def connect(settings: MlflowSettings | None = None) -> MlflowClient:
    """Point the mlflow client at the server with the pipeline's identity.

    The mlflow client reads basic-auth credentials only from the process environment, so the
    validated settings (which may come from `.env`) are exported there.
    """
    s = settings or cached(MlflowSettings)
    os.environ["MLFLOW_TRACKING_USERNAME"] = s.username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = s.password.get_secret_value()
    uri = str(s.tracking_uri).rstrip("/")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def drift_experiment(settings: MlflowSettings | None = None) -> str:
    """Drift checks get their own experiment, beside the training runs."""
    return f"{(settings or cached(MlflowSettings)).experiment}-drift"
