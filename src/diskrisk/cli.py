"""The `diskrisk` command line: every pipeline stage, usable without Airflow."""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.table import Table

from diskrisk.cli_data import app as data_app
from diskrisk.cli_pipeline import app as pipeline_app
from diskrisk.config import ConfigError

app = typer.Typer(no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False)
init_app = typer.Typer(no_args_is_help=True, help="Provision buckets, users and policies.")
app.add_typer(init_app, name="init")
app.add_typer(data_app)
app.add_typer(pipeline_app)
console = Console()


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _show(title: str, result: dict[str, str]) -> None:
    table = Table(title=title, show_header=False)
    for key, value in result.items():
        table.add_row(key, value)
    console.print(table)


@init_app.command("s3")
def init_s3() -> None:
    """Buckets (versioned lake), the pipeline's and MLflow's users with bucket-only policies."""
    from diskrisk.provision import provision_s3

    _show("S3", _config_guard(provision_s3))


@init_app.command("mlflow")
def init_mlflow() -> None:
    """The pipeline's MLflow user (basic auth)."""
    from diskrisk.provision import provision_mlflow

    _show("MLflow", _config_guard(provision_mlflow))


def _config_guard(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
