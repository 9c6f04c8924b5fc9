"""Configuration fails fast and names the variable; nothing has a built-in endpoint or secret."""

from __future__ import annotations

import pytest

from diskrisk.config import (
    ConfigError,
    HBaseSettings,
    MlflowSettings,
    S3Settings,
    host_port,
    load,
)

S3_OK = {
    "S3_ENDPOINT_URL": "http://s3.example.internal:9100",
    "S3_REGION": "us-east-1",
    "DISKRISK_S3_ACCESS_KEY": "pipeline",
    "DISKRISK_S3_SECRET_KEY": "0123456789abcdef",
    "DISKRISK_BUCKET": "diskrisk",
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No .env and no ambient variables leak into these tests."""
    monkeypatch.setenv("DISKRISK_ENV_FILE", str(tmp_path / "absent.env"))
    for name in [
        *S3_OK,
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "HBASE_THRIFT_HOST",
        "HBASE_THRIFT_PORT",
        "DISKRISK_HBASE_NAMESPACE",
    ]:
        monkeypatch.delenv(name, raising=False)


def test_loads_from_environment(monkeypatch):
    for k, v in S3_OK.items():
        monkeypatch.setenv(k, v)
    s = load(S3Settings)
    assert str(s.endpoint_url).startswith("http://s3.example.internal:9100")
    assert s.secret_key.get_secret_value() == S3_OK["DISKRISK_S3_SECRET_KEY"]
    assert "0123456789abcdef" not in repr(s)  # secrets never print


def test_loads_from_env_file(monkeypatch, tmp_path):
    f = tmp_path / "x.env"
    f.write_text("\n".join(f"{k}={v}" for k, v in S3_OK.items()))
    monkeypatch.setenv("DISKRISK_ENV_FILE", str(f))
    assert load(S3Settings).bucket == "diskrisk"


@pytest.mark.parametrize("missing", sorted(S3_OK))
def test_missing_variable_is_named(monkeypatch, missing):
    for k, v in S3_OK.items():
        if k != missing:
            monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=f"{missing} is not set"):
        load(S3Settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("S3_ENDPOINT_URL", "not a url"),
        ("DISKRISK_BUCKET", "Bad_Bucket!"),
        ("DISKRISK_S3_SECRET_KEY", "short"),
    ],
)
def test_malformed_variable_is_named(monkeypatch, name, value):
    for k, v in S3_OK.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name} is invalid"):
        load(S3Settings)


def test_hbase_port_must_be_a_port(monkeypatch):
    monkeypatch.setenv("HBASE_THRIFT_HOST", "hbase")
    monkeypatch.setenv("DISKRISK_HBASE_NAMESPACE", "diskrisk")
    monkeypatch.setenv("HBASE_THRIFT_PORT", "70000")
    with pytest.raises(ConfigError, match="HBASE_THRIFT_PORT is invalid"):
        load(HBaseSettings)


def test_no_defaults_for_endpoints_or_credentials():
    with pytest.raises(ConfigError) as err:
        load(MlflowSettings)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert f"{name} is not set" in str(err.value)


def test_host_port_requires_explicit_port():
    assert host_port("http://minio:9000") == ("minio", 9000)
    with pytest.raises(ConfigError):
        host_port("http://minio")
