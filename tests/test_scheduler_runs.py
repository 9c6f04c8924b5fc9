"""The DAG as users run it: triggered through Airflow's REST API with no logical date and
executed by the local stack's running scheduler (not `airflow dags test`), over real 2013 days.

The scheduler was started without the pipeline settings in its environment; this module puts
them (the source, and a lake prefix, model name, experiment and HBase namespace of its own) only
into `.env` for its duration, so every task that finds its source proves `.env` reaches it.
The tests run in order: a range run trains the first champion, a run without dates catches up
the one remaining day, a third run finds nothing new and is skipped.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from scheduled import in_env_file, in_process, isolation, stack_pid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS = 17  # 2013-04-10 .. 2013-04-26: ~27 failures after the default cutoff (04-17)
FAMILIES = ["coxph", "km"]
RUN_TIMEOUT = 1200.0


@pytest.fixture(scope="module")
def client(stack_env):
    """Admin client; the DAG parsed, unpaused, and the run the scheduler makes on unpausing
    finished — before this module touches `.env`, so that run works on the user's settings."""
    from diskrisk.airflow_api import AirflowClient
    from diskrisk.cli_pipeline import ready_dag

    c = AirflowClient.from_settings()
    ready_dag(c)
    return c


@pytest.fixture(scope="module")
def isolated(client, backblaze_dir, tmp_path_factory):
    """A source of the first DAYS real days (symlinks: read in place) and isolation settings,
    written into `.env` only; `.env` is restored byte for byte afterwards."""
    pid = stack_pid("airflow-scheduler")
    scheduler_env = {
        line.split("=", 1)[0]
        for line in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
        if "=" in line
    }
    leaked = {"BACKBLAZE_SOURCE", "DISKRISK_LAKE_PREFIX", "DISKRISK_MODEL_NAME"} & scheduler_env
    assert not leaked, f"the scheduler's environment has {leaked}: restart it (scripts/stack)"

    source = tmp_path_factory.mktemp("source")
    days = sorted(backblaze_dir.glob("*.csv"))[:DAYS]
    for day in days:
        (source / day.name).symlink_to(day)
    tag = f"sched{uuid.uuid4().hex[:8]}"
    settings = {
        "BACKBLAZE_SOURCE": str(source),
        **isolation(tag),
        # a short window leaves a small holdout: let the first challenger become champion
        "DISKRISK_PROMOTION_MIN_EVENTS": "1",
    }
    with in_env_file(settings):
        yield {"tag": tag, "source": str(source), "days": [d.stem for d in days], **settings}


@pytest.fixture
def same_settings(isolated):
    """This process sees what the tasks saw."""
    with in_process(isolation(isolated["tag"])):
        yield isolated


def _run(client, conf: dict) -> tuple[dict, dict[str, str]]:
    from diskrisk.airflow_api import summarize

    run = client.trigger(conf)
    assert run["logical_date"] is None
    final = client.wait(run["dag_run_id"], timeout=RUN_TIMEOUT)
    states = summarize(client.task_instances(run["dag_run_id"]))
    return final, states


def test_rest_trigger_without_logical_date_runs_a_range_on_the_scheduler(client, same_settings):
    from diskrisk import lake, layout, s3
    from diskrisk.registry import CHAMPION, alias_version
    from diskrisk.sinks import HBaseSink
    from diskrisk.tracking import connect

    s = same_settings
    first, last = s["days"][0], s["days"][-2]
    families = [*FAMILIES, "ensemble"]
    run, states = _run(client, {"start": first, "end": last, "families": families})
    assert run["state"] == "success", states
    # the ensemble trains after the single families, and loads the coxph fits stored by theirs
    assert states["train_composites[0]"] == states["promote"] == "success", states
    log = client.task_log(run["dag_run_id"], "train_composites", map_index=0)
    assert "coxph: the fit on" in log and "coxnet: the fit on" not in log, log[-3000:]
    # promote removed them, every version
    listed = s3.client().list_object_versions(
        Bucket=s3.bucket(), Prefix=layout.datasets_root(s["DISKRISK_LAKE_PREFIX"])
    )
    assert not [v for v in listed.get("Versions", []) if layout.FITS in v["Key"]]
    assert run["run_type"] == "manual" and run["logical_date"] is None
    assert states["window"] == "success" and states["score"] == "success", states
    win = client.xcom(run["dag_run_id"], "window")
    assert win == {"source": s["source"], "start": first, "end": last, "mode": "range"}
    assert sorted(lake.read_manifest(s["DISKRISK_LAKE_PREFIX"])["days"]) == s["days"][:-1]
    champion = alias_version(connect(), s["DISKRISK_MODEL_NAME"], CHAMPION)
    assert champion is not None
    marker = HBaseSink().completed(last)
    assert marker is not None and str(marker["model_version"]) == str(champion.version)


def test_run_without_dates_catches_up_the_days_the_lake_lacks(client, same_settings):
    from diskrisk import lake
    from diskrisk.sinks import HBaseSink

    s = same_settings
    run, states = _run(client, {"families": FAMILIES})
    assert run["state"] == "success", states
    newest = s["days"][-1]
    win = client.xcom(run["dag_run_id"], "window")
    assert (win["start"], win["end"], win["mode"]) == (newest, newest, "catch-up")
    assert sorted(lake.read_manifest(s["DISKRISK_LAKE_PREFIX"])["days"]) == s["days"]
    assert HBaseSink().completed(newest) is not None


def test_run_without_dates_on_a_caught_up_lake_is_skipped_not_failed(client, same_settings):
    s = same_settings
    run, states = _run(client, {})
    assert run["state"] == "success", states
    assert set(states.values()) == {"skipped"}, states
    log = client.task_log(run["dag_run_id"], "window")
    assert "nothing new to collect" in log and s["source"] in log
    assert f"holds {s['days'][0]} .. {s['days'][-1]}" in log, log[-2000:]
