"""Small adapter around the S3 object store (MinIO in deployment).

Everything else in diskrisk talks to S3 through these helpers so that credentials, the endpoint
and retry policy are decided in one place.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
import pyarrow.fs as pafs
from botocore.config import Config
from botocore.exceptions import ClientError

from diskrisk.config import S3Settings, cached

_RETRIES = Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"})


def client(settings: S3Settings | None = None) -> Any:
    """A boto3 S3 client for the pipeline identity."""
    s = settings or cached(S3Settings)
    return _client(
        str(s.endpoint_url),
        s.region,
        s.access_key.get_secret_value(),
        s.secret_key.get_secret_value(),
    )


@lru_cache(maxsize=8)
def _client(endpoint: str, region: str, key: str, secret: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=_RETRIES,
    )


def arrow_fs(settings: S3Settings | None = None) -> pafs.S3FileSystem:
    """A pyarrow filesystem on the same store, for Parquet reads and writes."""
    s = settings or cached(S3Settings)
    endpoint = str(s.endpoint_url).rstrip("/")
    scheme, _, host = endpoint.partition("://")
    return pafs.S3FileSystem(
        access_key=s.access_key.get_secret_value(),
        secret_key=s.secret_key.get_secret_value(),
        endpoint_override=host,
        scheme=scheme,
        region=s.region,
        allow_bucket_creation=False,
    )


def duckdb_secret_sql(settings: S3Settings | None = None) -> str:
    """`CREATE SECRET` statement that lets duckdb read the lake over S3."""
    s = settings or cached(S3Settings)
    endpoint = str(s.endpoint_url).rstrip("/")
    scheme, _, host = endpoint.partition("://")
    key = s.access_key.get_secret_value().replace("'", "''")
    secret = s.secret_key.get_secret_value().replace("'", "''")
    return (
        "CREATE OR REPLACE SECRET diskrisk_s3 (TYPE S3, "
        f"KEY_ID '{key}', SECRET '{secret}', REGION '{s.region}', "
        f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL {'true' if scheme == 'https' else 'false'})"
    )


def uri(key: str, bucket: str | None = None) -> str:
    return f"s3://{bucket or cached(S3Settings).bucket}/{key}"


def key_of(s3_uri: str) -> str:
    """The key of an ``s3://bucket/key`` URI."""
    return s3_uri.split("/", 3)[3]


def head(key: str, bucket: str | None = None) -> dict[str, Any] | None:
    """Object metadata, or None when the key does not exist."""
    s = cached(S3Settings)
    try:
        return dict(client().head_object(Bucket=bucket or s.bucket, Key=key))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise
