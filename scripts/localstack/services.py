"""The real services of diskrisk, run as local processes on loopback.

The same services as docker-compose.yml, with the same variable names: addresses, ports and
credentials are read from `.env`; nothing here names a host, port or secret.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from dotenv import dotenv_values

from localstack.proc import CACHE, DATA, LOGS, ROOT, STATE, Service, StackError, run

ENV_FILE = Path(os.environ.get("DISKRISK_ENV_FILE", ROOT / ".env"))
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
HBASE_LIB = CACHE / "hbase-2.6.1" / "lib"
MINIO_BIN = CACHE / "bin" / "minio"
VENV_BIN = Path(sys.executable).parent
# Not a root process: PostgreSQL refuses to run as root, and nothing else needs it.
SERVICE_USER = os.environ.get("DISKRISK_SERVICE_USER", "postgres")


# --- .env --------------------------------------------------------------------------------------
def _example_line(line: str) -> str:
    key, sep, value = line.partition("=")
    if sep and not line.lstrip().startswith("#"):
        if value == "__generate__":
            value = secrets.token_hex(16)
        elif value == "__generate_fernet__":
            value = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return f"{key}{sep}{value}" if sep else line


def ensure_env() -> Path:
    """Create `.env` from `.env.example` with fresh random secrets, once; later, append the
    variables a newer `.env.example` added (values and secrets of existing ones are kept)."""
    example = (ROOT / ".env.example").read_text().splitlines()
    if not ENV_FILE.exists():
        ENV_FILE.write_text("\n".join(_example_line(line) for line in example) + "\n")
        ENV_FILE.chmod(0o600)
        return ENV_FILE
    have = set(dotenv_values(ENV_FILE))
    added = [
        _example_line(line)
        for line in example
        if "=" in line and not line.lstrip().startswith("#") and line.split("=")[0] not in have
    ]
    if added:
        names = ", ".join(a.split("=")[0] for a in added)
        print(f"{ENV_FILE}: added {names} from .env.example", file=sys.stderr)
        with ENV_FILE.open("a") as f:
            f.write("\n# added from .env.example\n" + "\n".join(added) + "\n")
    return ENV_FILE


def env() -> dict[str, str]:
    """Settings: the process environment wins over `.env`."""
    values = {k: v for k, v in dotenv_values(ensure_env()).items() if v is not None}
    values.update({k: v for k, v in os.environ.items() if k in values})
    return values


def _hostport(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise StackError(f"{url!r} must name a host and a port")
    return parts.hostname, parts.port


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return 200 <= resp.status < 300


def _owned_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(path, SERVICE_USER, SERVICE_USER)
    return path


# --- PostgreSQL ----------------------------------------------------------------------------------
def postgres(e: dict[str, str]) -> Service:
    data = DATA / "postgres"
    host, port = e["POSTGRES_HOST"], int(e["POSTGRES_PORT"])

    def prepare() -> None:
        _owned_dir(STATE / "data")
        if (data / "PG_VERSION").exists():
            return
        _owned_dir(data)
        pwfile = STATE / "run" / "pg.pw"
        pwfile.write_text(e["POSTGRES_PASSWORD"])
        if os.geteuid() == 0:
            shutil.chown(pwfile, SERVICE_USER, SERVICE_USER)
        try:
            run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    e["POSTGRES_USER"],
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                ],
                user=SERVICE_USER,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def after() -> None:
        import psycopg2

        conn = psycopg2.connect(
            host=host,
            port=port,
            user=e["POSTGRES_USER"],
            password=e["POSTGRES_PASSWORD"],
            dbname="postgres",
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            for app in ("AIRFLOW", "MLFLOW"):
                user, pw, db = e[f"{app}_DB_USER"], e[f"{app}_DB_PASSWORD"], e[f"{app}_DB_NAME"]
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname=%s", (user,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(f'{verb} ROLE "{user}" LOGIN PASSWORD %s', (pw,))
                for name in (db, f"{db}_auth") if app == "MLFLOW" else (db,):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,))
                    if not cur.fetchone():
                        cur.execute(f'CREATE DATABASE "{name}" OWNER "{user}"')
                    # Only its owner may connect (PUBLIC may by default).
                    cur.execute(f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC')
        conn.close()

    return Service(
        name="postgres",
        argv=[
            str(PG_BIN / "postgres"),
            "-D",
            str(data),
            "-h",
            host,
            "-p",
            str(port),
            "-k",
            str(_owned_dir(STATE / "run" / "pgsock")),
        ],
        # accepting connections, not only listening: one in crash recovery refuses logins
        ready=lambda: _pg_accepting(host, port),
        prepare=prepare,
        after=after,
        user=SERVICE_USER,
        timeout=60,
    )


def _pg_accepting(host: str, port: int) -> bool:
    probe = [str(PG_BIN / "pg_isready"), "-q", "-h", host, "-p", str(port)]
    return subprocess.run(probe, check=False, timeout=10).returncode == 0


def pg_url(e: dict[str, str], app: str, db: str | None = None) -> str:
    return (
        f"postgresql+psycopg2://{e[f'{app}_DB_USER']}:{e[f'{app}_DB_PASSWORD']}"
        f"@{e['POSTGRES_HOST']}:{e['POSTGRES_PORT']}/{db or e[f'{app}_DB_NAME']}"
    )


# --- S3 (MinIO) ----------------------------------------------------------------------------------
def s3(e: dict[str, str]) -> Service:
    host, port = _hostport(e["S3_ENDPOINT_URL"])

    def after() -> None:
        run([str(VENV_BIN / "diskrisk"), "init", "s3"], env={"DISKRISK_ENV_FILE": str(ENV_FILE)})

    return Service(
        name="s3",
        argv=[
            str(MINIO_BIN),
            "server",
            str(DATA / "minio"),
            "--address",
            f"{host}:{port}",
            "--console-address",
            e["S3_CONSOLE_ADDRESS"],
            "--quiet",
        ],
        env={
            "MINIO_ROOT_USER": e["MINIO_ROOT_USER"],
            "MINIO_ROOT_PASSWORD": e["MINIO_ROOT_PASSWORD"],
            "MINIO_BROWSER_REDIRECT": "off",
            "MINIO_UPDATE": "off",
        },
        ready=lambda: _http_ok(f"{e['S3_ENDPOINT_URL'].rstrip('/')}/minio/health/ready"),
        after=after,
        timeout=60,
    )


# --- HBase standalone + Thrift ---------------------------------------------------------------------
# The options HBase's launcher passes on JDK 17 (hbase-surefire.jdk17.flags in HBase's pom).
JDK17_OPTS = [
    "-Dorg.apache.hbase.thirdparty.io.netty.tryReflectionSetAccessible=true",
    "--add-modules",
    "jdk.unsupported",
    "--add-opens",
    "java.base/java.io=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.nio=ALL-UNNAMED",
    "--add-opens",
    "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang=ALL-UNNAMED",
    "--add-opens",
    "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util=ALL-UNNAMED",
    "--add-opens",
    "java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-exports",
    "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports",
    "java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-exports",
    "java.base/sun.net.dns=ALL-UNNAMED",
    "--add-exports",
    "java.base/sun.net.util=ALL-UNNAMED",
]


def _hbase_conf(e: dict[str, str]) -> Path:
    """Render hbase-site.xml from hbase/hbase-site.xml.in with the ports of `.env`."""
    conf = STATE / "hbase" / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    values = {
        **e,
        "HBASE_ROOTDIR": f"file://{DATA / 'hbase'}",
        "HBASE_ZK_DATADIR": str(DATA / "hbase-zk"),
        "HBASE_TMPDIR": str(STATE / "hbase" / "tmp"),
        "HBASE_BIND_HOST": e["HBASE_THRIFT_HOST"],
    }
    template = (ROOT / "hbase" / "hbase-site.xml.in").read_text()
    for key, value in values.items():
        template = template.replace("${" + key + "}", value)
    (conf / "hbase-site.xml").write_text(template)
    shutil.copy(ROOT / "hbase" / "log4j2.properties", conf / "log4j2.properties")
    return conf


def _java(conf: Path, heap: str, main: str, *args: str) -> list[str]:
    return [
        "java",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        # GC pauses next to the service's log: JVM pauses are what expire ZooKeeper sessions.
        f"-Xlog:gc:file={LOGS / main.rsplit('.', 1)[-1]}-gc.log:time,uptime:filecount=2,filesize=10m",
        *JDK17_OPTS,
        f"-Dhbase.log.dir={LOGS}",
        "-Dhbase.root.logger=INFO,console",
        f"-Dlog4j2.configurationFile={conf / 'log4j2.properties'}",
        "-cp",
        f"{conf}:{HBASE_LIB}/*",
        main,
        *args,
    ]


def _hbase_master_initialized(e: dict[str, str]) -> bool:
    """The info server answers before the master can create tables; wait for the latter."""
    url = (
        f"http://{e['HBASE_THRIFT_HOST']}:{e['HBASE_MASTER_INFO_PORT']}/jmx"
        "?qry=Hadoop:service=HBase,name=Master,sub=Server"
    )
    with urllib.request.urlopen(url, timeout=3) as resp:
        beans = json.load(resp)["beans"]
    return (
        bool(beans)
        and beans[0].get("masterFinishedInitializationTime", 0) > 0
        and beans[0].get("numRegionServers", 0) >= 1
    )


def hbase(e: dict[str, str]) -> Service:
    conf = STATE / "hbase" / "conf"
    return Service(
        name="hbase",
        # Master, region server and ZooKeeper share this heap: with 1g, writing and serving a
        # 300k-drive day paused the JVM for 4 s at a time until ZooKeeper expired the master.
        argv=_java(conf, "2g", "org.apache.hadoop.hbase.master.HMaster", "start"),
        prepare=lambda: _hbase_conf(e) and None,
        ready=lambda: _hbase_master_initialized(e),
        timeout=180,
    )


def hbase_thrift(e: dict[str, str]) -> Service:
    conf = STATE / "hbase" / "conf"
    host, port = e["HBASE_THRIFT_HOST"], int(e["HBASE_THRIFT_PORT"])

    def ready() -> bool:
        import happybase

        conn = happybase.Connection(host=host, port=port, timeout=5000)
        try:
            conn.tables()
            return True
        finally:
            conn.close()

    return Service(
        name="hbase-thrift",
        argv=_java(
            conf,
            "512m",
            "org.apache.hadoop.hbase.thrift.ThriftServer",
            "-b",
            host,
            "-p",
            str(port),
            "--infoport",
            e["HBASE_THRIFT_INFO_PORT"],
            "start",
        ),
        prepare=lambda: _hbase_conf(e) and None,
        ready=ready,
        timeout=120,
    )


# --- MLflow tracking server --------------------------------------------------------------------------
def mlflow(e: dict[str, str]) -> Service:
    host, port = _hostport(e["MLFLOW_TRACKING_URI"])
    auth_ini = STATE / "mlflow" / "basic_auth.ini"

    def prepare() -> None:
        auth_ini.parent.mkdir(parents=True, exist_ok=True)
        run(
            [sys.executable, str(ROOT / "mlflow" / "render_auth_config.py"), str(auth_ini)],
            env={"MLFLOW_AUTH_DATABASE_URI": pg_url(e, "MLFLOW", f"{e['MLFLOW_DB_NAME']}_auth")},
        )

    def after() -> None:
        run(
            [str(VENV_BIN / "diskrisk"), "init", "mlflow"], env={"DISKRISK_ENV_FILE": str(ENV_FILE)}
        )

    return Service(
        name="mlflow",
        argv=[
            str(VENV_BIN / "mlflow"),
            "server",
            "--app-name",
            "basic-auth",
            "--backend-store-uri",
            pg_url(e, "MLFLOW"),
            "--artifacts-destination",
            f"s3://{e['MLFLOW_ARTIFACTS_BUCKET']}/",
            "--serve-artifacts",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env={
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
            "MLFLOW_AUTH_ADMIN_USERNAME": e["MLFLOW_AUTH_ADMIN_USERNAME"],
            "MLFLOW_AUTH_ADMIN_PASSWORD": e["MLFLOW_AUTH_ADMIN_PASSWORD"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": e["MLFLOW_FLASK_SERVER_SECRET_KEY"],
            "MLFLOW_S3_ENDPOINT_URL": e["S3_ENDPOINT_URL"],
            "AWS_ACCESS_KEY_ID": e["MLFLOW_S3_ACCESS_KEY"],
            "AWS_SECRET_ACCESS_KEY": e["MLFLOW_S3_SECRET_KEY"],
            "AWS_DEFAULT_REGION": e["S3_REGION"],
            "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true"),
        },
        prepare=prepare,
        after=after,
        ready=lambda: _http_ok(f"{e['MLFLOW_TRACKING_URI'].rstrip('/')}/health"),
        timeout=180,
    )


# --- Airflow 3 ---------------------------------------------------------------------------------------
# What the pipeline reads per run. Airflow's processes do not inherit these from whoever ran
# `scripts/stack up` (e.g. `BACKBLAZE_SOURCE=... make demo`): their tasks read them from `.env`
# (DISKRISK_ENV_FILE), so the scheduler sees what `.env` says now, not a shell's leftovers.
PIPELINE_VARS = (
    "BACKBLAZE_SOURCE",
    "DISKRISK_SCHEDULE",
    "DISKRISK_ALERT_WEBHOOK",
    "DISKRISK_LAKE_PREFIX",
    "DISKRISK_MODEL_NAME",
    "DISKRISK_EXPERIMENT",
    "DISKRISK_HBASE_NAMESPACE",
    "DISKRISK_TRAIN_",
    "DISKRISK_PROMOTION_",
    "DISKRISK_DRIFT_",
)


def airflow_env(e: dict[str, str]) -> dict[str, str]:
    home = STATE / "airflow"
    api = e["AIRFLOW_API_URL"].rstrip("/")
    host, port = _hostport(api)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url(e, "AIRFLOW"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__FERNET_KEY": e["AIRFLOW__CORE__FERNET_KEY"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{e['AIRFLOW_ADMIN_USERNAME']}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": e["AIRFLOW__API_AUTH__JWT_SECRET"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(LOGS / "airflow"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "DISKRISK_ENV_FILE": str(ENV_FILE),
    }


def airflow_migrate(e: dict[str, str]) -> None:
    ae = airflow_env(e)
    home = Path(ae["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    pw = home / "passwords.json"
    pw.write_text(json.dumps({e["AIRFLOW_ADMIN_USERNAME"]: e["AIRFLOW_ADMIN_PASSWORD"]}))
    pw.chmod(0o600)
    run([str(VENV_BIN / "airflow"), "db", "migrate"], env=ae)


def airflow_api(e: dict[str, str]) -> Service:
    api = e["AIRFLOW_API_URL"].rstrip("/")
    return Service(
        name="airflow-api-server",
        argv=[str(VENV_BIN / "airflow"), "api-server"],
        env=airflow_env(e),
        prepare=lambda: airflow_migrate(e),
        ready=lambda: _http_ok(f"{api}/api/v2/monitor/health"),
        timeout=300,
        scrub=PIPELINE_VARS,
    )


def airflow_component(e: dict[str, str], component: str) -> Service:
    """Scheduler, dag-processor and triggerer have no port: ready once the API reports the
    component's heartbeat healthy and the process has stayed up a few seconds (a heartbeat
    of the process a restart replaced is healthy for a while too)."""
    health = f"{e['AIRFLOW_API_URL'].rstrip('/')}/api/v2/monitor/health"
    key = component.replace("-", "_")

    def ready() -> bool:
        with urllib.request.urlopen(health, timeout=5) as resp:
            return bool(json.load(resp)[key]["status"] == "healthy")

    return Service(
        name=f"airflow-{component}",
        argv=[str(VENV_BIN / "airflow"), component],
        env=airflow_env(e),
        ready=ready,
        timeout=120,
        scrub=PIPELINE_VARS,
        restart=True,
        min_uptime=10,
    )


def risk_api(e: dict[str, str]) -> Service:
    """``diskrisk serve``: reads `.env` itself, like the Airflow tasks."""
    url = e["DISKRISK_SERVE_URL"].rstrip("/")
    return Service(
        name="risk-api",
        argv=[str(VENV_BIN / "diskrisk"), "serve"],
        env={"DISKRISK_ENV_FILE": str(ENV_FILE)},
        ready=lambda: _http_ok(f"{url}/livez"),
        timeout=120,
        scrub=PIPELINE_VARS,
    )


def all_services() -> list[Service]:
    """In start order; `down` stops them in reverse."""
    e = env()
    return [
        postgres(e),
        s3(e),
        hbase(e),
        hbase_thrift(e),
        mlflow(e),
        airflow_api(e),
        airflow_component(e, "scheduler"),
        airflow_component(e, "dag-processor"),
        airflow_component(e, "triggerer"),
        risk_api(e),
    ]
