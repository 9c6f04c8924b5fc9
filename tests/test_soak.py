"""Soak (issue #14): the running scheduler works through consecutive daily intervals of
synthetic days as an Airflow backfill (one scheduled run per interval, each catching up its
day), with no failed run; the long-lived services' memory stays flat; at the end the lake,
registry and HBase agree (rows per day = manifest, one marker per scored day).

`.ci/run` runs DISKRISK_SOAK_INTERVALS=3 (the default: the history's catch-up, then three
daily runs); `make soak` runs 60 and prints the figures (run times, each service's resident
memory at the start and the end)."""

from __future__ import annotations

import os
import time
import uuid
from datetime import date, timedelta

import psutil
import pytest

from scheduled import (
    assert_lake_matches_manifest,
    assert_scored,
    in_env_file,
    in_process,
    isolation,
    stack_pid,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HISTORY, START, DRIVES = 14, date(2024, 8, 1), 3000  # enough failures to evaluate
FAMILIES = ["coxph", "coxnet"]  # km, the age-only reference, may refuse tiny synthetic fleets
SERVICES = (
    "postgres",
    "s3",
    "hbase",
    "hbase-thrift",
    "mlflow",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "risk-api",
)


def _rss_mb() -> dict[str, float]:
    """Resident memory of each local-stack service with its child processes."""
    out = {}
    for name in SERVICES:
        proc = psutil.Process(stack_pid(name))
        procs = [proc, *proc.children(recursive=True)]
        out[name] = sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
    return out


def test_backfill_through_the_schedule(stack_env, tmp_path_factory):
    from diskrisk import synth
    from diskrisk.airflow_api import AirflowClient, summarize
    from diskrisk.cli_pipeline import ready_dag
    from diskrisk.registry import CHAMPION, Registry

    intervals = int(os.environ.get("DISKRISK_SOAK_INTERVALS", "3"))
    client = AirflowClient.from_settings()
    ready_dag(client)
    source = tmp_path_factory.mktemp("soak")
    days = [p.stem for p in synth.write_days(source, "2013", DRIVES, HISTORY + intervals, START, 9)]
    settings = {
        "BACKBLAZE_SOURCE": str(source),
        **isolation(f"soak{uuid.uuid4().hex[:8]}"),
        "DISKRISK_PROMOTION_MIN_EVENTS": "1",
        "DISKRISK_TRAIN_N_BOOTSTRAP": "20",
    }
    with in_env_file(settings):
        # The first interval catches up the history (an empty lake: every day up to its date)
        # and trains the first champion; each later one collects its own day.
        lo, hi = days[HISTORY - 1], days[-1]
        before, t0 = _rss_mb(), time.monotonic()
        # "completed": intervals an earlier soak ran are run again, for this soak's settings
        client.backfill(lo, hi, {"families": FAMILIES}, reprocess="completed")
        deadline = time.monotonic() + 1800 + 600 * intervals
        while True:
            runs = client.backfill_runs(lo, hi)
            failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
            assert not failed, {f: summarize(client.task_instances(f)) for f in failed}
            if sum(r["state"] == "success" for r in runs) == intervals + 1:
                break
            assert time.monotonic() < deadline, [(r["logical_date"], r["state"]) for r in runs]
            time.sleep(5)
        elapsed, after = time.monotonic() - t0, _rss_mb()

        print(
            f"\nsoak: {intervals + 1} daily intervals (the first with {HISTORY} days of "
            f"history) in {elapsed / 60:.1f} min, {DRIVES} drives a day"
        )
        print(f"{'service':24} {'RSS start MB':>12} {'RSS end MB':>12}")
        for name in SERVICES:
            print(f"{name:24} {before[name]:12.0f} {after[name]:12.0f}")
        for name in SERVICES:  # flat: no service grew by more than half (+200 MB of warm-up)
            assert after[name] <= 1.5 * before[name] + 200, (name, before[name], after[name])

        with in_process(settings):
            assert_lake_matches_manifest(days)
            assert_scored(days[HISTORY - 1 :])
            assert Registry.connect().version(CHAMPION) is not None
        assert [r["logical_date"][:10] for r in runs] == [
            (date.fromisoformat(lo) + timedelta(days=i)).isoformat() for i in range(intervals + 1)
        ]
