"""Small adapter around the S3 object store (MinIO in deployment).

Everything else in diskrisk talks to S3 through these helpers so that credentials, the endpoint,
retry policy and the idempotent write (an object is rewritten only when its bytes changed, its
sha256 kept in the object's metadata) are decided in one place. Keys come from
:mod:`diskrisk.layout`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import boto3
import pandas as pd
import pyarrow.fs as pafs
from botocore.config import Config
from botocore.exceptions import ClientError

from diskrisk.config import S3Settings, cached

# payload_signing_enabled=False: over plain http botocore otherwise hashes every body once more
# for the signature. Each put carries a checksum header instead, inside the signature: the
# sha256 diskrisk computes anyway (:func:`put`), or botocore's CRC32 (multipart parts). The
# store verifies it, so a body changed on the way is refused, as with a signed payload.
_RETRIES = Config(
    retries={"max_attempts": 5, "mode": "standard"},
    s3={"addressing_style": "path", "payload_signing_enabled": False},
)


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


def bucket() -> str:
    """The lake bucket (``DISKRISK_BUCKET``)."""
    return cached(S3Settings).bucket


def uri(key: str, bucket_name: str | None = None) -> str:
    return f"s3://{bucket_name or bucket()}/{key}"


def key_of(s3_uri: str) -> str:
    """The key of an ``s3://bucket/key`` URI."""
    return s3_uri.split("/", 3)[3]


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


def head(key: str, bucket_name: str | None = None) -> dict[str, Any] | None:
    """Object metadata, or None when the key does not exist."""
    try:
        return dict(client().head_object(Bucket=bucket_name or bucket(), Key=key))
    except ClientError as exc:
        if _missing(exc):
            return None
        raise


def put_if_changed(key: str, body: bytes, content_type: str) -> tuple[str, bool]:
    """Store ``body`` unless the object already holds these bytes: (sha256, written). Re-runs
    then create no new object versions."""
    sha = hashlib.sha256(body).hexdigest()
    current = head(key)
    if current and current.get("Metadata", {}).get("sha256") == sha:
        return sha, False
    put(key, body, sha, content_type)
    return sha, True


def put(
    key: str, body: bytes, sha256: str, content_type: str, metadata: dict[str, str] | None = None
) -> None:
    """One PUT whose checksum is ``sha256`` (hex, of ``body``): the store verifies the digest
    kept in the object's metadata, and the bytes are hashed once, by the caller."""
    client().put_object(
        Bucket=bucket(),
        Key=key,
        Body=body,
        ContentType=content_type,
        ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
        Metadata={"sha256": sha256, **(metadata or {})},
    )


def delete_if_exists(key: str) -> None:
    if head(key) is not None:
        client().delete_object(Bucket=bucket(), Key=key)


def purge(prefix: str, where: Callable[[str], bool] = lambda key: True) -> int:
    """Delete every version (and delete marker) of the keys under ``prefix`` that ``where``
    accepts: in a versioned bucket a plain delete keeps the bytes. Returns the keys removed."""
    cl, objs = client(), []
    for page in cl.get_paginator("list_object_versions").paginate(Bucket=bucket(), Prefix=prefix):
        objs += [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            if where(v["Key"])
        ]
    for i in range(0, len(objs), 1000):
        cl.delete_objects(Bucket=bucket(), Delete={"Objects": objs[i : i + 1000]})
    return len({o["Key"] for o in objs})


def get_bytes(key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    try:
        return bytes(client().get_object(Bucket=bucket(), Key=key)["Body"].read())
    except ClientError as exc:
        if _missing(exc):
            return None
        raise


def get_json(key: str) -> Any:
    """The parsed JSON object, or None when it does not exist."""
    body = get_bytes(key)
    return None if body is None else json.loads(body)


def put_json(key: str, obj: Any) -> bool:
    """Store ``obj`` as indented, key-sorted JSON when it changed; True when written."""
    body = json.dumps(obj, indent=1, sort_keys=True).encode()
    return put_if_changed(key, body, "application/json")[1]


def put_parquet(key: str, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, compression="zstd")
    put_if_changed(key, buf.getvalue(), "application/vnd.apache.parquet")


def read_parquet(key: str) -> pd.DataFrame:
    body = get_bytes(key)
    if body is None:
        raise FileNotFoundError(f"{uri(key)} does not exist")
    return pd.read_parquet(io.BytesIO(body))
