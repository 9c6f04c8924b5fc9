"""Create what the pipeline needs in each service, with least-privilege identities.

Run by the local stack after a service is up and by the compose init containers (`diskrisk init
s3|mlflow`), so both deployments provision the same way. Every step is idempotent.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from diskrisk.config import MlflowAdminSettings, S3AdminSettings, load

log = logging.getLogger(__name__)

# What a pipeline identity may do inside its own bucket, and nothing elsewhere.
_BUCKET_ACTIONS = [
    "s3:GetBucketLocation",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:ListBucketMultipartUploads",
    "s3:GetBucketVersioning",
]
_OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


# What the reader identity (the risk service) may do: read the lake bucket, nothing else.
_READ_BUCKET_ACTIONS = ["s3:GetBucketLocation", "s3:ListBucket"]
_READ_OBJECT_ACTIONS = ["s3:GetObject"]


def bucket_policy(bucket: str, *, read_only: bool = False) -> dict[str, Any]:
    bucket_actions = _READ_BUCKET_ACTIONS if read_only else _BUCKET_ACTIONS
    object_actions = _READ_OBJECT_ACTIONS if read_only else _OBJECT_ACTIONS
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": bucket_actions, "Resource": [f"arn:aws:s3:::{bucket}"]},
            {
                "Effect": "Allow",
                "Action": object_actions,
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
        ],
    }


def provision_s3(s: S3AdminSettings | None = None) -> dict[str, str]:
    """Buckets (lake bucket versioned), one user + policy per bucket owner."""
    from minio import MinioAdmin
    from minio.credentials import StaticProvider
    from minio.error import MinioAdminException

    s = s or load(S3AdminSettings)
    url = urlsplit(str(s.endpoint_url))
    root = (s.root_user.get_secret_value(), s.root_password.get_secret_value())
    s3 = boto3.client(
        "s3",
        endpoint_url=str(s.endpoint_url),
        region_name=s.region,
        aws_access_key_id=root[0],
        aws_secret_access_key=root[1],
        config=Config(s3={"addressing_style": "path"}),
    )
    done: dict[str, str] = {}
    for bucket in (s.bucket, s.mlflow_bucket):
        try:
            s3.create_bucket(Bucket=bucket)
            done[bucket] = "created"
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in {
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            }:
                raise
            done[bucket] = "exists"
    # Replaced raw days keep their old bytes as object versions.
    s3.put_bucket_versioning(Bucket=s.bucket, VersioningConfiguration={"Status": "Enabled"})

    admin = MinioAdmin(
        endpoint=url.netloc,
        credentials=StaticProvider(*root),
        secure=url.scheme == "https",
        region=s.region,
    )
    identities = [
        ("diskrisk-pipeline", s.bucket, s.pipeline_access_key, s.pipeline_secret_key, False),
        ("diskrisk-mlflow", s.mlflow_bucket, s.mlflow_access_key, s.mlflow_secret_key, False),
        ("diskrisk-reader", s.bucket, s.reader_access_key, s.reader_secret_key, True),
    ]
    for policy, bucket, key, secret, read_only in identities:
        admin.policy_add(policy, policy=bucket_policy(bucket, read_only=read_only))
        admin.user_add(key.get_secret_value(), secret.get_secret_value())
        try:
            admin.attach_policy([policy], user=key.get_secret_value())
        except MinioAdminException as exc:  # already attached: nothing to do
            if "already" not in str(exc).lower():
                raise
        access = "read-only access" if read_only else "access"
        done[policy] = f"user with {access} to {bucket} only"
    return done


def provision_mlflow(s: MlflowAdminSettings | None = None) -> dict[str, str]:
    """The pipeline's MLflow user, which owns (MANAGE) what it creates and sees nothing else,
    and the reader, which sees only what the pipeline shares with it (READ)."""
    import os

    from mlflow.server.auth.client import AuthServiceClient

    s = s or load(MlflowAdminSettings)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"] = s.admin_username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = s.admin_password.get_secret_value()
    try:
        client = AuthServiceClient(str(s.tracking_uri).rstrip("/"))
        done = {
            name: _mlflow_user(client, name, password.get_secret_value())
            for name, password in (
                (s.pipeline_username, s.pipeline_password),
                (s.reader_username, s.reader_password),
            )
        }
        return done | _share_existing(client, s)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _share_existing(auth: Any, s: MlflowAdminSettings) -> dict[str, str]:
    """READ for the reader on what the pipeline created before the reader existed (the
    pipeline shares what it creates from then on)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from diskrisk.tracking import DRIFT_SUFFIX

    client = MlflowClient(str(s.tracking_uri).rstrip("/"))
    found: list[tuple[str, str, str]] = []
    for name in (s.experiment, f"{s.experiment}{DRIFT_SUFFIX}"):
        if experiment := client.get_experiment_by_name(name):
            found.append((f"experiment {name}", "experiment", experiment.experiment_id))
    if client.search_registered_models(filter_string=f"name = '{s.model_name}'"):
        found.append((f"model {s.model_name}", "registered_model", s.model_name))
    done = {}
    for label, kind, resource in found:
        try:
            auth.grant_user_permission(s.reader_username, kind, resource, "READ")
            done[label] = f"shared with {s.reader_username}"
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            done[label] = f"already shared with {s.reader_username}"
    return done


def _mlflow_user(client: Any, name: str, password: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        client.create_user(name, password)
        return "created"
    except MlflowException as exc:
        if "already exists" not in str(exc).lower():
            raise
        client.update_user_password(name, password)
        return "exists (password synced)"
