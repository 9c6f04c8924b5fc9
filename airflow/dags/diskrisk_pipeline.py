"""diskrisk: Backblaze days → lake → drift → challengers → promotion → risk scores in HBase.

Each task is one call into ``diskrisk.pipeline``; nothing heavy happens at import. The run's
logical date selects the day to collect (UI-trigger params ``start``/``end`` select a range, which
is also how a backfill over many days works in one run).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

FAMILIES = ["coxph", "weibull_aft", "coxnet", "gbsa", "rsf", "km", "ensemble"]
# What holds up out of time (bench/quality.py); the others stay selectable.
DEFAULT_FAMILIES = ["coxnet", "coxph", "weibull_aft", "ensemble", "km"]


def _on_failure(context) -> None:  # type: ignore[no-untyped-def]
    from diskrisk.notify import task_failed

    task_failed(context)


@dag(
    dag_id="diskrisk_pipeline",
    schedule=os.environ.get("DISKRISK_SCHEDULE", "@daily"),
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
            description="First day to collect (default: the run's logical date)",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Last day to collect (default: start)",
        ),
        "force_retrain": Param(
            False, type="boolean", description="Train challengers even without new data or drift"
        ),
        "families": Param(
            DEFAULT_FAMILIES,
            type="array",
            items={"type": "string", "enum": FAMILIES},
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
        return run_window(ctx["params"], ctx["logical_date"])

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
        from diskrisk.pipeline import dataset

        return dataset()

    @task
    def families() -> list[str]:
        return list(get_current_context()["params"]["families"])

    @task(execution_timeout=timedelta(hours=2))
    def train_and_evaluate(family: str, dataset_ref: str) -> dict:
        from diskrisk.pipeline import train

        return train(family, dataset_ref)

    @task
    def promote(challengers: list[dict], dataset_ref: str) -> dict:
        from diskrisk.pipeline import promote

        return promote(list(challengers), dataset_ref)

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
    names = families()
    ref >> names
    challengers = train_and_evaluate.partial(dataset_ref=ref).expand(family=names)
    decision = promote(challengers, ref)
    scored = score(lake)
    route >> scored
    decision >> scored


diskrisk_pipeline()
