"""Services stopped in the middle of a DAG run that the running scheduler executes (issue #14):
the local stack's real MinIO, MLflow server, HBase master and PostgreSQL are stopped and
started again (`scripts/stack down|up`), never faked.

One run meets three faults in turn — MinIO down when ``build_lake`` runs, the MLflow server
down while the challengers train, the HBase master (standalone: with its region server and
ZooKeeper) down while ``score`` writes — and a second run loses PostgreSQL, the metadata
database of Airflow and MLflow. Each failed try is retried by the scheduler and the runs end in
success. Then nothing is lost or doubled: every lake object has exactly one version (no retry
rewrote one) and matches the manifest's digests and row counts, no training registered a second
version of its family and cutoff, and HBase holds one score per drive of the scored day, as its
marker says.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest

from scheduled import (
    assert_lake_matches_manifest,
    assert_scored,
    in_env_file,
    in_process,
    isolation,
    stack_pid,
    wait_for_task,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAYS, START, DRIVES = 14, date(2024, 5, 1), 1500
FAMILIES = ["coxph", "coxnet"]  # km, the age-only reference, may refuse tiny synthetic fleets
RUN_TIMEOUT = 1200.0
STACK = str(Path(__file__).resolve().parents[1] / "scripts" / "stack")


@contextmanager
def stopped(service: str) -> Iterator[None]:
    """The real process stopped for the block, then `make up`: it returns once every service
    answers healthy (a scheduler that exits a little later because it lost its database is
    started again by the stack's restart loop)."""
    subprocess.run([STACK, "down", service], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run([STACK, "up"], check=True, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def setup(stack_env, tmp_path_factory) -> Iterator[dict]:
    from diskrisk import synth
    from diskrisk.airflow_api import AirflowClient
    from diskrisk.cli_pipeline import ready_dag

    client = AirflowClient.from_settings()
    ready_dag(client)
    source = tmp_path_factory.mktemp("days")
    paths = synth.write_days(source, "2013", DRIVES, DAYS, START, 7)
    settings = {
        "BACKBLAZE_SOURCE": str(source),
        **isolation(f"svcfault{uuid.uuid4().hex[:8]}"),
        "DISKRISK_PROMOTION_MIN_EVENTS": "1",
        "DISKRISK_TRAIN_N_BOOTSTRAP": "20",
        # a lost HBase master fails the score task in ~1 min instead of ~5 (5 tries)
        "DISKRISK_HBASE_TIMEOUT_S": "10",
        # and a lost MLflow server fails the training in seconds instead of ~4 min (7 retries)
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    }
    with in_env_file(settings):
        yield {"client": client, "days": [p.stem for p in paths], "settings": settings}


def _tries(client, run_id: str) -> dict[str, int]:
    tries: dict[str, int] = {}
    for ti in client.task_instances(run_id):
        tries[ti["task_id"]] = max(tries.get(ti["task_id"], 0), ti["try_number"])
    return tries


def _finish(client, run_id: str) -> dict[str, int]:
    from diskrisk.airflow_api import summarize

    final = client.wait(run_id, timeout=RUN_TIMEOUT)
    assert final["state"] == "success", summarize(client.task_instances(run_id))
    return _tries(client, run_id)


def test_minio_mlflow_and_hbase_down_mid_run(setup):
    client, days = setup["client"], setup["days"]
    conf = {"start": days[0], "end": days[-3], "families": FAMILIES, "force_retrain": True}
    rid = client.trigger(conf)["dag_run_id"]

    wait_for_task(client, rid, "collect", {"success"}, RUN_TIMEOUT, poll=0.3)
    with stopped("s3"):
        wait_for_task(client, rid, "build_lake", {"up_for_retry"}, RUN_TIMEOUT)
    wait_for_task(client, rid, "dataset", {"success"}, RUN_TIMEOUT, poll=0.3)
    with stopped("mlflow"):
        wait_for_task(client, rid, "train_and_evaluate", {"up_for_retry"}, RUN_TIMEOUT)
    wait_for_task(client, rid, "promote", {"success"}, RUN_TIMEOUT, poll=0.3)
    with stopped("hbase"):
        wait_for_task(client, rid, "score", {"up_for_retry"}, RUN_TIMEOUT)

    tries = _finish(client, rid)
    assert tries["build_lake"] >= 2 and tries["train_and_evaluate"] >= 2, tries
    assert tries["score"] >= 2, tries
    with in_process(setup["settings"]):
        _assert_consistent(days[: DAYS - 2], training_runs=1)


def test_postgres_down_mid_run(setup):
    client, days = setup["client"], setup["days"]
    rid = client.trigger({"families": FAMILIES, "force_retrain": True})["dag_run_id"]
    wait_for_task(client, rid, "train_and_evaluate", {"running"}, RUN_TIMEOUT, poll=0.5)
    with stopped("postgres"):
        time.sleep(20)  # longer than a task heartbeat
    _finish(client, rid)
    with in_process(setup["settings"]):
        _assert_consistent(days, training_runs=2)


def test_a_stopped_scheduler_ends_the_wait_and_an_exited_one_comes_back(setup):
    """Waiting on a run nobody will execute fails within the client's grace, naming the
    scheduler, instead of at the run timeout; a scheduler that exits on its own is started
    again by the stack's restart loop (compose: `restart: unless-stopped`)."""
    import os
    import signal

    from diskrisk.airflow_api import AirflowClient, SchedulerDownError

    client = AirflowClient.from_settings()
    client.scheduler_grace = 20.0
    with stopped("airflow-scheduler"):
        rid = client.trigger({"families": FAMILIES})["dag_run_id"]
        t0 = time.monotonic()
        with pytest.raises(SchedulerDownError, match="scheduler"):
            client.wait(rid, timeout=RUN_TIMEOUT, poll=1.0)
        assert time.monotonic() - t0 < 120
        # the run must not start once the scheduler is back
        client.request("PATCH", f"/dags/diskrisk_pipeline/dagRuns/{rid}", {"state": "failed"})

    loop = stack_pid("airflow-scheduler")
    (first,) = _children(loop)
    os.kill(first, signal.SIGTERM)
    deadline = time.monotonic() + 180
    while _children(loop) in ([], [first]) or client.health()["scheduler"]["status"] != "healthy":
        assert time.monotonic() < deadline, "the scheduler was not started again"
        time.sleep(2)
    assert stack_pid("airflow-scheduler") == loop


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def _assert_consistent(days: list[str], training_runs: int) -> None:
    from diskrisk.registry import CHAMPION, Registry

    assert_lake_matches_manifest(days)
    assert_scored(days[-1:])
    registry = Registry.connect()
    registered = registry.client.search_model_versions(f"name = '{registry.name}'")
    made = [(v.tags["data.cutoff"], v.tags["family"]) for v in registered]
    assert len(made) == len(set(made)), f"a retried training registered twice: {sorted(made)}"
    assert len({cutoff for cutoff, _ in made}) == training_runs, made
    assert len({v.run_id for v in registered}) == len(registered)
    assert registry.version(CHAMPION) is not None
