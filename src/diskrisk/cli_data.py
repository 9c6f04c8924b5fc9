"""Data-stage commands (``collect``, ``stats``, ``preprocess``, ``synth``), mounted by the main CLI.

Each command is a thin shell over the library functions so that Airflow tasks and tests call the
same code; progress bars (rich) show on long work.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(help="Backblaze data stage: collect, validate, lake, stats, datasets.")
console = Console(stderr=True)
PREFIX_HELP = "key prefix inside the bucket (default: DISKRISK_LAKE_PREFIX, as the DAG uses)"


def _prefix(given: str | None) -> str:
    """An explicit --prefix, else the DAG's: DISKRISK_LAKE_PREFIX (environment, then .env)."""
    if given is not None:
        return given
    from diskrisk.config import lake_prefix

    return lake_prefix()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


@app.command()
def collect(
    source: str = typer.Argument(..., help="folder of daily CSVs, one CSV, or a zip (path/URL)"),
    prefix: str | None = typer.Option(None, help=PREFIX_HELP),
    chunk_mb: int = typer.Option(16, help="multipart upload chunk size in MiB (>= 5)"),
    raw_only: bool = typer.Option(False, help="only copy to raw/, skip validation and lake"),
    force: bool = typer.Option(False, help="re-validate days even when raw is unchanged"),
) -> None:
    """Copy a source's days to raw/, validate them and write the lake (idempotent)."""
    from diskrisk import ingest, lake
    from diskrisk.validate import DataError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    where = _prefix(prefix)
    chunk = chunk_mb * ingest.MIB
    with _progress() as prog:
        task = prog.add_task("collect → lake", total=None)

        def step(kind: str, res: object) -> None:
            prog.update(task, advance=0.5)

        try:
            if raw_only:
                summary = ingest.collect(
                    source,
                    prefix=where,
                    chunk_size=chunk,
                    on_day=lambda r: step("collect", r),
                    latest=lake.latest_day(),
                )
                result = summary.as_dict()
            else:
                psum = lake.process(
                    source, prefix=where, chunk_size=chunk, force=force, on_step=step
                )
                result = psum.as_dict()
        except DataError as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(2) from None
    typer.echo(json.dumps(result, indent=1))
    if result.get("errors"):
        for e in result["errors"]:
            console.print(f"[yellow]rejected:[/yellow] {e['reason']}")


@app.command()
def stats(
    out: Path = typer.Option(Path("reports/stats"), help="local output directory"),
    prefix: str | None = typer.Option(None, help=PREFIX_HELP),
    root: Path | None = typer.Option(None, help="read a local lake directory instead of S3"),
) -> None:
    """Lake statistics (JSON) and per-day plots (PNG), also uploaded to reports/stats/."""
    from diskrisk import stats as st

    with console.status("computing lake statistics"):
        result = st.run(out, prefix=_prefix(prefix), root=root)
    typer.echo(json.dumps({k: v for k, v in result.items() if k != "na_rate"}, indent=1))


@app.command()
def preprocess(
    cutoff: str = typer.Option(..., help="snapshot day YYYY-MM-DD"),
    lookback: int = typer.Option(30, help="look-back window in days"),
    out: str = typer.Option(..., help="output Parquet (local path or s3://bucket/key)"),
    end: str | None = typer.Option(None, help="ignore follow-up after this day"),
    prefix: str | None = typer.Option(None, help=PREFIX_HELP),
    root: Path | None = typer.Option(None, help="read a local lake directory instead of S3"),
) -> None:
    """Build the landmark survival dataset at CUTOFF and write it as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from diskrisk import s3, survival

    with console.status(f"survival dataset at {cutoff}"):
        df = survival.survival_dataset(cutoff, lookback, end=end, prefix=_prefix(prefix), root=root)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if out.startswith("s3://"):
        pq.write_table(
            table, out.removeprefix("s3://"), filesystem=s3.arrow_fs(), compression="zstd"
        )
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out, compression="zstd")
    typer.echo(json.dumps({"rows": len(df), "events": int(df["event"].sum()), "out": out}))


@app.command()
def synth(
    era: str = typer.Option("modern", help="'2013' (85 columns) or 'modern' (2023+ layout)"),
    drives: int = typer.Option(10_000, help="drives on day one"),
    days: int = typer.Option(30, help="number of days"),
    start: str = typer.Option("2024-01-01", help="first day YYYY-MM-DD"),
    out: Path = typer.Option(Path("data/synth"), help="output folder"),
    seed: int = typer.Option(0, help="random seed"),
    stationary: bool = typer.Option(
        False, help="healthy drives keep starting to wear: a long run keeps its failure rate"
    ),
) -> None:
    """Write seeded synthetic Backblaze-format daily CSVs."""
    from diskrisk import synth as sy

    with _progress() as prog:
        task = prog.add_task(f"synth {era}", total=days)
        paths = sy.write_days(
            out,
            era,
            drives,
            days,
            date.fromisoformat(start),
            seed,
            on_day=lambda p: prog.advance(task),
            wear_onset=sy.STATIONARY_WEAR_ONSET if stationary else 0.0,
        )
    typer.echo(json.dumps({"files": len(paths), "out": str(out)}))
