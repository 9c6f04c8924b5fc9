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


def bucket_policy(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": _BUCKET_ACTIONS, "Resource": [f"arn:aws:s3:::{bucket}"]},
            {
                "Effect": "Allow",
                "Action": _OBJECT_ACTIONS,
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
        ("diskrisk-pipeline", s.bucket, s.pipeline_access_key, s.pipeline_secret_key),
        ("diskrisk-mlflow", s.mlflow_bucket, s.mlflow_access_key, s.mlflow_secret_key),
    ]
    for policy, bucket, key, secret in identities:
        admin.policy_add(policy, policy=bucket_policy(bucket))
        admin.user_add(key.get_secret_value(), secret.get_secret_value())
        try:
            admin.attach_policy([policy], user=key.get_secret_value())
        except MinioAdminException as exc:  # already attached: nothing to do
            if "already" not in str(exc).lower():
                raise
        done[policy] = f"user with access to {bucket} only"
    return done


def provision_mlflow(s: MlflowAdminSettings | None = None) -> dict[str, str]:
    """The pipeline's MLflow user; it owns (MANAGE) what it creates and sees nothing else."""
    import os

    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    s = s or load(MlflowAdminSettings)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"] = s.admin_username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = s.admin_password.get_secret_value()
    try:
        client = AuthServiceClient(str(s.tracking_uri).rstrip("/"))
        password = s.pipeline_password.get_secret_value()
        try:
            client.create_user(s.pipeline_username, password)
            state = "created"
        except MlflowException as exc:
            if "already exists" not in str(exc).lower():
                raise
            client.update_user_password(s.pipeline_username, password)
            state = "exists (password synced)"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {s.pipeline_username: state}
