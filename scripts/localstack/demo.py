"""`make demo` (scripts/demo): the pipeline end to end on the running local stack, driven the way
a user drives it — through Airflow's REST API, executed by the running scheduler.

1. the data: BACKBLAZE_SOURCE (environment, then `.env`), else 30 seeded synthetic days from
   `diskrisk synth`; whichever it is goes into `.env`, because that is where the scheduler's
   tasks read it, so later runs (the daily schedule, a UI trigger) use the same data;
2. the DAG is unpaused and the run the scheduler creates for the latest interval is let finish
   (a catch-up: skipped when there is nothing new);
3. a run triggered with no logical date over the first two thirds of the days trains the
   first champion; a second one over the rest checks drift against it, retrains if needed and
   scores every drive of the newest day into HBase. Task states print as they change;
4. the report: champion and C-index, drift, the ten riskiest drives, the UI addresses and,
   last, the operator page of the risk service (`diskrisk serve`, started by the local stack).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from diskrisk.families import DEFAULT_FAMILIES as FAMILY_DEFAULTS
from localstack.proc import STATE
from localstack.services import ENV_FILE, VENV_BIN

#: The challengers the demo trains (DEMO_FAMILIES overrides): the default ones, chosen out of time.
DEFAULT_FAMILIES = list(FAMILY_DEFAULTS)


def say(text: str) -> None:
    print(f"== {text}", flush=True)


def main() -> int:
    os.environ.setdefault("DISKRISK_ENV_FILE", str(ENV_FILE))
    from dotenv import dotenv_values, set_key

    from diskrisk.airflow_api import AirflowClient
    from diskrisk.cli_pipeline import follow_run, ready_dag
    from diskrisk.config import PipelineSettings, TrainSettings, load
    from diskrisk.dataset import ShortLakeError, training_plan
    from diskrisk.ingest import days_of

    client = AirflowClient.from_settings()
    say(f"Airflow at {client.base_url}: waiting for the DAG, unpausing it")
    # Before `.env` points at the demo's data: the run the scheduler makes on unpausing then
    # works on the settings as they were (nothing to collect without a source).
    ready_dag(client)

    source = load(PipelineSettings).source
    if not source:
        source = str(STATE / "demo-data")
        if not any(p.suffix == ".csv" for p in (STATE / "demo-data").glob("*.csv")):
            drives = os.environ.get("DEMO_DRIVES", "20000")
            say(f"generating 30 synthetic Backblaze days ({drives} drives, seed 7) into {source}")
            subprocess.run(
                [str(VENV_BIN / "diskrisk"), "synth", "--era", "2013", "--drives", drives,
                 "--days", "30", "--start", "2024-01-01", "--seed", "7", "--out", source],
                check=True,
            )  # fmt: skip
    if (dotenv_values(ENV_FILE).get("BACKBLAZE_SOURCE") or "") != source:
        set_key(ENV_FILE, "BACKBLAZE_SOURCE", source, quote_mode="never")
        say(
            f"wrote BACKBLAZE_SOURCE={source} into {ENV_FILE}: the running scheduler reads it "
            "from there, so the daily schedule and UI triggers use the same data"
        )
    say(f"source: {source}")

    with days_of(source) as files:
        days = [f.day.isoformat() for f in files]
    split = len(days) * 2 // 3
    try:  # the first run trains on the first two thirds: they must hold the test windows
        training_plan(days[:split], load(TrainSettings))
    except ShortLakeError as exc:
        print(f"{source} holds too few days for the demo ({len(days)}): {exc}", file=sys.stderr)
        return 1
    families = json.loads(os.environ.get("DEMO_FAMILIES") or json.dumps(DEFAULT_FAMILIES))
    for start, end in ((days[0], days[split - 1]), (days[split], days[-1])):
        conf = {"start": start, "end": end, "families": families}
        run = client.trigger(conf, note="make demo")
        say(f"DAG run {run['dag_run_id']} (no logical date) over {start} .. {end}")
        final = follow_run(client, run["dag_run_id"])
        if final["state"] != "success":
            print(
                f"DAG run failed: see the Airflow UI ({client.base_url}) or "
                f"{STATE / 'logs' / 'airflow'}",
                file=sys.stderr,
            )
            return 1
    return subprocess.run([str(VENV_BIN / "diskrisk"), "report"], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
