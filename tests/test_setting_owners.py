"""One owner for each setting: every variable `.env.example` names (set, or a commented optional
knob ``# NAME=``) reaches the code that uses it when it is given only in the env file
(``DISKRISK_ENV_FILE``) and not in the process environment.

Each variable gets a distinctive value in an otherwise complete env file; the test then asks the
owner — the settings group or function the code calls, the DAG as Airflow parses it, the local
stack's service definitions (argv, environment, rendered config, what its init steps send) —
what it sees. A variable with no owner listed here fails the test, and so does a listed owner
that does not see the value.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from diskrisk import config

ROOT = Path(__file__).resolve().parents[1]
ENV_ONLY_HEADER = "# --- Environment only"


def example() -> dict[str, tuple[str, bool]]:
    """``{name: (value, commented)}`` of `.env.example`, up to its environment-only section."""
    out: dict[str, tuple[str, bool]] = {}
    for line in (ROOT / ".env.example").read_text().split(ENV_ONLY_HEADER)[0].splitlines():
        if m := re.match(r"^(# )?([A-Z][A-Z0-9_]*)=(.*)$", line):
            out[m.group(2)] = (m.group(3), bool(m.group(1)))
    return out


def environment_only() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    assert ENV_ONLY_HEADER in text
    return set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", text.split(ENV_ONLY_HEADER)[1], re.M))


# Read from the process environment only, by design (they say where the tools that read `.env`
# are installed); `.env.example` lists them in its environment-only section. Who reads them:
ENVIRONMENT_ONLY = {
    "DISKRISK_CACHE_DIR": ["scripts/bootstrap", "Makefile", "scripts/localstack/proc.py"],
    "DISKRISK_STACK_DIR": ["scripts/localstack/proc.py"],
    "DISKRISK_SERVICE_USER": ["scripts/localstack/services.py"],
    "MLFLOW_DISABLE_TELEMETRY": [
        "src/diskrisk/__init__.py",
        "scripts/localstack/services.py",
        "docker-compose.yml",
    ],
}


# --- distinctive values -------------------------------------------------------------------------
SPECIAL = {
    "S3_CONSOLE_ADDRESS": "console-probe.internal:41001",
    "DISKRISK_BUCKET": "probe-bucket-7",
    "MLFLOW_ARTIFACTS_BUCKET": "probe-mlflow-bucket-7",
    "DISKRISK_HBASE_NAMESPACE": "probe_ns_7",
    "DISKRISK_LAKE_PREFIX": "probe-prefix-7/",
    "DISKRISK_ALERT_WEBHOOK": "https://hooks.probe.internal/alert-7",
    "DISKRISK_SCHEDULE": "17 3 * * 2",
    "BACKBLAZE_SOURCE": "/probe/backblaze-source-7",
    "BACKBLAZE_TEST_DATA": "/probe/backblaze-test-data-7",
    "DISKRISK_GIT_REVISION": "probe-revision-7",
    "DISKRISK_MODEL_NAME": "probe-model-7",
    "DISKRISK_EXPERIMENT": "probe-experiment-7",
    "DISKRISK_HBASE_BATCH_SIZE": "2323",
    "DISKRISK_HBASE_TIMEOUT_S": "47.25",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "11",
    "DISKRISK_TRAIN_FAMILIES": '["km","coxph"]',
    "DISKRISK_TRAIN_LOOKBACK_DAYS": "97",
    "DISKRISK_TRAIN_LANDMARK_STEP_DAYS": "619",
    "DISKRISK_TRAIN_OOT_ORIGINS": "727",
    "DISKRISK_TRAIN_OOT_BLOCK_DAYS": "838",
    "DISKRISK_TRAIN_SEED": "4141",
    "DISKRISK_TRAIN_N_BOOTSTRAP": "313",
    "DISKRISK_TRAIN_MAX_CENSORED_ROWS": "123457",
    "DISKRISK_TRAIN_MIN_CENSORED_PER_FAILURE": "37",
    "DISKRISK_TRAIN_MAX_FAILURE_ROWS": "45679",
    "DISKRISK_TRAIN_THREADS": "29",
    "DISKRISK_PROMOTION_MIN_GAIN": "0.0057",
    "DISKRISK_PROMOTION_MIN_EVENTS": "89",
    "DISKRISK_DRIFT_NUM_METHOD": "wasserstein",
    "DISKRISK_DRIFT_CAT_METHOD": "jensenshannon",
    "DISKRISK_DRIFT_NUM_THRESHOLD": "0.083",
    "DISKRISK_DRIFT_CAT_THRESHOLD": "0.47",
    "DISKRISK_DRIFT_DRIFT_SHARE": "0.39",
    "DISKRISK_DRIFT_MAX_ROWS": "56565",
    "DISKRISK_SERVE_POLL_SECONDS": "12.5",
    "DISKRISK_FUTURE_DAYS_TOLERANCE": "271",
    "DISKRISK_DOWNLOAD_TIMEOUT_S": "33.25",
    "DISKRISK_DOWNLOAD_ATTEMPTS": "613",
    "DISKRISK_DUCKDB_MEMORY_LIMIT": "7GiB",
    "DISKRISK_DUCKDB_TEMP_DIR": "/probe/duckdb-spill-7",
    "DISKRISK_LAKE_CACHE_DIR": "/probe/lake-cache-7",
    "DISKRISK_SERVE_MAX_BODY_BYTES": "765432",
    "DISKRISK_SERVE_MAX_SCORE_AGE_HOURS": "49.5",
    "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(
        b"probe-fernet-key-7".ljust(32, b"7")
    ).decode(),
}


def distinctive(name: str, index: int) -> str:
    if name in SPECIAL:
        return SPECIAL[name]
    slug = name.lower().replace("_", "-")
    if name.endswith("_PORT"):
        return str(42000 + index)
    if name.endswith(("_URL", "_URI")):
        return f"http://{slug}.probe.internal:{43000 + index}"
    if name.endswith("_HOST"):
        return f"{slug}.probe.internal"
    return f"probe-{slug}"  # users, passwords, keys, names, regions: all at least 8 characters


def values() -> dict[str, str]:
    return {name: distinctive(name, i) for i, name in enumerate(sorted(example()))}


# --- readers --------------------------------------------------------------------------------------
def _plain(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))
    text = str(value)
    return text.rstrip("/") if text.startswith("http") else text


def group(cls: type, field: str) -> Callable[[], list[str]]:
    """A settings group built the way the code builds it: ``load()`` for the service groups,
    the bare constructor for the knob groups (``EnvFileSettings``)."""

    def read() -> list[str]:
        settings = cls() if issubclass(cls, config.EnvFileSettings) else config.load(cls)
        return [_plain(getattr(settings, field))]

    read.__name__ = f"{cls.__name__}.{field}"
    return read


def _train(field: str) -> Callable[[], list[str]]:
    from diskrisk.config import TrainSettings

    return group(TrainSettings, field)


def _promotion(field: str) -> Callable[[], list[str]]:
    from diskrisk.config import PromotionSettings

    return group(PromotionSettings, field)


def _drift(field: str) -> Callable[[], list[str]]:
    from diskrisk.config import DriftSettings

    return group(DriftSettings, field)


def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[], str]:
    """Everything the local stack hands its services, built from the env file: argv,
    environment, rendered hbase-site.xml, the Airflow settings and passwords file, the commands
    its prepare/init steps run and what they send PostgreSQL."""

    def read() -> str:
        from localstack import services

        state = tmp_path / "stack"
        monkeypatch.setattr(services, "ENV_FILE", Path(config.env_file()))
        for name, path in (("STATE", state), ("DATA", state / "data"), ("LOGS", state / "logs")):
            monkeypatch.setattr(services, name, path)
        seen: list[Any] = []

        def run(argv: list[str], **kwargs: Any) -> None:
            seen.append([argv, kwargs.get("env")])
            for arg in argv:
                if arg.startswith("--pwfile="):
                    seen.append(Path(arg.removeprefix("--pwfile=")).read_text())

        class Cursor:
            def execute(self, sql: str, params: Any = None) -> None:
                seen.append([sql, params])

            def fetchone(self) -> None:
                return None

        class Connection:
            autocommit = False

            def cursor(self) -> Any:
                from contextlib import nullcontext

                return nullcontext(Cursor())

            def close(self) -> None:
                pass

        def connect(**kwargs: Any) -> Connection:
            seen.append(kwargs)
            return Connection()

        import psycopg2

        monkeypatch.setattr(services, "run", run)
        monkeypatch.setattr(
            services, "_owned_dir", lambda p: p.mkdir(parents=True, exist_ok=True) or p
        )
        monkeypatch.setattr(psycopg2, "connect", connect)
        monkeypatch.setattr(services.shutil, "chown", lambda *args, **kwargs: None)
        e = services.env()
        for svc in services.all_services():
            seen.append([svc.argv, svc.env])
            for step in (svc.prepare, svc.after):
                if step is not None:
                    step()
        seen.append(services.airflow_env(e))
        files = [*state.rglob("hbase-site.xml"), *state.rglob("passwords.json")]
        assert len(files) == 2, files
        return json.dumps(seen, default=str) + "".join(f.read_text() for f in files)

    read.__name__ = "local stack"
    return read


def readers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, list[Callable[[], Any]]]:
    """Who reads each variable. A reader returns what it saw: a list of values (the value must
    be one of them) or a text (the value must appear in it)."""
    from diskrisk.config import (
        AirflowAdminSettings,
        AirflowSettings,
        HBaseSettings,
        MlflowAdminSettings,
        MlflowSettings,
        PipelineSettings,
        ReaderSettings,
        S3AdminSettings,
        S3Settings,
        ServeSettings,
    )

    local = stack(monkeypatch, tmp_path)

    def dag_schedule() -> list[str]:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "airflow" / "dags"))
        assert bag.import_errors == {}
        return [str(bag.dags["diskrisk_pipeline"].schedule)]

    def pipeline_source() -> list[str]:
        from diskrisk.pipeline import source

        return [source()]

    def cli_and_pipeline_prefix() -> list[str]:
        from diskrisk.cli_data import _prefix

        seen = {_prefix(None), config.lake_prefix()}
        return list(seen) if len(seen) == 1 else []

    def webhook() -> list[str]:
        import urllib.request

        from diskrisk import notify

        posted: list[str] = []

        def urlopen(req: urllib.request.Request, timeout: float) -> Any:
            posted.append(req.full_url)
            raise OSError("not sent")

        monkeypatch.setattr(urllib.request, "urlopen", urlopen)
        notify.post("probe")
        return posted

    def git_revision() -> list[str]:
        from diskrisk.train import git_revision

        return [git_revision()]

    def drift_experiment() -> list[str]:
        from diskrisk.tracking import drift_experiment

        return [drift_experiment().removesuffix("-drift")]

    def duckdb_limits() -> list[str]:
        from diskrisk.lake import bounded_duckdb

        con = bounded_duckdb()
        limit, spill = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
        ).fetchone()
        return [str(limit).replace(".0 GiB", "GiB"), str(spill)]

    def test_data() -> list[str]:
        from conftest import setting_for_tests

        return [str(setting_for_tests("BACKBLAZE_TEST_DATA", config.env_file()))]

    return {
        # S3
        "S3_ENDPOINT_URL": [
            group(S3Settings, "endpoint_url"),
            group(S3AdminSettings, "endpoint_url"),
            local,
        ],
        "S3_CONSOLE_ADDRESS": [local],
        "S3_REGION": [group(S3Settings, "region"), group(S3AdminSettings, "region"), local],
        "MINIO_ROOT_USER": [group(S3AdminSettings, "root_user"), local],
        "MINIO_ROOT_PASSWORD": [group(S3AdminSettings, "root_password"), local],
        "DISKRISK_S3_ACCESS_KEY": [
            group(S3Settings, "access_key"),
            group(S3AdminSettings, "pipeline_access_key"),
        ],
        "DISKRISK_S3_SECRET_KEY": [
            group(S3Settings, "secret_key"),
            group(S3AdminSettings, "pipeline_secret_key"),
        ],
        "DISKRISK_BUCKET": [group(S3Settings, "bucket"), group(S3AdminSettings, "bucket")],
        "MLFLOW_ARTIFACTS_BUCKET": [group(S3AdminSettings, "mlflow_bucket"), local],
        # PostgreSQL: only the local stack (compose has its own postgres service)
        "POSTGRES_HOST": [local],
        "POSTGRES_PORT": [local],
        "POSTGRES_USER": [local],
        "POSTGRES_PASSWORD": [local],
        "AIRFLOW_DB_NAME": [local],
        "AIRFLOW_DB_USER": [local],
        "AIRFLOW_DB_PASSWORD": [local],
        "MLFLOW_DB_NAME": [local],
        "MLFLOW_DB_USER": [local],
        "MLFLOW_DB_PASSWORD": [local],
        # MLflow
        "MLFLOW_TRACKING_URI": [
            group(MlflowSettings, "tracking_uri"),
            group(MlflowAdminSettings, "tracking_uri"),
            local,
        ],
        "MLFLOW_AUTH_ADMIN_USERNAME": [group(MlflowAdminSettings, "admin_username"), local],
        "MLFLOW_AUTH_ADMIN_PASSWORD": [group(MlflowAdminSettings, "admin_password"), local],
        "MLFLOW_TRACKING_USERNAME": [
            group(MlflowSettings, "username"),
            group(MlflowAdminSettings, "pipeline_username"),
        ],
        "MLFLOW_TRACKING_PASSWORD": [
            group(MlflowSettings, "password"),
            group(MlflowAdminSettings, "pipeline_password"),
        ],
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": [group(MlflowSettings, "http_max_retries")],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": [local],
        "MLFLOW_S3_ACCESS_KEY": [group(S3AdminSettings, "mlflow_access_key"), local],
        "MLFLOW_S3_SECRET_KEY": [group(S3AdminSettings, "mlflow_secret_key"), local],
        # HBase
        "HBASE_THRIFT_HOST": [group(HBaseSettings, "thrift_host"), local],
        "HBASE_THRIFT_PORT": [group(HBaseSettings, "thrift_port"), local],
        "DISKRISK_HBASE_NAMESPACE": [group(HBaseSettings, "namespace")],
        "HBASE_ZOOKEEPER_PORT": [local],
        "HBASE_MASTER_PORT": [local],
        "HBASE_MASTER_INFO_PORT": [local],
        "HBASE_REGIONSERVER_PORT": [local],
        "HBASE_REGIONSERVER_INFO_PORT": [local],
        "HBASE_THRIFT_INFO_PORT": [local],
        # Airflow
        "AIRFLOW_API_URL": [
            group(AirflowSettings, "api_url"),
            group(AirflowAdminSettings, "api_url"),
            local,
        ],
        "AIRFLOW_ADMIN_USERNAME": [group(AirflowAdminSettings, "username"), local],
        "AIRFLOW_ADMIN_PASSWORD": [group(AirflowAdminSettings, "password"), local],
        "AIRFLOW__CORE__FERNET_KEY": [local],
        "AIRFLOW__API_AUTH__JWT_SECRET": [local],
        # Pipeline
        "BACKBLAZE_SOURCE": [group(PipelineSettings, "source"), pipeline_source],
        "DISKRISK_SCHEDULE": [group(PipelineSettings, "schedule"), dag_schedule],
        "DISKRISK_ALERT_WEBHOOK": [group(PipelineSettings, "alert_webhook"), webhook],
        "DISKRISK_LAKE_PREFIX": [group(PipelineSettings, "lake_prefix"), cli_and_pipeline_prefix],
        "BACKBLAZE_TEST_DATA": [test_data],
        "DISKRISK_FUTURE_DAYS_TOLERANCE": [group(PipelineSettings, "future_days_tolerance")],
        "DISKRISK_DOWNLOAD_TIMEOUT_S": [group(PipelineSettings, "download_timeout_s")],
        "DISKRISK_DOWNLOAD_ATTEMPTS": [group(PipelineSettings, "download_attempts")],
        "DISKRISK_DUCKDB_MEMORY_LIMIT": [duckdb_limits],
        "DISKRISK_DUCKDB_TEMP_DIR": [duckdb_limits],
        "DISKRISK_LAKE_CACHE_DIR": [group(PipelineSettings, "lake_cache_dir")],
        # Optional knobs
        "DISKRISK_MODEL_NAME": [
            group(MlflowSettings, "model_name"),
            group(MlflowAdminSettings, "model_name"),
        ],
        "DISKRISK_EXPERIMENT": [
            group(MlflowSettings, "experiment"),
            group(MlflowAdminSettings, "experiment"),
            drift_experiment,
        ],
        "DISKRISK_HBASE_BATCH_SIZE": [group(HBaseSettings, "batch_size")],
        "DISKRISK_HBASE_TIMEOUT_S": [group(HBaseSettings, "timeout_s")],
        "DISKRISK_GIT_REVISION": [git_revision],
        # Risk service
        "DISKRISK_SERVE_URL": [group(ServeSettings, "url")],
        "DISKRISK_READER_MLFLOW_USERNAME": [
            group(ReaderSettings, "mlflow_username"),
            group(MlflowAdminSettings, "reader_username"),
            group(MlflowSettings, "reader_username"),
        ],
        "DISKRISK_READER_MLFLOW_PASSWORD": [
            group(ReaderSettings, "mlflow_password"),
            group(MlflowAdminSettings, "reader_password"),
        ],
        "DISKRISK_READER_S3_ACCESS_KEY": [
            group(ReaderSettings, "s3_access_key"),
            group(S3AdminSettings, "reader_access_key"),
        ],
        "DISKRISK_READER_S3_SECRET_KEY": [
            group(ReaderSettings, "s3_secret_key"),
            group(S3AdminSettings, "reader_secret_key"),
        ],
        **{
            f"DISKRISK_SERVE_{f.upper()}": [group(ServeSettings, f)]
            for f in (
                "username",
                "password",
                "poll_seconds",
                "max_body_bytes",
                "max_score_age_hours",
                "mlflow_ui_url",
                "airflow_ui_url",
            )
        },
        **{
            f"DISKRISK_TRAIN_{f.upper()}": [_train(f)]
            for f in (
                "families",
                "lookback_days",
                "landmark_step_days",
                "oot_origins",
                "oot_block_days",
                "seed",
                "n_bootstrap",
                "max_censored_rows",
                "min_censored_per_failure",
                "max_failure_rows",
                "threads",
            )
        },
        **{f"DISKRISK_PROMOTION_{f.upper()}": [_promotion(f)] for f in ("min_gain", "min_events")},
        **{
            f"DISKRISK_DRIFT_{f.upper()}": [_drift(f)]
            for f in (
                "num_method",
                "cat_method",
                "num_threshold",
                "cat_threshold",
                "drift_share",
                "max_rows",
            )
        },
    }


def _host_port(url: str) -> list[str]:
    parts = urlsplit(url)
    return [str(parts.hostname), str(parts.port)]


# --- the tests ------------------------------------------------------------------------------------
@pytest.fixture
def scrubbed(monkeypatch, tmp_path):
    """No variable of `.env.example` in the process environment, no cached settings."""
    for name in [*example(), *ENVIRONMENT_ONLY]:
        monkeypatch.delenv(name, raising=False)
    config.cached.cache_clear()
    yield
    config.cached.cache_clear()


def test_every_variable_has_an_owner(monkeypatch, tmp_path):
    owned = set(readers(monkeypatch, tmp_path))
    names = set(example())
    assert names - owned == set(), "variables of .env.example nobody is known to read"
    assert owned - names == set(), "owners listed for variables .env.example no longer has"
    assert environment_only() == set(ENVIRONMENT_ONLY)
    assert not names & set(ENVIRONMENT_ONLY)


@pytest.mark.parametrize("name", sorted(ENVIRONMENT_ONLY))
def test_environment_only_variables_are_read_where_listed(name):
    for reader in ENVIRONMENT_ONLY[name]:
        assert name in (ROOT / reader).read_text(), f"{reader} does not read {name}"


@pytest.mark.parametrize("name", sorted(example()))
def test_a_variable_given_only_in_the_env_file_reaches_its_owners(
    name, scrubbed, monkeypatch, tmp_path
):
    probe = values()
    env_file = tmp_path / "probe.env"
    env_file.write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in probe.items()))
    monkeypatch.setenv("DISKRISK_ENV_FILE", str(env_file))
    value = probe[name]
    owners = readers(monkeypatch, tmp_path)[name]
    assert owners
    for read in owners:
        seen = read()
        if isinstance(seen, str):  # a URL may be handed on as its host and its port
            parts = [value] if not value.startswith("http") else _host_port(value)
            assert all(p in seen for p in parts), f"{read.__name__} does not pass {name}={value} on"
        else:
            assert value in seen, f"{read.__name__} sees {seen}, not {name}={value}"


def test_the_probe_values_are_distinct():
    """A value found by a reader can only have come from its own variable."""
    probe = values()
    for name, value in probe.items():
        others = [k for k, v in probe.items() if k != name and value in v]
        assert not others, f"{name}'s probe value is part of {others}"
