"""diskrisk: Backblaze days → lake → drift → challengers → promotion → risk scores in HBase.

Each task is one call into ``diskrisk.pipeline``; nothing heavy happens at import.

**Which days a run collects** (task ``window``):

* params ``start``/``end`` given (UI trigger, REST API, backfill): exactly that range
  (``end`` defaults to ``start``), whatever the lake already holds.
* no ``start`` (the daily schedule, or a trigger with the dates left empty): a *catch-up* —
  every day ``BACKBLAZE_SOURCE`` holds that is newer than the lake's newest day and not after
  ``end`` or else the run's date (its logical date; for a run triggered without one, its
  ``run_after``). So the schedule works for a folder filled day by day as well as for a
  quarterly zip: each run takes whatever is new.
* nothing new (e.g. unpausing the DAG schedules a run for today while the lake already holds
  every day of the source), or no source configured: ``window`` is **skipped** with a log line
  naming the run's date, the source and its days, and the lake's newest day; every other task
  is skipped with it and the run ends successfully without doing anything. With
  ``force_retrain`` the run works on the lake's newest day instead.

Settings (``BACKBLAZE_SOURCE``, ``DISKRISK_LAKE_PREFIX``, ...) are read by each task from the
environment, then from the `.env` named by ``DISKRISK_ENV_FILE`` (``diskrisk.config``), so an
edit of `.env` reaches the next run without restarting Airflow. ``DISKRISK_SCHEDULE`` is read
the same way (the light ``diskrisk.config``) when the file is parsed.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from diskrisk.config import PipelineSettings, load
from diskrisk.families import DEFAULT_FAMILIES, FAMILIES, training_phases


def _on_failure(context) -> None:  # type: ignore[no-untyped-def]
    from diskrisk.notify import task_failed

    task_failed(context)


@dag(
    dag_id="diskrisk_pipeline",
    schedule=load(PipelineSettings).schedule,
    start_date=pendulum.datetime(2013, 4, 10, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["diskrisk"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=1),
        "on_failure_callback": _on_failure,
    },
    params={
        "start": Param(
            None,
            type=["null", "string"],
            format="date",
            description="First day to collect (empty: catch up on the days the source holds "
            "that are newer than the lake's newest day)",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Last day to collect (default: start; without start: the newest day "
            "a catch-up may take, default the run's date)",
        ),
        "force_retrain": Param(
            False, type="boolean", description="Train challengers even without new data or drift"
        ),
        "families": Param(
            list(DEFAULT_FAMILIES),
            type="array",
            items={"type": "string", "enum": list(FAMILIES)},
            minItems=1,
            description="Model families to train as challengers",
        ),
    },
    doc_md=__doc__,
)
def diskrisk_pipeline():
    @task
    def window() -> dict:
        from diskrisk.pipeline import run_window

        ctx = get_current_context()
        # Airflow 3 runs may have no logical date (a trigger with the date left empty): then
        # the context has no "logical_date" and the run's date is its run_after.
        win = run_window(ctx["params"], ctx.get("logical_date"), ctx["dag_run"].run_after)
        if win.get("skip"):
            raise AirflowSkipException(win["skip"])
        return win

    @task
    def collect(win: dict) -> dict:
        from diskrisk.pipeline import collect

        return collect(win["source"], win["start"], win["end"])

    @task
    def build_lake(collected: dict) -> dict:
        from diskrisk.pipeline import build_lake

        return build_lake(collected)

    @task.short_circuit
    def has_work(lake: dict) -> bool:
        from diskrisk.pipeline import has_work

        return has_work(lake, get_current_context()["params"]["force_retrain"])

    @task
    def stats() -> dict:
        from diskrisk.pipeline import stats

        return stats()

    @task
    def drift() -> dict:
        from diskrisk.pipeline import drift

        return drift()

    @task.branch
    def retrain_or_score(drift_result: dict) -> list[str]:
        from diskrisk.pipeline import should_retrain

        force = get_current_context()["params"]["force_retrain"]
        return ["dataset", "score"] if should_retrain(drift_result, force) else ["score"]

    @task
    def dataset() -> str:
        from diskrisk.dataset import ShortLakeError
        from diskrisk.pipeline import dataset, short_lake

        try:
            return dataset()
        except ShortLakeError as exc:
            # more days fix it, a retry does not: skip training if a champion can still
            # score, else fail now (no retries) with the reason
            if reason := short_lake(exc):
                raise AirflowSkipException(reason) from exc
            raise AirflowFailException(f"{exc}; no champion yet: collect more days") from exc

    @task
    def families(phase: str) -> list[str]:
        return training_phases(list(get_current_context()["params"]["families"]))[phase]

    @task(execution_timeout=timedelta(hours=2))
    def train_and_evaluate(family: str, dataset_ref: str) -> dict:
        from diskrisk.pipeline import train

        ti = get_current_context()["ti"]
        return train(family, dataset_ref, task=f"{ti.run_id}/{ti.task_id}/{ti.map_index}")

    # a run's families may hold no single or no composite family: that phase maps to nothing
    # and is skipped, and what follows runs on the other
    @task(trigger_rule="none_failed_min_one_success")
    def promote(singles: list[dict], composites: list[dict], dataset_ref: str) -> dict:
        from diskrisk.pipeline import promote

        return promote([*singles, *composites], dataset_ref)

    @task(trigger_rule="none_failed_min_one_success")
    def score(lake: dict) -> dict:
        from diskrisk.pipeline import score

        return score(lake["last_day"])

    lake = build_lake(collect(window()))
    gate = has_work(lake)
    drift_result = drift()
    gate >> [stats(), drift_result]
    route = retrain_or_score(drift_result)
    ref = dataset()
    route >> ref
    single, composite = (
        families("single"),
        families.override(task_id="composite_families")("composite"),
    )
    ref >> [single, composite]
    singles = train_and_evaluate.partial(dataset_ref=ref).expand(family=single)
    composites = (
        train_and_evaluate.override(
            task_id="train_composites", trigger_rule="none_failed_min_one_success"
        )
        .partial(dataset_ref=ref)
        .expand(family=composite)
    )
    singles >> composites  # the ensemble composes the fits its members' tasks stored
    decision = promote(singles, composites, ref)
    scored = score(lake)
    route >> scored
    decision >> scored


diskrisk_pipeline()
