"""Failures as the running scheduler handles them (issue #14), through Airflow's REST API:

1. a task whose source is missing fails its first try, is retried by the scheduler, and the run
   succeeds once the source is there;
2. a task that keeps failing exhausts its retries and the failure callback posts the alert to
   the webhook of `.env` (a real HTTP receiver on loopback) with the task, run and error;
   clearing the failed task (REST ``clearTaskInstances``) resumes the run to success.

Small seeded synthetic days keep each run short; `.env` gets this module's settings only for
its duration (as in test_scheduler_runs)."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from scheduled import in_env_file, isolation, wait_for_task

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAYS, START = 12, date(2024, 3, 1)
RUN_TIMEOUT = 900.0


class Receiver(http.server.BaseHTTPRequestHandler):
    posts: list[dict] = []  # noqa: RUF012 (shared by the server's handler instances)

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.posts.append(json.loads(body))
        self.send_response(200)
        self.end_headers()


@pytest.fixture(scope="module")
def webhook() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/alert"
    srv.shutdown()


@pytest.fixture(scope="module")
def setup(stack_env, webhook, tmp_path_factory) -> Iterator[dict]:
    from diskrisk import synth
    from diskrisk.airflow_api import AirflowClient
    from diskrisk.cli_pipeline import ready_dag

    client = AirflowClient.from_settings()
    ready_dag(client)
    staged = tmp_path_factory.mktemp("staged")
    paths = synth.write_days(staged, "2013", 1500, DAYS, START, 5)
    source = tmp_path_factory.mktemp("src") / "days"  # created by the tests, not yet
    settings = {
        "BACKBLAZE_SOURCE": str(source),
        **isolation(f"fault{uuid.uuid4().hex[:8]}"),
        "DISKRISK_ALERT_WEBHOOK": webhook,
        "DISKRISK_PROMOTION_MIN_EVENTS": "1",
        "DISKRISK_TRAIN_N_BOOTSTRAP": "20",
    }
    with in_env_file(settings):
        yield {"client": client, "source": source, "paths": paths, **settings}


def _provide(source: Path, paths: list[Path]) -> None:
    source.mkdir(parents=True, exist_ok=True)
    for p in paths:
        shutil.copy(p, source / p.name)


def _conf(paths: list[Path], lo: int, hi: int) -> dict:
    return {"start": paths[lo].stem, "end": paths[hi].stem, "families": ["km", "coxph"]}


def test_a_task_that_fails_once_is_retried_by_the_scheduler(setup):
    client = setup["client"]
    run = client.trigger(_conf(setup["paths"], 0, DAYS - 3))
    rid = run["dag_run_id"]
    wait_for_task(client, rid, "collect", {"up_for_retry"}, RUN_TIMEOUT)  # no source yet
    _provide(setup["source"], setup["paths"][: DAYS - 2])
    final = client.wait(rid, timeout=RUN_TIMEOUT)
    tis = {t["task_id"]: t for t in client.task_instances(rid)}
    assert final["state"] == "success", {k: v["state"] for k, v in tis.items()}
    assert tis["collect"]["try_number"] >= 2 and tis["score"]["state"] == "success"
    assert Receiver.posts == []  # a retried failure is not an alert


def test_a_task_that_keeps_failing_alerts_and_a_cleared_run_completes(setup):
    from diskrisk.airflow_api import DAG_ID

    client, paths = setup["client"], setup["paths"]
    for p in setup["source"].iterdir():  # the source vanishes for good
        p.unlink()
    setup["source"].rmdir()
    rid = client.trigger(_conf(paths, DAYS - 2, DAYS - 1))["dag_run_id"]
    final = client.wait(rid, timeout=RUN_TIMEOUT)
    assert final["state"] == "failed"
    ti = {t["task_id"]: t for t in client.task_instances(rid)}["collect"]
    assert ti["state"] == "failed" and ti["try_number"] == 3  # retries=2
    deadline = time.monotonic() + 60
    while not Receiver.posts:
        assert time.monotonic() < deadline, "no alert reached the webhook"
        time.sleep(1)
    (alert,) = Receiver.posts
    assert "diskrisk_pipeline.collect" in alert["text"] and rid in alert["text"]
    assert "No such file" in alert["text"] or "no such file" in alert["text"]

    _provide(setup["source"], paths)
    client.request(
        "POST",
        f"/dags/{DAG_ID}/clearTaskInstances",
        {
            "dag_run_id": rid,
            "task_ids": ["collect"],
            "only_failed": True,
            "dry_run": False,
            "include_downstream": True,
            "reset_dag_runs": True,
        },
    )
    resumed = client.wait(rid, timeout=RUN_TIMEOUT)
    states = {t["task_id"]: t["state"] for t in client.task_instances(rid)}
    assert resumed["state"] == "success", states
    assert states["score"] == "success"
