"""Configuration fails fast and names the variable; nothing has a built-in endpoint or secret."""

from __future__ import annotations

import os

import pytest

from diskrisk.config import (
    ConfigError,
    HBaseSettings,
    MlflowSettings,
    PipelineSettings,
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


PIPELINE = [
    "BACKBLAZE_SOURCE",
    "DISKRISK_SCHEDULE",
    "DISKRISK_ALERT_WEBHOOK",
    "DISKRISK_LAKE_PREFIX",
    "DISKRISK_PROMOTION_MIN_EVENTS",
]


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
        *PIPELINE,
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


# --- pipeline settings: what Airflow tasks read per run ---------------------------------------------
def _env_file(monkeypatch, tmp_path, **values: str):
    f = tmp_path / "pipeline.env"
    f.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    monkeypatch.setenv("DISKRISK_ENV_FILE", str(f))
    return f


def test_pipeline_settings_come_from_the_env_file_when_the_environment_has_none(
    monkeypatch, tmp_path
):
    """A scheduler started without BACKBLAZE_SOURCE still gives its tasks the source of .env."""
    from diskrisk.config import lake_prefix
    from diskrisk.pipeline import source

    _env_file(
        monkeypatch,
        tmp_path,
        BACKBLAZE_SOURCE="/data/backblaze",
        DISKRISK_LAKE_PREFIX="trial/",
        DISKRISK_ALERT_WEBHOOK="https://hooks.example/x",
        DISKRISK_SCHEDULE="@hourly",
    )
    s = load(PipelineSettings)
    assert (s.source, s.lake_prefix, s.alert_webhook, s.schedule) == (
        "/data/backblaze",
        "trial/",
        "https://hooks.example/x",
        "@hourly",
    )
    assert source() == "/data/backblaze" and lake_prefix() == "trial/"
    monkeypatch.setenv("BACKBLAZE_SOURCE", "/from/environment")  # the environment wins
    assert source() == "/from/environment"


def test_pipeline_settings_default_to_no_source_and_no_prefix():
    s = load(PipelineSettings)
    assert (s.source, s.lake_prefix, s.alert_webhook, s.schedule) == ("", "", "", "@daily")


def test_missing_source_is_named(monkeypatch, tmp_path):
    from diskrisk.pipeline import source

    f = _env_file(monkeypatch, tmp_path, BACKBLAZE_SOURCE="")
    with pytest.raises(ConfigError, match=f"BACKBLAZE_SOURCE is not set.*{f}"):
        source()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISKRISK_LAKE_PREFIX", "no-trailing-slash"),
        ("DISKRISK_LAKE_PREFIX", "/absolute/"),
        ("DISKRISK_ALERT_WEBHOOK", "hooks.example/x"),
    ],
)
def test_malformed_pipeline_setting_is_named(monkeypatch, tmp_path, name, value):
    _env_file(monkeypatch, tmp_path, **{name: value})
    with pytest.raises(ConfigError, match=f"{name} is invalid"):
        load(PipelineSettings)


def test_knob_groups_read_the_env_file_named_when_they_are_built(monkeypatch, tmp_path):
    from diskrisk.config import PromotionSettings

    assert PromotionSettings().min_events == 10
    _env_file(monkeypatch, tmp_path, DISKRISK_PROMOTION_MIN_EVENTS="3")
    assert PromotionSettings().min_events == 3
    monkeypatch.setenv("DISKRISK_PROMOTION_MIN_EVENTS", "4")
    assert PromotionSettings().min_events == 4


def test_an_empty_training_ceiling_unsets_it(monkeypatch, tmp_path):
    """``.env.example``: an empty ``DISKRISK_TRAIN_MAX_FAILURE_ROWS=`` keeps every failure row;
    an empty value of a knob that must be set is still an error naming it."""
    from diskrisk.config import TrainSettings

    _env_file(monkeypatch, tmp_path, DISKRISK_TRAIN_MAX_FAILURE_ROWS="")
    assert TrainSettings().max_failure_rows is None
    monkeypatch.setenv("DISKRISK_TRAIN_MAX_FAILURE_ROWS", "7")
    assert TrainSettings().sampling()["max_failure_rows"] == 7
    monkeypatch.setenv("DISKRISK_TRAIN_SEED", "")
    with pytest.raises(ValueError, match="seed"):
        TrainSettings()


def test_importing_diskrisk_turns_mlflow_telemetry_off_unless_asked():
    """Outside CI (mlflow skips telemetry there on its own) the telemetry thread of `import
    mlflow` failed offline and raced a training run for os.environ; diskrisk turns it off."""
    import subprocess
    import sys

    code = (
        "import os, diskrisk, mlflow; from mlflow.telemetry.client import get_telemetry_client;"
        "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], get_telemetry_client() is None)"
    )
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}

    def run(env: dict[str, str]) -> str:
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.split()

    assert run(clean) == ["true", "True"]
    assert run(clean | {"MLFLOW_DISABLE_TELEMETRY": "false"})[0] == "false"


@pytest.mark.parametrize("threads", [1, None])
def test_a_challenger_trains_with_the_configured_blas_threads(monkeypatch, threads):
    """DISKRISK_TRAIN_THREADS bounds BLAS while a family trains (the executor runs several side
    by side); unset, the libraries keep their own width."""
    from threadpoolctl import threadpool_info

    from diskrisk import train
    from diskrisk.config import TrainSettings

    def widths() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info()}

    outside, seen = widths(), []

    def first_step(*args, **kwargs):
        seen.append(widths())
        raise RuntimeError("stop after the first step")

    monkeypatch.setattr(train, "oot_predictions", first_step)
    with pytest.raises(RuntimeError, match="first step"):
        train.train_challenger("coxph", None, settings=TrainSettings(threads=threads))  # type: ignore[arg-type]
    assert outside and seen == [{1} if threads else outside]
    assert widths() == outside
