"""The Compose deployment, for real: `docker compose up` on a Docker engine, used as people use it.

`make test-deploy` (part of `make test`) builds the images without a registry
(`scripts/images`), then this module:

* starts the default profile with `up -d --wait` and checks that only the three UIs are
  published, on loopback, and that each refuses anonymous requests;
* puts seeded Backblaze-format days in the data volume and triggers the DAG through the REST API
  exactly as the UI does (no logical date; params start/end/families): the running scheduler
  runs it to success and the champion alias is read through MLflow's REST API with the
  pipeline's user;
* triggers again with the UI's default form (no params): the run catches up the new days and
  scores the newest one, read back from HBase;
* kills `hbase-thrift` before a run reaches `score`: the task fails, is retried by the scheduler
  once the gateway is back, and the run succeeds;
* `down` + `up` again (volumes kept) with the `celery` profile and two workers: champion, lake,
  scores and the Airflow history are still there, and a retraining run's mapped tasks run on
  both workers.

Everything runs against the real services in containers; nothing is faked. The deployment gets
its own project name, env file and published addresses, so it never meets the local stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from dotenv import dotenv_values

from diskrisk.airflow_api import AirflowClient

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.deploy, pytest.mark.slow]

PROJECT = os.environ.get("DISKRISK_DEPLOY_PROJECT", "diskrisk-deploytest")
DAG_ID = "diskrisk_pipeline"
FAMILIES = ["coxph", "km"]
# Seeded synthetic days: staged in the data volume, moved into the source folder run by run.
DAYS_DIR = "/opt/airflow/data/staged"
SOURCE_DIR = "/opt/airflow/data/backblaze"
N_DAYS, FIRST_RUN_DAYS, SECOND_RUN_DAYS = 40, 30, 5
START = "2024-01-01"
# Addresses on the host, apart from the local stack's.
PUBLISHED = {
    "AIRFLOW_UI_ADDRESS": "127.0.0.1:18280",
    "MLFLOW_UI_ADDRESS": "127.0.0.1:15500",
    "S3_CONSOLE_ADDRESS": "127.0.0.1:19101",
    "RISK_API_ADDRESS": "127.0.0.1:18300",
}
RUN_TIMEOUT = 1800


def day(i: int) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(START) + timedelta(days=i)).isoformat()


@dataclass
class Deployment:
    env_file: Path
    env: dict[str, str]
    profiles: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _client: AirflowClient | None = None

    def compose(self, *args: str, check: bool = True, timeout: float = 1200) -> str:
        cmd = [str(ROOT / "scripts" / "compose"), "--project-name", PROJECT]
        cmd += ["--env-file", str(self.env_file)]
        for p in self.profiles:
            cmd += ["--profile", p]
        res = subprocess.run(
            [*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and res.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
        return res.stdout

    def up(self, *args: str) -> float:
        t0 = time.monotonic()
        self.compose("up", "-d", "--wait", "--wait-timeout", "900", *args, timeout=1000)
        return time.monotonic() - t0

    def exec(self, *args: str, service: str = "airflow-scheduler") -> str:
        return self.compose("exec", "-T", service, *args)

    def py(self, code: str) -> Any:
        """Run Python in the scheduler container (inside the internal network) and parse its
        last output line as JSON."""
        out = self.exec("python", "-c", code)
        return json.loads(out.strip().splitlines()[-1])

    # --- the UIs' own HTTP APIs, from the host through the published ports ---------------------
    @property
    def airflow(self) -> str:
        return f"http://{PUBLISHED['AIRFLOW_UI_ADDRESS']}"

    @property
    def mlflow(self) -> str:
        return f"http://{PUBLISHED['MLFLOW_UI_ADDRESS']}"

    @property
    def client(self) -> AirflowClient:
        """The project's REST client (the one `diskrisk trigger` uses), on the published UI."""
        if self._client is None:
            self._client = AirflowClient(
                self.airflow,
                self.env["AIRFLOW_ADMIN_USERNAME"],
                self.env["AIRFLOW_ADMIN_PASSWORD"],
                timeout=60,
            )
        return self._client

    def unpause(self) -> None:
        self.client.wait_for_dag(DAG_ID, timeout=600)  # parsed some seconds after start
        self.client.set_paused(False, DAG_ID)

    def runs(self) -> list[dict[str, Any]]:
        return self.client.runs(DAG_ID)

    def trigger(self, conf: dict[str, Any]) -> str:
        """What the UI's trigger form sends: no logical date, the params as conf."""
        self.unpause()
        run = self.client.trigger(conf, DAG_ID)
        assert run["logical_date"] is None
        return str(run["dag_run_id"])

    def task_instances(self, run_id: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for ti in self.client.task_instances(run_id, DAG_ID):
            key = ti["task_id"] + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else "")
            out[key] = ti
        return out

    def wait(self, run_id: str, until: Any = None) -> str:
        """Poll the run (as the UI's grid does) until it ends or `until(task_instances)` holds."""
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            state = self.client.run(run_id, DAG_ID)["state"]
            if state in {"success", "failed"}:
                return str(state)
            if until is not None and until(self.task_instances(run_id)):
                return "condition"
            time.sleep(10)
        raise AssertionError(f"run {run_id} did not finish in {RUN_TIMEOUT}s")

    def assert_success(self, run_id: str) -> dict[str, dict[str, Any]]:
        t0 = time.monotonic()
        state = self.wait(run_id)
        self.timings[run_id] = time.monotonic() - t0
        tis = self.task_instances(run_id)
        summary = {k: v["state"] for k, v in tis.items()}
        assert state == "success", f"run {run_id} {state}: {summary}\n{self.task_logs(run_id, tis)}"
        return tis

    def task_logs(self, run_id: str, tis: dict[str, dict[str, Any]]) -> str:
        return "\n".join(
            f"--- {key} ---\n"
            + self.client.task_log(
                run_id, ti["task_id"], max(ti["try_number"], 1), map_index=ti.get("map_index", -1)
            )[-4000:]
            for key, ti in tis.items()
            if ti["state"] in {"failed", "up_for_retry"}
        )

    def champion(self) -> dict[str, Any]:
        """The champion alias through MLflow's REST API, as the pipeline's user."""
        resp = requests.get(
            f"{self.mlflow}/api/2.0/mlflow/registered-models/alias",
            params={
                "name": self.env.get("DISKRISK_MODEL_NAME", "diskrisk-failure-risk"),
                "alias": "champion",
            },
            auth=(self.env["MLFLOW_TRACKING_USERNAME"], self.env["MLFLOW_TRACKING_PASSWORD"]),
            timeout=30,
        )
        assert resp.ok, f"champion alias: {resp.status_code} {resp.text[:500]}"
        mv = resp.json()["model_version"]
        mv["tags"] = {t["key"]: t["value"] for t in mv.get("tags", [])}
        return dict(mv)

    def scores(self, day_: str) -> dict[str, Any] | None:
        """The completion marker of a scored day, read from HBase through the Thrift gateway."""
        code = (
            "import json; from diskrisk.sinks import HBaseSink; "
            f"m = HBaseSink().completed({day_!r}); print(json.dumps(m, default=str))"
        )
        return self.py(code)  # type: ignore[no-any-return]

    def stage_days(self, first: int, count: int) -> None:
        names = " ".join(f"{DAYS_DIR}/{day(i)}.csv" for i in range(first, first + count))
        self.exec("sh", "-c", f"cp {names} {SOURCE_DIR}/")


def _env_file(tmp: Path) -> Path:
    """A fresh .env for the deployment: .env.example with new secrets (the local stack's
    generator), its own published addresses and the data folder inside the containers."""
    path = tmp / "deploy.env"
    subprocess.run(
        [str(ROOT / "scripts" / "stack"), "env"],
        env={**os.environ, "DISKRISK_ENV_FILE": str(path)},
        check=True,
        capture_output=True,
    )
    overrides = {**PUBLISHED, "BACKBLAZE_SOURCE": SOURCE_DIR}
    lines = []
    for line in path.read_text().splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={overrides.pop(key)}" if key in overrides else line)
    lines += [f"{k}={v}" for k, v in overrides.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory):
    env_file = _env_file(tmp_path_factory.mktemp("deploy"))
    dep = Deployment(env_file, {k: v or "" for k, v in dotenv_values(env_file).items()})
    out = ROOT / "out" / "deploy"
    out.mkdir(parents=True, exist_ok=True)
    dep.profiles = ["celery"]
    dep.compose("down", "--volumes", "--remove-orphans", check=False)  # leftovers of a killed run
    dep.profiles = []
    try:
        dep.timings["up (default profile)"] = dep.up()
        yield dep
    finally:
        (out / "ps.txt").write_text(dep.compose("ps", "--all", check=False))
        (out / "compose.log").write_text(
            dep.compose("logs", "--no-color", "--timestamps", check=False, timeout=300)
        )
        (out / "timings.json").write_text(json.dumps(dep.timings, indent=2))
        print("deployment timings (s):", json.dumps(dep.timings, indent=2))
        dep.profiles = ["celery"]
        dep.compose("down", "--volumes", "--remove-orphans", check=False)


def test_only_the_uis_are_published_on_loopback_and_refuse_anonymous_requests(deployment):
    published = set()
    for line in deployment.compose("ps", "--format", "json").splitlines():
        svc = json.loads(line)
        for pub in svc.get("Publishers") or []:
            if pub.get("PublishedPort"):
                published.add((svc["Service"], pub["URL"], pub["PublishedPort"], pub["TargetPort"]))
    want = {
        ("airflow-apiserver", "127.0.0.1", 18280, 8080),
        ("mlflow", "127.0.0.1", 15500, 5000),
        ("minio", "127.0.0.1", 19101, 9001),
        ("risk-api", "127.0.0.1", 18300, 8300),
    }
    assert published == want
    anonymous = {
        f"{deployment.airflow}/api/v2/dags": {401, 403},
        f"{deployment.mlflow}/api/2.0/mlflow/experiments/search?max_results=1": {401},
        f"http://{PUBLISHED['S3_CONSOLE_ADDRESS']}/api/v1/buckets": {401, 403},
        f"http://{PUBLISHED['RISK_API_ADDRESS']}/api/v1/drives": {401},
    }
    for url, refused in anonymous.items():
        assert requests.get(url, timeout=30).status_code in refused, url


def test_unpausing_schedules_a_run_for_today_that_ends_cleanly_without_data(deployment):
    """The scheduled run that unpausing creates finds no day to collect in the (still empty)
    source folder: skipped, not failed. The seeded days wait in a staging folder."""
    code = (
        "import json, subprocess; subprocess.run(['diskrisk', 'synth', '--era', '2013', "
        f"'--drives', '10000', '--days', '{N_DAYS}', '--start', '{START}', '--seed', '11', "
        f"'--out', '{DAYS_DIR}'], check=True, capture_output=True); print(json.dumps(0))"
    )
    deployment.py(code)
    deployment.exec("mkdir", "-p", SOURCE_DIR)
    deployment.unpause()
    deadline = time.monotonic() + 300
    while not (scheduled := [r for r in deployment.runs() if r["run_type"] == "scheduled"]):
        assert time.monotonic() < deadline, "unpausing created no scheduled run"
        time.sleep(5)
    tis = deployment.assert_success(scheduled[0]["dag_run_id"])
    assert tis["window"]["state"] == "skipped"
    assert {ti["state"] for ti in tis.values()} == {"skipped"}


def test_ui_trigger_with_params_trains_the_first_champion(deployment):
    deployment.stage_days(0, FIRST_RUN_DAYS)
    run_id = deployment.trigger(
        {"start": day(0), "end": day(FIRST_RUN_DAYS - 1), "families": FAMILIES}
    )
    tis = deployment.assert_success(run_id)
    assert tis["promote"]["state"] == "success"
    champion = deployment.champion()
    assert champion["tags"]["promotion.decision"] == "promoted"
    assert champion["tags"]["family"] in FAMILIES
    marker = deployment.scores(day(FIRST_RUN_DAYS - 1))
    assert marker is not None and int(marker["rows"]) > 9000


def test_default_trigger_catches_up_new_days_and_scores_the_newest(deployment):
    deployment.stage_days(FIRST_RUN_DAYS, SECOND_RUN_DAYS)
    newest = day(FIRST_RUN_DAYS + SECOND_RUN_DAYS - 1)
    assert deployment.scores(newest) is None
    tis = deployment.assert_success(deployment.trigger({}))
    assert tis["score"]["state"] == "success"
    marker = deployment.scores(newest)
    assert marker is not None and int(marker["rows"]) > 9000
    champion = str(deployment.champion()["version"])
    assert str(marker["model_version"]) == champion
    # The risk service reads the same scores through its published port, with the champion
    # it follows by alias (polled every DISKRISK_SERVE_POLL_SECONDS).
    api = f"http://{PUBLISHED['RISK_API_ADDRESS']}"
    auth = (deployment.env["DISKRISK_SERVE_USERNAME"], deployment.env["DISKRISK_SERVE_PASSWORD"])
    deadline = time.monotonic() + 120
    while True:
        r = requests.get(f"{api}/api/v1/drives", params={"top": 5}, auth=auth, timeout=30)
        if r.status_code == 200 and r.headers.get("X-Model-Version") == champion:
            break
        assert time.monotonic() < deadline, f"risk API: {r.status_code} {r.headers} {r.text}"
        time.sleep(5)
    top = r.json()
    assert top["day"] == newest and len(top["drives"]) == 5
    risks = [d["risk"] for d in top["drives"]]
    assert risks == sorted(risks, reverse=True)
    serial = top["drives"][0]["serial_number"]
    one = requests.get(f"{api}/api/v1/drives/{serial}", auth=auth, timeout=30).json()
    assert one["latest"]["data_date"] == newest and len(one["history"]) >= 2
    assert requests.get(f"{api}/readyz", timeout=30).json()["ready"] is True
    assert "riskiest" in requests.get(f"{api}/", auth=auth, timeout=30).text.lower()


def test_a_task_that_loses_hbase_is_retried_and_the_run_succeeds(deployment):
    first = FIRST_RUN_DAYS + SECOND_RUN_DAYS
    deployment.stage_days(first, N_DAYS - first)
    newest = day(N_DAYS - 1)
    deployment.compose("kill", "hbase-thrift")
    try:
        run_id = deployment.trigger({})
        state = deployment.wait(
            run_id, until=lambda tis: tis.get("score", {}).get("state") == "up_for_retry"
        )
        assert state == "condition", f"score never failed without HBase (run {state})"
    finally:
        deployment.compose("start", "hbase-thrift")
    tis = deployment.assert_success(run_id)
    assert tis["score"]["try_number"] >= 2
    marker = deployment.scores(newest)
    assert marker is not None and int(marker["rows"]) > 9000


def test_restart_keeps_state_and_celery_workers_share_the_training(deployment):
    champion = deployment.champion()
    runs_before = deployment.runs()
    deployment.compose("down")  # volumes kept
    deployment.profiles = ["celery"]
    # One task at a time per worker, so that queued tasks must spread over both.
    os.environ.update(
        AIRFLOW__CORE__EXECUTOR="CeleryExecutor", AIRFLOW__CELERY__WORKER_CONCURRENCY="1"
    )
    try:
        deployment.timings["up (celery, 2 workers, after down)"] = deployment.up(
            "--scale", "airflow-worker=2"
        )
        # state survived: Airflow history, champion, lake, scores
        runs_after = deployment.runs()
        assert {r["dag_run_id"] for r in runs_before} <= {r["dag_run_id"] for r in runs_after}
        assert deployment.champion()["version"] == champion["version"]
        lake_days = deployment.py(
            "import json; from diskrisk.pipeline import lake_days; print(json.dumps(lake_days()))"
        )
        assert lake_days == [day(i) for i in range(N_DAYS)]
        assert deployment.scores(day(N_DAYS - 1)) is not None
        # mapped training tasks spread over both workers: two families queued at once, one
        # task per worker, so each worker takes one
        tis = deployment.assert_success(
            deployment.trigger({"force_retrain": True, "families": FAMILIES})
        )
        trained = {k: v for k, v in tis.items() if k.startswith("train_and_evaluate[")}
        assert len(trained) == len(FAMILIES)
        assert len({ti["hostname"] for ti in trained.values()}) == 2, trained
    finally:
        os.environ.pop("AIRFLOW__CORE__EXECUTOR", None)
        os.environ.pop("AIRFLOW__CELERY__WORKER_CONCURRENCY", None)
