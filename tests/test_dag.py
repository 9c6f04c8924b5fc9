"""The Airflow DAG: imports cleanly and cheaply, has the intended shape, and runs end to end on
the real local stack over the real 2013 Backblaze days."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "airflow" / "dags"
DAG_ID = "diskrisk_pipeline"


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dag_import_has_no_errors_and_no_heavy_imports():
    """Parsing happens every few seconds in the dag-processor: it must not import the ML stack
    or touch a service. Run in a fresh interpreter so other tests' imports don't hide it."""
    code = (
        "import sys, json, runpy\n"
        f"runpy.run_path({str(DAGS / 'diskrisk_pipeline.py')!r})\n"
        "heavy = [m for m in ('diskrisk.train', 'diskrisk.pipeline', 'mlflow', 'sksurv', "
        "'lifelines', 'evidently', 'happybase', 'boto3', 'duckdb') if m in sys.modules]\n"
        "print(json.dumps(heavy))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "MLFLOW_", "HBASE_"))}
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []


def test_dag_structure():
    bag = _dagbag()
    assert bag.import_errors == {}
    dag = bag.dags.get(DAG_ID)
    assert dag is not None
    up = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert up["collect"] == {"window"}
    assert up["build_lake"] == {"collect"}
    assert up["has_work"] == {"build_lake"}
    assert up["stats"] == {"has_work"} and up["drift"] == {"has_work"}
    assert up["retrain_or_score"] == {"drift"}
    assert up["dataset"] == {"retrain_or_score"}
    assert up["train_and_evaluate"] == {"dataset", "families"}
    assert up["composite_families"] == {"dataset"}
    assert up["train_composites"] == {"dataset", "composite_families", "train_and_evaluate"}
    assert up["promote"] == {"train_and_evaluate", "train_composites", "dataset"}
    assert up["score"] == {"build_lake", "retrain_or_score", "promote"}
    assert dag.task_dict["score"].trigger_rule == "none_failed_min_one_success"
    for task in dag.tasks:
        assert task.retries >= 2 and task.retry_exponential_backoff, task.task_id
        assert task.execution_timeout is not None, task.task_id
    assert set(dag.params) == {"start", "end", "force_retrain", "families"}


def test_params_are_validated(monkeypatch):
    from diskrisk.pipeline import run_window

    monkeypatch.setenv("BACKBLAZE_SOURCE", "/nonexistent")
    assert run_window({"start": "2013-04-10", "end": None}, "2013-05-01")["end"] == "2013-04-10"
    win = run_window({"start": "2013-04-10", "end": "2013-04-12"}, None, "2026-01-01T00:00:00Z")
    assert (win["start"], win["end"], win["mode"]) == ("2013-04-10", "2013-04-12", "range")
    with pytest.raises(ValueError, match="after end"):
        run_window({"start": "2013-05-02", "end": "2013-05-01"}, "2013-05-01")


def test_run_date_is_the_logical_date_else_run_after():
    """Airflow 3 runs triggered without a logical date have only run_after."""
    from datetime import date

    from diskrisk.pipeline import run_date

    assert run_date("2013-05-01T00:00:00+00:00", "2026-01-01T10:00:00Z") == date(2013, 5, 1)
    assert run_date(None, "2026-01-01T10:00:00Z") == date(2026, 1, 1)
    with pytest.raises(ValueError):
        run_date(None, None)


def test_catch_up_takes_the_source_days_after_the_lake_up_to_the_run_date():
    from datetime import date

    from diskrisk.pipeline import pending_days

    held = [date(2013, 4, d) for d in range(10, 20)]
    assert pending_days(held, None, date(2013, 4, 12)) == held[:3]  # empty lake: from the first
    assert pending_days(held, date(2013, 4, 15), date(2026, 1, 1)) == held[6:]
    assert pending_days(held, date(2013, 4, 19), date(2026, 1, 1)) == []  # nothing new
    assert pending_days(held, date(2013, 4, 15), date(2013, 4, 15)) == []  # not after the run


def test_no_params_and_no_source_is_a_skip_not_a_failure(monkeypatch, tmp_path):
    from diskrisk.config import ConfigError
    from diskrisk.pipeline import run_window

    monkeypatch.delenv("BACKBLAZE_SOURCE", raising=False)
    monkeypatch.setenv("DISKRISK_ENV_FILE", str(tmp_path / "absent.env"))
    win = run_window({}, None, "2026-01-01T00:00:00Z")
    assert win["start"] is None and "BACKBLAZE_SOURCE is not set" in win["skip"]
    with pytest.raises(ConfigError, match="BACKBLAZE_SOURCE"):  # an explicit range needs one
        run_window({"start": "2013-04-10"}, None, "2026-01-01T00:00:00Z")


# --- end to end on the real stack -------------------------------------------------------------------
def _dags_test(env: dict[str, str], logical_date: str, conf: dict) -> str:
    res = subprocess.run(
        [
            str(Path(sys.executable).parent / "airflow"),
            "dags",
            "test",
            DAG_ID,
            logical_date,
            "-c",
            json.dumps(conf),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "state=success" in out, out[-6000:]
    return out


@pytest.fixture
def dag_paused(stack_env):
    """`airflow dags test` runs the tasks in its own process; the running scheduler would also
    schedule the tasks of that run (with `.env`'s settings) if the DAG were unpaused."""
    from diskrisk.airflow_api import AirflowClient

    client = AirflowClient.from_settings()
    was_paused = client.wait_for_dag()["is_paused"]
    client.set_paused(True)
    client.settle()
    yield
    client.set_paused(was_paused)


@pytest.mark.integration
@pytest.mark.slow
def test_end_to_end_on_real_days(stack_env, backblaze_dir, monkeypatch, dag_paused):
    """First run trains the first champion; a later run with new days checks drift against it
    and scores the newest day; re-running the same dates changes nothing."""
    from localstack.services import airflow_env

    tag = f"e2e{uuid.uuid4().hex[:8]}"
    isolated = {
        "DISKRISK_LAKE_PREFIX": f"{tag}/",
        "DISKRISK_MODEL_NAME": f"{tag}-risk",
        "DISKRISK_EXPERIMENT": tag,
        "DISKRISK_HBASE_NAMESPACE": tag,
        "BACKBLAZE_SOURCE": str(backblaze_dir),
    }
    env = {**os.environ, **airflow_env(stack_env), **isolated}
    families = ["coxph", "km"]
    _dags_test(
        env, "2013-05-04", {"start": "2013-04-10", "end": "2013-05-04", "families": families}
    )
    _dags_test(
        env, "2013-05-09", {"start": "2013-05-05", "end": "2013-05-09", "families": families}
    )

    for key, value in isolated.items():
        monkeypatch.setenv(key, value)
    from diskrisk import config, lake
    from diskrisk.registry import CHAMPION, alias_version
    from diskrisk.sinks import HBaseSink
    from diskrisk.tracking import connect

    config.cached.cache_clear()
    # lake complete: every real day, every row
    manifest = lake.read_manifest(f"{tag}/")["days"]
    assert len(manifest) == 30
    assert sum(d["rows"] for d in manifest.values()) == 648_339
    # a champion with its C-index
    client = connect()
    champion = alias_version(client, f"{tag}-risk", CHAMPION)
    assert champion is not None
    assert float(champion.tags["metrics.harrell_c"]) >= 0.80  # out-of-time, pooled over origins
    assert champion.tags["promotion.decision"] == "promoted"
    # every challenger says why it was or wasn't chosen, naming the out-of-time figures
    versions = client.search_model_versions(f"name='{tag}-risk'")
    by_family = {}
    for v in versions:
        tags = client.get_model_version(f"{tag}-risk", v.version).tags
        assert tags["promotion.decision"] in {"promoted", "refused", "not chosen"}, tags
        assert "out-of-time C" in tags["promotion.reason"], tags["promotion.reason"]
        assert tags.get("promotion.champion_c_index", "none") != ""
        assert 0 <= float(tags["metrics.oot_recall_top1pct"]) <= 1
        lo, hi = (float(x) for x in tags["metrics.oot_harrell_c_ci95"].split(".."))
        assert lo <= float(tags["metrics.harrell_c"]) <= hi
        assert (
            "Out-of-time evaluation"
            in client.get_model_version(f"{tag}-risk", v.version).description
        )
        by_family.setdefault(tags["family"], []).append(tags)
    assert all(t["promotion.decision"] == "not chosen" for t in by_family["km"])
    # a drift report from the second run, logged to MLflow
    import mlflow

    drift_runs = mlflow.search_runs(experiment_names=[f"{tag}-drift"])
    assert len(drift_runs) >= 1 and drift_runs.iloc[0]["tags.drift"] in {"true", "false"}
    # a score for every drive active on the last day
    sink = HBaseSink()
    marker = sink.completed("2013-05-09")
    assert marker is not None and int(marker["rows"]) == 21_645
    assert str(marker["model_version"]) == str(
        alias_version(client, f"{tag}-risk", CHAMPION).version
    )
    now = sink.top(100_000)  # "now": the drives of the newest scored day
    assert len(now) == 21_645 and set(now["data_date"].astype(str)) == {"2013-05-09"}
    # every drive's latest score also keeps drives last scored by the first run (since gone)
    assert len(sink.top(100_000, day="all")) > 21_645

    # running the same dates again changes nothing
    versions_before = len(client.search_model_versions(f"name='{tag}-risk'"))
    out = _dags_test(
        env, "2013-05-09", {"start": "2013-05-05", "end": "2013-05-09", "families": families}
    )
    assert "Returned value was: False" in out  # short-circuited: nothing new, nothing undone
    assert len(client.search_model_versions(f"name='{tag}-risk'")) == versions_before
    assert sink.completed("2013-05-09")["finished_at"] == marker["finished_at"]
    sink.drop_tables()


@pytest.mark.parametrize("champion", [None, "v7"])
def test_short_lake_skips_training_with_a_champion_and_fails_without(monkeypatch, champion):
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from diskrisk import pipeline
    from diskrisk.dataset import ShortLakeError

    def short(cutoff=None):
        raise ShortLakeError("3 lake days up to 2013-04-12 cannot hold 2 out-of-time windows")

    monkeypatch.setattr(pipeline, "dataset", short)
    monkeypatch.setattr(
        pipeline,
        "short_lake",
        lambda exc: None if champion is None else f"{exc}; champion {champion} keeps scoring",
    )
    task = _dagbag().dags["diskrisk_pipeline"].task_dict["dataset"]
    expected = AirflowFailException if champion is None else AirflowSkipException
    with pytest.raises(expected, match="cannot hold"):
        task.python_callable()


def test_a_challenger_without_failures_to_evaluate_still_returns_json():
    """No failure in the out-of-time windows leaves C undefined (NaN): the task result must
    still be JSON for Airflow's XCom (found by the soak), and promotion reads it back as NaN."""
    import json
    import math

    from diskrisk import pipeline

    result = {"family": "coxph", "harrell_c": math.nan, "metrics": {"oot_auc_4d": math.inf}}
    safe = pipeline._json_safe(result)
    assert json.loads(json.dumps(safe, allow_nan=False))["harrell_c"] is None
    assert math.isnan(pipeline._nan_if_none(safe["harrell_c"]))


@pytest.mark.parametrize(
    ("age_s", "down"), [(5, False), (25, True), (None, True)], ids=["fresh", "stale", "never"]
)
def test_a_wait_gives_up_once_the_schedulers_heartbeat_is_older_than_the_grace(age_s, down):
    from datetime import UTC, datetime, timedelta

    from diskrisk.airflow_api import AirflowClient, SchedulerDownError

    beat = None if age_s is None else datetime.now(UTC) - timedelta(seconds=age_s)

    class Answers(AirflowClient):  # the health endpoint's answer, as the API gives it
        def health(self):
            iso = beat and beat.isoformat().replace("+00:00", "Z")
            return {"scheduler": {"status": "unhealthy", "latest_scheduler_heartbeat": iso}}

    client = Answers("http://unused", "u", "p", scheduler_grace=20)
    if down:
        with pytest.raises(SchedulerDownError, match="more than 20s"):
            client.check_scheduler()
    else:
        client.check_scheduler()
