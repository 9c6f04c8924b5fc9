"""CLI commands of the modelling half: train, evaluate, promote, models, export, drift, score,
risk, top, retrain, report. Each is a thin shell over ``diskrisk.pipeline`` / ``diskrisk.ops``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer()
# Piped output (CI logs, `make demo | tee`) would otherwise be cut at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 140)


def _table(title: str, rows: list[dict], columns: list[str] | None = None) -> Table:
    t = Table(title=title)
    cols = columns or (list(rows[0]) if rows else [])
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*(_cell(r.get(c, "")) for c in cols))
    return t


def _cell(v: object) -> str:
    """Floats to 4 places; a missing probability (unsupported horizon) as n/a."""
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.4f}"
    return str(v)


@app.command()
def train(
    families: list[str] = typer.Option(
        None, "--family", "-f", help="default: DISKRISK_TRAIN_FAMILIES"
    ),
    cutoff: str = typer.Option(None, help="last lake day to use (default: the newest)"),
    promote: bool = typer.Option(True, help="run the promotion rule on the best challenger"),
) -> None:
    """Train challengers on the survival dataset, log them to MLflow, register them."""
    from diskrisk import pipeline
    from diskrisk.config import TrainSettings
    from diskrisk.families import training_phases

    ref = pipeline.dataset(cutoff)
    results = []
    with console.status("training") as status:
        for phase in training_phases(families or TrainSettings().families).values():
            for family in phase:  # the ensemble after the fits it is made of
                status.update(f"training {family}")
                results.append(pipeline.train(family, ref))
    console.print(
        _table("challengers (out-of-time C)", results, ["family", "version", "harrell_c", "run_id"])
    )
    if promote:
        console.print(pipeline.promote(results, ref))


@app.command()
def evaluate(
    alias: str = typer.Option("champion", help="registry alias to evaluate"),
    cutoff: str = typer.Option(None, help="last lake day of the out-of-time splits"),
) -> None:
    """Out-of-time metrics of a registered model's recipe, refitted on the lake's splits."""
    from diskrisk import pipeline
    from diskrisk.dataset import DatasetRef
    from diskrisk.ops import evaluate_alias

    ref = DatasetRef.from_json(pipeline.dataset(cutoff))
    console.print(evaluate_alias(alias, ref))


@app.command()
def promote() -> None:
    """Compare the current challenger with the champion on the challenger's holdout."""
    from diskrisk.promote import promote_challenger

    console.print(promote_challenger())


@app.command()
def models() -> None:
    """Registered versions with their aliases, metrics and promotion decisions."""
    from diskrisk.registry import Registry

    console.print(
        _table(
            "diskrisk-failure-risk",
            Registry.connect().list(),
            [
                "version",
                "aliases",
                "family",
                "harrell_c",
                "c_ci95",
                "recall_top1pct",
                "decision",
                "reason",
                "window",
            ],
        )
    )


@app.command()
def export(out: Path = typer.Option(Path("champion.zip"), help="zip to write")) -> None:
    """The champion as a zip: MLmodel, model files, requirements and a README."""
    from diskrisk.ops import export_champion

    console.print(f"wrote {export_champion(out)}")


@app.command()
def drift(day: str = typer.Option(None, help="day to compare (default: newest lake day)")) -> None:
    """Evidently drift report of the newest day against the champion's training data."""
    from diskrisk import pipeline

    console.print_json(json.dumps(pipeline.drift(day), default=str))


@app.command()
def score(
    day: str = typer.Option(None, help="default: newest lake day"),
    force: bool = typer.Option(False, help="re-score even if already written"),
) -> None:
    """Score every drive of a day with the champion and write the scores to HBase."""
    from diskrisk import pipeline

    console.print(pipeline.score(day, force=force))


@app.command()
def risk(serial: str) -> None:
    """Latest score and score history of one drive (from HBase)."""
    from diskrisk.sinks import HBaseSink

    sink = HBaseSink()
    latest = sink.latest(serial)
    if latest is None:
        console.print(f"[red]no score for {serial}[/red]")
        raise typer.Exit(1)
    console.print(latest)
    hist = sink.history(serial)
    console.print(
        _table(
            f"history of {serial}",
            hist.to_dict("records"),
            ["data_date", "risk", "p_fail_30d", "p_fail_90d", "rank_pct", "model_version"],
        )
    )


@app.command()
def top(k: int = typer.Option(10, "--k", min=1, help="how many drives")) -> None:
    """The riskiest drives now (latest scores in HBase)."""
    from diskrisk.sinks import HBaseSink

    rows = HBaseSink().top(k).to_dict("records")
    console.print(
        _table(
            f"top {k} riskiest drives",
            rows,
            [
                "serial_number",
                "model",
                "risk",
                "p_fail_30d",
                "p_fail_90d",
                "data_date",
                "model_version",
            ],
        )
    )


@app.command()
def retrain(
    start: str = typer.Option(..., help="first lake day of the window"),
    end: str = typer.Option(..., help="last lake day of the window"),
    rounds: int = typer.Option(1, min=1, help="fine-tuning rounds"),
    out: Path = typer.Option(Path("out/retrain")),
) -> None:
    """Background retraining: fine-tune the champion ``rounds`` times, keep the best."""
    from diskrisk.ops import retrain_rounds

    report = retrain_rounds(start, end, rounds, out)
    console.print_json(json.dumps(report, default=str))


@app.command()
def report() -> None:
    """What a user wants to see after a run: champion, C-index, drift, riskiest drives, URLs."""
    from diskrisk.drift import latest_verdict
    from diskrisk.registry import Registry

    versions = Registry.connect().list()
    champ = next((v for v in versions if "champion" in v["aliases"]), None)
    if champ is None:
        console.print("[red]no champion yet[/red]")
        raise typer.Exit(1)
    console.rule("diskrisk")
    console.print(
        f"champion: version {champ['version']} ({champ['family']}), out-of-time Harrell C "
        f"{champ['harrell_c']:.4f} (95% CI {champ['c_ci95']}), recall in the top 1% "
        f"{champ['recall_top1pct']:.0%}; decision: {champ['reason']}"
    )
    newest = [v for v in versions if v["window"] == versions[-1]["window"]]
    console.print(
        _table(
            f"challengers on {versions[-1]['window']} (out-of-time yardstick)",
            newest,
            ["version", "family", "harrell_c", "c_ci95", "recall_top1pct", "decision", "reason"],
        )
    )
    console.print(f"drift: {latest_verdict()}")
    top(10)
    from diskrisk.config import AirflowSettings, MlflowSettings, ServeSettings, load

    console.print(f"MLflow UI:  {load(MlflowSettings).tracking_uri}")
    console.print(f"Airflow UI: {load(AirflowSettings).api_url}")
    serve = load(ServeSettings)
    console.print(
        f"Risk page:  {serve.url} (user {serve.username}, password DISKRISK_SERVE_PASSWORD)"
    )


# --- Airflow: a run on the running scheduler, as a user's trigger makes it ----------------------------
def ready_dag(client, out: Console | None = None) -> None:  # type: ignore[no-untyped-def]
    """Wait for the DAG to be parsed; unpause it and let the run the scheduler then creates for
    the latest interval (a catch-up, usually skipped) finish before anything is triggered."""
    out = out or console
    dag = client.wait_for_dag()
    if dag["is_paused"]:
        client.set_paused(False)
        out.print(f"unpaused {dag['dag_id']}")
    shown: set[str] = set()

    def waiting(active: list[dict]) -> None:
        for r in active:
            if r["dag_run_id"] not in shown:
                shown.add(r["dag_run_id"])
                out.print(f"waiting for {r['run_type']} run {r['dag_run_id']} ({r['state']})")

    client.settle(on_wait=waiting)


def follow_run(client, run_id: str, timeout: float = 3600.0, out: Console | None = None) -> dict:  # type: ignore[no-untyped-def]
    """Poll a run until it finishes, printing each task's state changes and a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from diskrisk.airflow_api import summarize

    out = out or console
    done_states = {"success", "failed", "skipped", "upstream_failed", "removed"}
    last: dict[str, str] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=not out.is_terminal,
        disable=not out.is_terminal,
    ) as progress:
        bar = progress.add_task(run_id, total=None)

        def changed(run: dict, tis: list[dict]) -> None:
            states = summarize(tis)
            for task_id, state in states.items():
                if last.get(task_id) != state and state != "none":
                    colour = {"success": "green", "failed": "red", "skipped": "magenta"}.get(
                        state, "cyan"
                    )
                    out.print(f"  {task_id:<28} [{colour}]{state}[/{colour}]")
            last.update(states)
            finished = sum(s in done_states for s in states.values())
            progress.update(
                bar, total=len(states), completed=finished, description=f"{run_id}: {run['state']}"
            )

        run = client.wait(run_id, timeout=timeout, on_change=changed)
    colour = "green" if run["state"] == "success" else "red"
    out.print(f"run {run_id}: [{colour}]{run['state']}[/{colour}]")
    return run


@app.command()
def trigger(
    start: str = typer.Option(None, help="first day to collect (default: catch up)"),
    end: str = typer.Option(None, help="last day to collect (default: start, or the run's date)"),
    families: list[str] = typer.Option(None, "--family", help="model family (repeatable)"),
    force_retrain: bool = typer.Option(False, help="train challengers even without new data"),
    wait: bool = typer.Option(True, help="follow the run until it finishes"),
    timeout: float = typer.Option(3600.0, help="seconds to wait for the run"),
) -> None:
    """Trigger diskrisk_pipeline on the running Airflow (REST API, no logical date, like the
    UI's Trigger button) and follow it. Exit status 1 when the run fails or the scheduler
    stops heartbeating while it waits."""
    from diskrisk.airflow_api import AirflowClient, SchedulerDownError

    client = AirflowClient.from_settings()
    conf: dict = {"force_retrain": force_retrain}
    if start:
        conf["start"] = start
    if end:
        conf["end"] = end
    if families:
        conf["families"] = families
    try:
        ready_dag(client)
        run = client.trigger(conf)
        console.print(f"triggered {run['dag_run_id']} with {json.dumps(conf)}")
        if wait and follow_run(client, run["dag_run_id"], timeout)["state"] != "success":
            raise typer.Exit(1)
    except SchedulerDownError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@app.command()
def serve(
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes"),
) -> None:
    """The risk API and operator page on DISKRISK_SERVE_URL (HBase scores, champion by alias),
    as the read-only identity DISKRISK_READER_* (it can load the champion, change nothing)."""
    import uvicorn

    from diskrisk.config import ServeSettings, host_port, load
    from diskrisk.serve import run_as_reader

    host, port = host_port(load(ServeSettings).url)
    run_as_reader()
    uvicorn.run(
        "diskrisk.serve:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )
