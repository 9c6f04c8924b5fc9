"""Typed settings for every service diskrisk talks to.

Endpoints, ports, users, passwords and tokens have no defaults on purpose: they come from the
environment or a `.env` file (path in ``DISKRISK_ENV_FILE``, else ``./.env``), so a deployment
can never silently talk to a wrong host with a built-in password. Each group is loaded on its
own (``load(S3Settings)``) so a task that only needs S3 does not require HBase settings.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, PositiveInt, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from diskrisk.families import DEFAULT_FAMILIES

S = TypeVar("S", bound=BaseSettings)


class ConfigError(RuntimeError):
    """A required setting is missing or malformed; the message names the variable."""


class EnvFileSettings(BaseSettings):
    """The one way every settings group is read: the environment, then the `.env` that
    ``DISKRISK_ENV_FILE`` names at the time the settings are built (not at import), then the
    defaults. The service groups below add their config; the optional knob groups
    (``DISKRISK_TRAIN_*``, ``DISKRISK_PROMOTION_*``, ``DISKRISK_DRIFT_*``) derive from it."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            DotEnvSettingsSource(settings_cls, env_file=env_file()),
            file_secret_settings,
        )


class _Base(EnvFileSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False, frozen=True)


class S3Settings(_Base):
    """The pipeline's S3 identity and its bucket."""

    endpoint_url: AnyHttpUrl = Field(alias="S3_ENDPOINT_URL")
    region: str = Field(alias="S3_REGION")
    access_key: SecretStr = Field(alias="DISKRISK_S3_ACCESS_KEY", min_length=3)
    secret_key: SecretStr = Field(alias="DISKRISK_S3_SECRET_KEY", min_length=8)
    bucket: str = Field(alias="DISKRISK_BUCKET", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class S3AdminSettings(_Base):
    """Object-store administrator; only the init step uses it."""

    endpoint_url: AnyHttpUrl = Field(alias="S3_ENDPOINT_URL")
    region: str = Field(alias="S3_REGION")
    root_user: SecretStr = Field(alias="MINIO_ROOT_USER", min_length=3)
    root_password: SecretStr = Field(alias="MINIO_ROOT_PASSWORD", min_length=8)
    bucket: str = Field(alias="DISKRISK_BUCKET")
    mlflow_bucket: str = Field(alias="MLFLOW_ARTIFACTS_BUCKET")
    pipeline_access_key: SecretStr = Field(alias="DISKRISK_S3_ACCESS_KEY", min_length=3)
    pipeline_secret_key: SecretStr = Field(alias="DISKRISK_S3_SECRET_KEY", min_length=8)
    mlflow_access_key: SecretStr = Field(alias="MLFLOW_S3_ACCESS_KEY", min_length=3)
    mlflow_secret_key: SecretStr = Field(alias="MLFLOW_S3_SECRET_KEY", min_length=8)
    reader_access_key: SecretStr = Field(alias="DISKRISK_READER_S3_ACCESS_KEY", min_length=3)
    reader_secret_key: SecretStr = Field(alias="DISKRISK_READER_S3_SECRET_KEY", min_length=8)


class MlflowSettings(_Base):
    """The pipeline's MLflow identity (the mlflow client reads the same variables)."""

    tracking_uri: AnyHttpUrl = Field(alias="MLFLOW_TRACKING_URI")
    username: str = Field(alias="MLFLOW_TRACKING_USERNAME", min_length=1)
    password: SecretStr = Field(alias="MLFLOW_TRACKING_PASSWORD", min_length=8)
    # mlflow's own variable, exported like the credentials: the default 7 retries back off for
    # ~4 min before a task with the server down fails (and Airflow retries the task).
    http_max_retries: int = Field(default=7, ge=0, alias="MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    model_name: str = Field(default="diskrisk-failure-risk", alias="DISKRISK_MODEL_NAME")
    experiment: str = Field(default="diskrisk", alias="DISKRISK_EXPERIMENT")
    # Who the pipeline shares what it creates with (READ on the model and its experiments).
    reader_username: str = Field(default="", alias="DISKRISK_READER_MLFLOW_USERNAME")


class MlflowAdminSettings(_Base):
    tracking_uri: AnyHttpUrl = Field(alias="MLFLOW_TRACKING_URI")
    admin_username: str = Field(alias="MLFLOW_AUTH_ADMIN_USERNAME", min_length=1)
    admin_password: SecretStr = Field(alias="MLFLOW_AUTH_ADMIN_PASSWORD", min_length=8)
    pipeline_username: str = Field(alias="MLFLOW_TRACKING_USERNAME", min_length=1)
    pipeline_password: SecretStr = Field(alias="MLFLOW_TRACKING_PASSWORD", min_length=8)
    reader_username: str = Field(alias="DISKRISK_READER_MLFLOW_USERNAME", min_length=1)
    reader_password: SecretStr = Field(alias="DISKRISK_READER_MLFLOW_PASSWORD", min_length=8)
    model_name: str = Field(default="diskrisk-failure-risk", alias="DISKRISK_MODEL_NAME")
    experiment: str = Field(default="diskrisk", alias="DISKRISK_EXPERIMENT")


class AirflowSettings(_Base):
    api_url: AnyHttpUrl = Field(alias="AIRFLOW_API_URL")


class AirflowAdminSettings(_Base):
    """Who triggers DAG runs through Airflow's REST API (the demo, the tests, `diskrisk trigger`)."""

    api_url: AnyHttpUrl = Field(alias="AIRFLOW_API_URL")
    username: str = Field(alias="AIRFLOW_ADMIN_USERNAME", min_length=1)
    password: SecretStr = Field(alias="AIRFLOW_ADMIN_PASSWORD", min_length=8)


class PipelineSettings(_Base):
    """What the pipeline reads per run. Airflow tasks load it like every other group (the
    environment, then ``DISKRISK_ENV_FILE``), so an edit of `.env` reaches the next task of the
    running scheduler without a restart."""

    source: str = Field(default="", alias="BACKBLAZE_SOURCE")
    schedule: str = Field(default="@daily", alias="DISKRISK_SCHEDULE", min_length=1)
    alert_webhook: str = Field(default="", alias="DISKRISK_ALERT_WEBHOOK")
    lake_prefix: str = Field(default="", alias="DISKRISK_LAKE_PREFIX", pattern=r"^([^/].*/)?$")
    future_days_tolerance: int = Field(default=1, alias="DISKRISK_FUTURE_DAYS_TOLERANCE", ge=0)
    download_timeout_s: float = Field(default=60.0, alias="DISKRISK_DOWNLOAD_TIMEOUT_S", gt=0)
    download_attempts: int = Field(default=3, alias="DISKRISK_DOWNLOAD_ATTEMPTS", ge=1)
    duckdb_memory_limit: str = Field(
        default="3GiB", alias="DISKRISK_DUCKDB_MEMORY_LIMIT", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$"
    )
    duckdb_temp_dir: str = Field(default="", alias="DISKRISK_DUCKDB_TEMP_DIR")
    lake_cache_dir: str = Field(default="", alias="DISKRISK_LAKE_CACHE_DIR")

    @field_validator("alert_webhook")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL or empty")
        return value


class HBaseSettings(_Base):
    thrift_host: str = Field(alias="HBASE_THRIFT_HOST", min_length=1)
    thrift_port: PositiveInt = Field(alias="HBASE_THRIFT_PORT", lt=65536)
    namespace: str = Field(alias="DISKRISK_HBASE_NAMESPACE", pattern=r"^[A-Za-z0-9_]+$")
    batch_size: PositiveInt = Field(default=5000, alias="DISKRISK_HBASE_BATCH_SIZE")
    timeout_s: float = Field(default=60.0, alias="DISKRISK_HBASE_TIMEOUT_S", gt=0)


class ServeSettings(_Base):
    """The risk service (``diskrisk serve``): where it listens, who may call it, how it follows
    the champion alias and when its scores count as stale."""

    url: AnyHttpUrl = Field(alias="DISKRISK_SERVE_URL")
    username: str = Field(alias="DISKRISK_SERVE_USERNAME", min_length=1)
    password: SecretStr = Field(alias="DISKRISK_SERVE_PASSWORD", min_length=8)
    poll_seconds: float = Field(default=30.0, alias="DISKRISK_SERVE_POLL_SECONDS", gt=0)
    max_body_bytes: PositiveInt = Field(default=5_000_000, alias="DISKRISK_SERVE_MAX_BODY_BYTES")
    max_score_age_hours: float = Field(
        default=36.0, alias="DISKRISK_SERVE_MAX_SCORE_AGE_HOURS", gt=0
    )
    mlflow_ui_url: str = Field(default="", alias="DISKRISK_SERVE_MLFLOW_UI_URL")
    airflow_ui_url: str = Field(default="", alias="DISKRISK_SERVE_AIRFLOW_UI_URL")


class ReaderSettings(_Base):
    """The read-only identity of whoever consumes the results (the risk service): READ on the
    registered model and the experiments the pipeline shares with it, GET/LIST on the lake
    bucket. Provisioned by ``diskrisk init``; HBase's Thrift gateway has no identities."""

    mlflow_username: str = Field(alias="DISKRISK_READER_MLFLOW_USERNAME", min_length=1)
    mlflow_password: SecretStr = Field(alias="DISKRISK_READER_MLFLOW_PASSWORD", min_length=8)
    s3_access_key: SecretStr = Field(alias="DISKRISK_READER_S3_ACCESS_KEY", min_length=3)
    s3_secret_key: SecretStr = Field(alias="DISKRISK_READER_S3_SECRET_KEY", min_length=8)

    def as_client_environment(self) -> dict[str, str]:
        """The client variables (the mlflow client's, the pipeline's S3 ones) set to this
        identity: a process that exports them can read results and change nothing."""
        return {
            "MLFLOW_TRACKING_USERNAME": self.mlflow_username,
            "MLFLOW_TRACKING_PASSWORD": self.mlflow_password.get_secret_value(),
            "DISKRISK_S3_ACCESS_KEY": self.s3_access_key.get_secret_value(),
            "DISKRISK_S3_SECRET_KEY": self.s3_secret_key.get_secret_value(),
        }


class ProvenanceSettings(_Base):
    """What MLflow runs are tagged with when the code is not a git checkout (images)."""

    git_revision: str = Field(default="", alias="DISKRISK_GIT_REVISION")


# --- stage knobs (DISKRISK_TRAIN_*, DISKRISK_PROMOTION_*, DISKRISK_DRIFT_*) ----------------------------
class TrainSettings(EnvFileSettings):
    """Training knobs (DISKRISK_TRAIN_*); families and params can be overridden per run."""

    model_config = SettingsConfigDict(
        env_prefix="DISKRISK_TRAIN_",
        extra="ignore",
        env_parse_none_str="",  # empty: unset
    )
    # DEFAULT_FAMILIES: chosen out of time (see diskrisk.families)
    families: list[str] = Field(default_factory=lambda: list(DEFAULT_FAMILIES))
    lookback_days: int = Field(30, ge=1)
    landmark_step_days: int = Field(7, ge=1, description="days between stacked training snapshots")
    oot_origins: int = Field(2, ge=1, description="rolling origins of the out-of-time evaluation")
    oot_block_days: int | None = Field(None, ge=2, description="test window; default: lake/6")
    seed: int = 0
    n_bootstrap: int = Field(200, ge=0)
    max_censored_rows: int = Field(
        250_000,
        ge=1,
        description="censored rows kept in the training tables, weighted (diskrisk.oot."
        "write_tables). Above the stack's size: no sampling",
    )
    min_censored_per_failure: int = Field(
        10,
        ge=0,
        description="the training tables keep at least this many censored rows per failure, "
        "even above max_censored_rows (a year-long lake has ~10x a quarter's failures)",
    )
    max_failure_rows: int | None = Field(
        50_000,
        ge=1,
        description="failure rows kept in the training tables, weighted; with the floor above "
        "it bounds the table (and the fits' memory) however many drives fail. Unset: all",
    )
    threads: int | None = Field(
        1,
        ge=1,
        description="BLAS/OpenMP threads of one training task. The executor trains the families "
        "side by side (AIRFLOW__CORE__PARALLELISM), so one each avoids oversubscribing the "
        "cores. Unset: the libraries' own (every core)",
    )

    def sampling(self) -> dict[str, Any]:
        """The keyword arguments of :func:`diskrisk.oot.write_tables` that draw its rows."""
        return {
            "max_censored_rows": self.max_censored_rows,
            "min_censored_per_failure": self.min_censored_per_failure,
            "max_failure_rows": self.max_failure_rows,
            "seed": self.seed,
        }


class PromotionSettings(EnvFileSettings):
    """The promotion rule's knobs (DISKRISK_PROMOTION_*)."""

    model_config = SettingsConfigDict(env_prefix="DISKRISK_PROMOTION_", extra="ignore")
    min_gain: float = Field(0.005, ge=0, description="C-index gain the challenger must reach")
    min_events: int = Field(10, ge=1, description="failures the test windows need to be trusted")


class DriftSettings(EnvFileSettings):
    """Thresholds, overridable from the environment (DISKRISK_DRIFT_*)."""

    model_config = SettingsConfigDict(env_prefix="DISKRISK_DRIFT_", extra="ignore")
    num_method: str = "ks"
    cat_method: str = "psi"
    num_threshold: float = Field(0.05, gt=0)
    cat_threshold: float = Field(0.1, gt=0)
    drift_share: float = Field(0.5, gt=0, le=1)
    max_rows: int = Field(50_000, gt=100)  # sample size per side: KS on 300k rows flags noise


def lake_prefix() -> str:
    """Key prefix inside the bucket (DISKRISK_LAKE_PREFIX, default none, else ending in "/"):
    lets trials and tests run beside production data in one bucket."""
    return load(PipelineSettings).lake_prefix


def git_revision() -> str:
    """DISKRISK_GIT_REVISION (the environment, then the env file), or "" when unset."""
    return load(ProvenanceSettings).git_revision


def env_file() -> Path:
    return Path(os.environ.get("DISKRISK_ENV_FILE", ".env"))


def load(cls: type[S]) -> S:
    """Instantiate a settings group, failing fast with the names of the bad variables."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = _alias(cls, err["loc"][0]) if err["loc"] else "?"
            reason = "is not set" if err["type"] == "missing" else f"is invalid: {err['msg']}"
            problems.append(f"{name} {reason}")
        raise ConfigError(
            f"{cls.__name__}: " + "; ".join(problems) + f" (environment or {env_file()})"
        ) from None


def _alias(cls: type[BaseSettings], field: object) -> str:
    info = cls.model_fields.get(str(field))
    return (info.alias if info and info.alias else str(field)).upper()


@lru_cache
def cached(cls: type[S]) -> S:
    return load(cls)


def host_port(url: AnyHttpUrl | str) -> tuple[str, int]:
    """Split an http(s) URL into the host and port a server must bind to."""
    parts = urlsplit(str(url))
    if not parts.hostname or not parts.port:
        raise ConfigError(f"{url!r} must name a host and an explicit port")
    return parts.hostname, parts.port
