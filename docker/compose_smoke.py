"""Smoke test of a running Compose deployment, run inside the airflow-apiserver container.

    make compose-smoke
    (= docker compose exec -T airflow-apiserver python - < docker/compose_smoke.py)

1. talks to the Airflow API through diskrisk.airflow_api as the admin of the simple auth manager;
2. unpauses and triggers the DAG (SMOKE_DAG_ID, default diskrisk_pipeline) with SMOKE_CONF (JSON)
   and waits for the run to finish (SMOKE_TIMEOUT seconds);
3. checks that the registered model has a `champion` alias in MLflow (pipeline identity);
4. leaves the champion model as a zip and the newest Evidently drift report of the lake bucket in
   SMOKE_OUT (default /tmp/diskrisk-smoke) for `make compose-artifacts`.
Standard library plus what the image has (mlflow, boto3, diskrisk). Exit status 0 = deployed and
working.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from diskrisk.airflow_api import AirflowClient, summarize

DAG_ID = os.environ.get("SMOKE_DAG_ID", "diskrisk_pipeline")
CONF = json.loads(os.environ.get("SMOKE_CONF") or "{}")
TIMEOUT = float(os.environ.get("SMOKE_TIMEOUT", "3600"))
OUT = Path(os.environ.get("SMOKE_OUT", "/tmp/diskrisk-smoke"))


def log(msg: str) -> None:
    print(f"[smoke {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def client() -> AirflowClient:
    """The admin of the simple auth manager: user from AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS,
    password from its passwords file (only airflow-init and this container mount it)."""
    user = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")[0].split(":")[0]
    pw_file = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    password = json.loads(Path(pw_file).read_text())[user]
    return AirflowClient(os.environ["AIRFLOW_API_URL"], user, password)


def run_dag(api: AirflowClient) -> None:
    api.wait_for_dag(DAG_ID, timeout=600)
    api.set_paused(False, DAG_ID)
    run_id = api.trigger(CONF, DAG_ID)["dag_run_id"]
    log(f"triggered {DAG_ID} run {run_id}")
    run = api.wait(
        run_id,
        DAG_ID,
        timeout=TIMEOUT,
        poll=15,
        on_change=lambda r, tis: log(f"{run_id}: {r['state']} {summarize(tis)}"),
    )
    if run["state"] != "success":
        sys.exit(f"{DAG_ID} run {run_id} {run['state']}")


def champion() -> None:
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    from diskrisk.config import MlflowSettings, load

    s = load(MlflowSettings)
    client = MlflowClient(str(s.tracking_uri))
    version = client.get_model_version_by_alias(s.model_name, "champion")
    log(f"champion: {s.model_name} version {version.version} (run {version.run_id})")
    with tempfile.TemporaryDirectory() as tmp:
        path = download_artifacts(
            artifact_uri=f"models:/{s.model_name}@champion",
            dst_path=tmp,
            tracking_uri=str(s.tracking_uri),
        )
        zipped = shutil.make_archive(str(OUT / f"champion-v{version.version}"), "zip", path)
    log(f"exported {zipped}")


def drift_report() -> None:
    import boto3
    from botocore.config import Config

    from diskrisk.config import S3Settings, load

    s = load(S3Settings)
    s3 = boto3.client(
        "s3",
        endpoint_url=str(s.endpoint_url),
        region_name=s.region,
        aws_access_key_id=s.access_key.get_secret_value(),
        aws_secret_access_key=s.secret_key.get_secret_value(),
        config=Config(s3={"addressing_style": "path"}),
    )
    newest = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s.bucket, Prefix="reports/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".html") and (
                newest is None or obj["LastModified"] > newest["LastModified"]
            ):
                newest = obj
    if newest is None:
        log("no HTML report under reports/ (the run did not reach the drift check)")
        return
    target = OUT / "reports" / newest["Key"].removeprefix("reports/")
    target.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(s.bucket, newest["Key"], str(target))
    log(f"report {newest['Key']} -> {target}")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    run_dag(client())
    champion()
    drift_report()
    log("ok")


if __name__ == "__main__":
    main()
