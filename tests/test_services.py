"""The local stack's real services answer, with credentials, and refuse without them; each
identity can do its job and is refused the rest (S3 users confined to their bucket, the reader
to reading it; a PostgreSQL role refused on the other application's database; HBase's
unauthenticated Thrift gateway reachable only on loopback). The reader's MLflow refusals are in
test_serve, beside the service that runs as it."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import uuid
from collections.abc import Callable

import boto3
import happybase
import psutil
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from diskrisk import s3
from diskrisk.config import HBaseSettings, MlflowSettings, S3Settings, load

pytestmark = pytest.mark.integration


# --- S3 -------------------------------------------------------------------------------------------
def test_s3_put_get_list_as_pipeline(stack_env):
    cfg = load(S3Settings)
    c = s3.client(cfg)
    key = f"tests/{uuid.uuid4()}/hello.txt"
    c.put_object(Bucket=cfg.bucket, Key=key, Body=b"drive stats")
    assert c.get_object(Bucket=cfg.bucket, Key=key)["Body"].read() == b"drive stats"
    listed = c.list_objects_v2(Bucket=cfg.bucket, Prefix=key.rsplit("/", 1)[0])
    assert [o["Key"] for o in listed["Contents"]] == [key]
    c.delete_object(Bucket=cfg.bucket, Key=key)


def test_s3_lake_bucket_is_versioned(stack_env):
    cfg = load(S3Settings)
    assert s3.client(cfg).get_bucket_versioning(Bucket=cfg.bucket)["Status"] == "Enabled"


def test_s3_anonymous_requests_are_refused(stack_env):
    cfg = load(S3Settings)
    anon = boto3.client(
        "s3",
        endpoint_url=str(cfg.endpoint_url),
        region_name=cfg.region,
        config=Config(signature_version=UNSIGNED),
    )
    for call in (
        lambda: anon.list_objects_v2(Bucket=cfg.bucket),
        lambda: anon.put_object(Bucket=cfg.bucket, Key="anon.txt", Body=b"x"),
        lambda: anon.list_buckets(),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] in {"AccessDenied", "403"}


def _s3(e: dict[str, str], identity: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=e["S3_ENDPOINT_URL"],
        region_name=e["S3_REGION"],
        aws_access_key_id=e[f"{identity}_ACCESS_KEY"],
        aws_secret_access_key=e[f"{identity}_SECRET_KEY"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _refused(what: str, call: Callable[[], object]) -> None:
    with pytest.raises(ClientError) as err:
        call()
        pytest.fail(f"allowed: {what}")
    assert err.value.response["Error"]["Code"] == "AccessDenied", (what, err.value.response)


def test_s3_users_are_confined_to_their_bucket(stack_env):
    e = stack_env
    lake, artifacts = e["DISKRISK_BUCKET"], e["MLFLOW_ARTIFACTS_BUCKET"]
    pipeline, mlflow, reader = (
        _s3(e, "DISKRISK_S3"),
        _s3(e, "MLFLOW_S3"),
        _s3(e, "DISKRISK_READER_S3"),
    )
    key = f"identity-test/{uuid.uuid4().hex}.txt"
    pipeline.put_object(Bucket=lake, Key=key, Body=b"lake")
    try:
        assert reader.get_object(Bucket=lake, Key=key)["Body"].read() == b"lake"
        assert reader.list_objects_v2(Bucket=lake, Prefix=key)["KeyCount"] == 1
        _refused("reader writes the lake", lambda: reader.put_object(Bucket=lake, Key=key))
        _refused("reader deletes", lambda: reader.delete_object(Bucket=lake, Key=key))
        _refused("reader lists artifacts", lambda: reader.list_objects_v2(Bucket=artifacts))
        _refused("MLflow reads the lake", lambda: mlflow.get_object(Bucket=lake, Key=key))
        _refused("MLflow writes the lake", lambda: mlflow.put_object(Bucket=lake, Key=key))
        _refused("pipeline lists artifacts", lambda: pipeline.list_objects_v2(Bucket=artifacts))
        _refused("pipeline makes a bucket", lambda: pipeline.create_bucket(Bucket="x-" + key[-8:]))
    finally:
        pipeline.delete_object(Bucket=lake, Key=key)


def test_s3_wrong_secret_is_refused(stack_env):
    cfg = load(S3Settings)
    bad = boto3.client(
        "s3",
        endpoint_url=str(cfg.endpoint_url),
        region_name=cfg.region,
        aws_access_key_id=cfg.access_key.get_secret_value(),
        aws_secret_access_key="not-the-secret-at-all",
    )
    with pytest.raises(ClientError) as err:
        bad.list_objects_v2(Bucket=cfg.bucket)
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


# --- HBase through Thrift ---------------------------------------------------------------------------
def test_hbase_create_put_scan(stack_env):
    cfg = load(HBaseSettings)
    conn = happybase.Connection(cfg.thrift_host, cfg.thrift_port, timeout=60_000)
    name = f"smoke_{uuid.uuid4().hex[:8]}"
    try:
        conn.create_table(name, {"s": {"max_versions": 1}})
        table = conn.table(name)
        with table.batch() as b:
            for serial in ("Z1", "Z2", "Z3"):
                b.put(serial.encode(), {b"s:risk": f"0.{serial[-1]}".encode()})
        rows = dict(table.scan(row_prefix=b"Z"))
        assert rows == {
            b"Z1": {b"s:risk": b"0.1"},
            b"Z2": {b"s:risk": b"0.2"},
            b"Z3": {b"s:risk": b"0.3"},
        }
    finally:
        if name.encode() in conn.tables():
            conn.delete_table(name, disable=True)
        conn.close()


def test_the_thrift_gateway_listens_on_loopback_only(stack_env):
    """It has no authentication, so nothing but this machine may reach it."""
    port = int(stack_env["HBASE_THRIFT_PORT"])
    listening = [
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    assert listening, f"nothing listens on the Thrift port {port}"
    assert all(_loopback(ip) for ip in listening), listening
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not _loopback(a.address):
                with pytest.raises(OSError), socket.create_connection((a.address, port), 3):
                    pass


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # Java listens as ::ffff:127.0.0.1
    return address.is_loopback


# --- MLflow with basic auth --------------------------------------------------------------------------
def test_mlflow_run_and_registered_model_as_pipeline(stack_env, tmp_path):
    import mlflow

    from diskrisk.tracking import connect

    client = connect(load(MlflowSettings))
    mlflow.set_experiment(f"smoke-{uuid.uuid4().hex[:8]}")
    (tmp_path / "note.txt").write_text("artifact through the server to S3")

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return [0.5] * len(model_input)

    name = f"smoke-model-{uuid.uuid4().hex[:8]}"
    with mlflow.start_run() as run:
        mlflow.log_param("family", "constant")
        mlflow.log_metric("c_index", 0.5)
        mlflow.log_artifact(str(tmp_path / "note.txt"))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Constant(),
            pip_requirements=["mlflow"],
            registered_model_name=name,
        )
    got = client.get_run(run.info.run_id)
    assert got.data.metrics["c_index"] == 0.5
    assert [a.path for a in client.list_artifacts(run.info.run_id) if a.path == "note.txt"]
    version = client.get_model_version(name, info.registered_model_version)
    assert version.run_id == run.info.run_id
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    assert list(loaded.predict([[1], [2]])) == [0.5, 0.5]


def test_mlflow_refuses_unauthenticated_and_wrong_password(stack_env):
    cfg = load(MlflowSettings)
    url = f"{str(cfg.tracking_uri).rstrip('/')}/api/2.0/mlflow/experiments/search"
    assert requests.post(url, json={"max_results": 1}, timeout=10).status_code == 401
    wrong = requests.post(
        url, json={"max_results": 1}, timeout=10, auth=(cfg.username, "definitely-wrong-password")
    )
    assert wrong.status_code == 401
    ok = requests.post(
        url,
        json={"max_results": 1},
        timeout=10,
        auth=(cfg.username, cfg.password.get_secret_value()),
    )
    assert ok.status_code == 200


def test_mlflow_pipeline_user_is_not_admin(stack_env):
    """Least privilege: the pipeline cannot create users (an admin-only call)."""
    cfg = load(MlflowSettings)
    url = f"{str(cfg.tracking_uri).rstrip('/')}/api/2.0/mlflow/users/create"
    resp = requests.post(
        url,
        json={"username": "intruder", "password": "x" * 12},
        timeout=10,
        auth=(cfg.username, cfg.password.get_secret_value()),
    )
    assert resp.status_code == 403


# --- PostgreSQL ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("app", ["AIRFLOW", "MLFLOW"])
def test_postgres_reachable_per_application(stack_env, app):
    import psycopg2

    e = stack_env
    conn = psycopg2.connect(
        host=e["POSTGRES_HOST"],
        port=int(e["POSTGRES_PORT"]),
        user=e[f"{app}_DB_USER"],
        password=e[f"{app}_DB_PASSWORD"],
        dbname=e[f"{app}_DB_NAME"],
        connect_timeout=5,
    )
    with conn.cursor() as cur:
        cur.execute("SELECT current_user, current_database()")
        assert cur.fetchone() == (e[f"{app}_DB_USER"], e[f"{app}_DB_NAME"])
    conn.close()


def test_postgres_refuses_wrong_password(stack_env):
    import psycopg2

    e = stack_env
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host=e["POSTGRES_HOST"],
            port=int(e["POSTGRES_PORT"]),
            user=e["AIRFLOW_DB_USER"],
            password="wrong-password",
            dbname=e["AIRFLOW_DB_NAME"],
            connect_timeout=5,
        )


@pytest.mark.parametrize(("role", "other"), [("MLFLOW", "AIRFLOW"), ("AIRFLOW", "MLFLOW")])
def test_a_database_role_is_refused_on_the_other_applications_database(stack_env, role, other):
    import psycopg2

    e = stack_env

    def connect(dbname: str):  # type: ignore[no-untyped-def]
        return psycopg2.connect(
            host=e["POSTGRES_HOST"],
            port=int(e["POSTGRES_PORT"]),
            user=e[f"{role}_DB_USER"],
            password=e[f"{role}_DB_PASSWORD"],
            dbname=dbname,
            connect_timeout=10,
        )

    connect(e[f"{role}_DB_NAME"]).close()
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        connect(e[f"{other}_DB_NAME"]).close()


# --- Airflow ------------------------------------------------------------------------------------------
def test_airflow_db_check(stack_env):
    import os
    import sys
    from pathlib import Path

    from localstack.services import airflow_env

    airflow = Path(sys.executable).parent / "airflow"
    res = subprocess.run(
        [str(airflow), "db", "check"],
        env={**os.environ, **airflow_env(stack_env)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]


def test_airflow_api_health_and_auth(stack_env):
    api = stack_env["AIRFLOW_API_URL"].rstrip("/")
    health = requests.get(f"{api}/api/v2/monitor/health", timeout=10).json()
    assert health["metadatabase"]["status"] == "healthy"
    assert requests.get(f"{api}/api/v2/dags", timeout=10).status_code == 401
    token = requests.post(
        f"{api}/auth/token",
        timeout=10,
        json={
            "username": stack_env["AIRFLOW_ADMIN_USERNAME"],
            "password": stack_env["AIRFLOW_ADMIN_PASSWORD"],
        },
    )
    assert token.status_code in (200, 201), token.text
    dags = requests.get(
        f"{api}/api/v2/dags",
        timeout=10,
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    assert dags.status_code == 200


def test_airflow_components_report_healthy_including_the_triggerer(stack_env):
    """The UI's health panel: scheduler, dag-processor and triggerer all heartbeat."""
    api = stack_env["AIRFLOW_API_URL"].rstrip("/")
    health = requests.get(f"{api}/api/v2/monitor/health", timeout=10).json()
    for component in ("scheduler", "dag_processor", "triggerer"):
        assert health[component]["status"] == "healthy", (component, health)


def test_airflow_processes_do_not_inherit_the_callers_pipeline_settings(monkeypatch):
    """`BACKBLAZE_SOURCE=... scripts/stack up` must not pin the scheduler (or the risk service)
    to that shell's value: they read the pipeline settings from .env."""
    from localstack.proc import inherited
    from localstack.services import all_services

    monkeypatch.setenv("BACKBLAZE_SOURCE", "/from/the/shell")
    monkeypatch.setenv("DISKRISK_TRAIN_SEED", "3")
    monkeypatch.setenv("DISKRISK_LAKE_PREFIX", "shell/")
    monkeypatch.setenv("PATH_LIKE_OTHER", "kept")
    services = {s.name: s for s in all_services()}
    assert {"airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"} <= set(services)
    for name, svc in services.items():
        env = inherited(svc)
        assert env["PATH_LIKE_OTHER"] == "kept"
        if name.startswith("airflow-") or name == "risk-api":  # they read .env themselves
            assert not {"BACKBLAZE_SOURCE", "DISKRISK_TRAIN_SEED", "DISKRISK_LAKE_PREFIX"} & set(
                env
            )
        else:
            assert env["BACKBLAZE_SOURCE"] == "/from/the/shell"
