"""Training stage: survival dataset → challengers → MLflow runs → registry → promotion.

Stages hand each other S3 keys, not data, so every step (and every Airflow task) can run on its
own and be re-run: the dataset of a cutoff is written once under a key derived from its inputs,
each challenger is one MLflow run and one registered version, and promotion re-scores the champion
on the challenger's own holdout before the single alias switch.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from diskrisk import lake, s3
from diskrisk.config import EnvFileSettings, MlflowSettings, S3Settings, cached, lake_prefix
from diskrisk.config import git_revision as configured_revision
from diskrisk.evaluate import evaluate, plot_km_by_vendor
from diskrisk.families import DEFAULT_FAMILIES
from diskrisk.models import make_model, warm_start
from diskrisk.pyfunc import pyfunc_kwargs
from diskrisk.registry import (
    CHAMPION,
    Decision,
    PromotionSettings,
    alias_version,
    judge,
    register,
    version_c_index,
)
from diskrisk.survival import split, survival_dataset
from diskrisk.tracking import connect, drift_experiment

log = logging.getLogger(__name__)


class TrainSettings(EnvFileSettings):
    """Training knobs (DISKRISK_TRAIN_*); families and params can be overridden per run."""

    model_config = SettingsConfigDict(env_prefix="DISKRISK_TRAIN_", extra="ignore")
    families: list[str] = Field(default_factory=lambda: list(DEFAULT_FAMILIES))
    lookback_days: int = Field(30, ge=1)
    holdout_fraction: float = Field(0.3, gt=0, lt=1)
    seed: int = 0
    n_bootstrap: int = Field(200, ge=0)


@dataclass(frozen=True)
class DatasetRef:
    """Where a cutoff's train/holdout tables live, and the lake days they came from."""

    cutoff: str
    lookback_days: int
    train_key: str
    holdout_key: str
    lake_days: dict[str, str]  # day -> parquet digest, for lineage
    rows: int
    events: int
    holdout_events: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DatasetRef:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Challenger:
    family: str
    run_id: str
    version: str
    harrell_c: float
    metrics: dict[str, float]


# --- dataset ---------------------------------------------------------------------------------------
def prepare_dataset(
    cutoff: date | str | None = None,
    prefix: str | None = None,
    settings: TrainSettings | None = None,
) -> DatasetRef:
    """Survival dataset at ``cutoff`` (default: a third of the way into the lake, so there is
    history and follow-up), split by drive, written to S3 under a content-derived key."""
    t = settings or TrainSettings()
    prefix = lake_prefix() if prefix is None else prefix
    manifest = lake.read_manifest(prefix).get("days", {})
    if not manifest:
        raise RuntimeError("the lake is empty: collect days first")
    days = sorted(manifest)
    cut = str(cutoff) if cutoff else _default_cutoff(days)
    df = survival_dataset(cut, t.lookback_days, prefix=prefix)
    train, holdout = split(df, t.holdout_fraction, t.seed, by="drive")
    used = {d: manifest[d].get("parquet_sha256", "") for d in days}
    ident = hashlib.sha256(
        json.dumps(
            [cut, t.lookback_days, t.holdout_fraction, t.seed, used], sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    base = f"{prefix}datasets/{cut}-{ident}"
    for name, table in (("train", train), ("holdout", holdout)):
        _put_parquet(f"{base}/{name}.parquet", table)
    return DatasetRef(
        cut,
        t.lookback_days,
        f"{base}/train.parquet",
        f"{base}/holdout.parquet",
        used,
        len(df),
        int(df["event"].sum()),
        int(holdout["event"].sum()),
    )


def _default_cutoff(days: list[str]) -> str:
    """A third of the way into the lake: enough history for deltas, most days for follow-up."""
    return days[min(len(days) - 2, max(7, len(days) // 3))] if len(days) > 2 else days[0]


def _put_parquet(key: str, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, compression="zstd")
    s3.client().put_object(Bucket=cached(S3Settings).bucket, Key=key, Body=buf.getvalue())


def read_parquet(key: str) -> pd.DataFrame:
    body = s3.client().get_object(Bucket=cached(S3Settings).bucket, Key=key)["Body"].read()
    return pd.read_parquet(io.BytesIO(body))


# --- one challenger --------------------------------------------------------------------------------
def train_challenger(
    family: str,
    ref: DatasetRef,
    params: dict[str, Any] | None = None,
    settings: TrainSettings | None = None,
) -> Challenger:
    """Fit, evaluate on the holdout, log everything to MLflow, register as challenger."""
    t = settings or TrainSettings()
    train, holdout = read_parquet(ref.train_key), read_parquet(ref.holdout_key)
    model = make_model(family, params).fit(train)
    return _track(model, train, holdout, ref, t, parent=None)


def fine_tune(
    ref: DatasetRef, extra_estimators: int = 50, settings: TrainSettings | None = None
) -> Challenger:
    """Continue the champion on a newer window (trees add stages; others refit): a challenger."""
    t = settings or TrainSettings()
    from diskrisk.scoring import champion

    version, pyfunc_model = champion()
    base = pyfunc_model.unwrap_python_model().model
    train, holdout = read_parquet(ref.train_key), read_parquet(ref.holdout_key)
    model = warm_start(base, train, extra_estimators)
    return _track(model, train, holdout, ref, t, parent=str(version.version))


def _track(
    model: Any,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    ref: DatasetRef,
    t: TrainSettings,
    parent: str | None,
) -> Challenger:
    ev = evaluate(model, train, holdout, n_bootstrap=t.n_bootstrap, seed=t.seed)
    client = connect()
    ms = cached(MlflowSettings)
    mlflow.set_experiment(ms.experiment)
    bucket = cached(S3Settings).bucket
    with mlflow.start_run(run_name=f"{model.family}-{ref.cutoff}") as run:
        mlflow.set_tags(
            {
                "family": model.family,
                "git_revision": git_revision(),
                "data.cutoff": ref.cutoff,
                "data.lookback_days": str(ref.lookback_days),
                "data.first_day": min(ref.lake_days),
                "data.last_day": max(ref.lake_days),
                "data.train_uri": s3.uri(ref.train_key, bucket),
                "data.holdout_uri": s3.uri(ref.holdout_key, bucket),
                **({"fine_tuned_from_version": parent} if parent else {}),
            }
        )
        mlflow.log_params({k: _short(v) for k, v in model.params.items()})
        mlflow.log_metrics({k: float(v) for k, v in ev.metrics.items() if np.isfinite(v)})
        mlflow.log_dict({"lake_days": ref.lake_days, "notes": ev.notes}, "lineage.json")
        mlflow.log_input(
            mlflow.data.from_pandas(  # type: ignore[attr-defined]
                train, source=f"s3://{bucket}/{ref.train_key}", name=f"train-{ref.cutoff}"
            ),
            context="training",
        )
        mlflow.log_input(
            mlflow.data.from_pandas(  # type: ignore[attr-defined]
                holdout, source=f"s3://{bucket}/{ref.holdout_key}", name=f"holdout-{ref.cutoff}"
            ),
            context="holdout",
        )
        figures = {**ev.figures, "km_by_vendor": plot_km_by_vendor(train)}
        for name, fig in figures.items():
            mlflow.log_figure(fig, f"plots/{name}.png")
        info = mlflow.pyfunc.log_model(name="model", **pyfunc_kwargs(model, train))
    harrell = float(ev.metrics.get("harrell_c", float("nan")))
    version = register(
        client,
        ms.model_name,
        info.model_uri,
        tags={
            "family": model.family,
            "data.cutoff": ref.cutoff,
            "data.window": f"{min(ref.lake_days)}..{max(ref.lake_days)}",
            "metrics.harrell_c": f"{harrell:.4f}",
            "metrics.uno_c": f"{ev.metrics.get('uno_c', float('nan')):.4f}",
            "metrics.ibs": f"{ev.metrics.get('ibs', float('nan')):.4f}",
        },
    )
    log.info("%s: Harrell C %.4f, version %s", model.family, harrell, version.version)
    return Challenger(
        model.family,
        run.info.run_id,
        str(version.version),
        harrell,
        {k: float(v) for k, v in ev.metrics.items()},
    )


def _short(v: Any) -> str:
    return str(v)[:250]


def git_revision() -> str:
    if revision := configured_revision():
        return revision
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --- promotion ---------------------------------------------------------------------------------------
def promote(
    challengers: list[Challenger], ref: DatasetRef, rule: PromotionSettings | None = None
) -> tuple[Challenger, Decision]:
    """The best challenger against the champion, both scored on the challenger's holdout."""
    valid = [c for c in challengers if np.isfinite(c.harrell_c)]
    if not valid:
        raise RuntimeError("no challenger finished its evaluation: nothing to promote")
    best = max(valid, key=lambda c: c.harrell_c)
    name = cached(MlflowSettings).model_name
    holdout = read_parquet(ref.holdout_key)
    return best, judge(connect(), name, best.version, best.harrell_c, holdout, rule)


def _run_table(version: Any, which: str) -> pd.DataFrame:
    """The ``train`` or ``holdout`` table a registered version was built from (run tags)."""
    return read_parquet(s3.key_of(connect().get_run(version.run_id).data.tags[f"data.{which}_uri"]))


def load_reference(version: Any) -> pd.DataFrame:
    """The training table of a registered version (drift's reference)."""
    return _run_table(version, "train")


# --- operator commands -------------------------------------------------------------------------------


def evaluate_alias(alias: str, ref: DatasetRef) -> dict[str, Any]:
    """Harrell's C of the version behind ``alias`` on ``ref``'s holdout."""
    name = cached(MlflowSettings).model_name
    version = alias_version(connect(), name, alias)
    if version is None:
        raise RuntimeError(f"no version has the alias {alias!r}")
    holdout = read_parquet(ref.holdout_key)
    c = version_c_index(name, version.version, holdout)
    return {
        "alias": alias,
        "version": version.version,
        "cutoff": ref.cutoff,
        "holdout_rows": len(holdout),
        "holdout_events": int(holdout["event"].sum()),
        "harrell_c": c,
    }


def promote_challenger(rule: PromotionSettings | None = None) -> dict[str, Any]:
    """The promotion rule for the version behind ``challenger``, on its own holdout."""
    from diskrisk.registry import CHALLENGER

    client = connect()
    name = cached(MlflowSettings).model_name
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is None:
        raise RuntimeError("no challenger: train first")
    c = float(challenger.tags.get("metrics.harrell_c", "nan"))
    decision = judge(client, name, challenger.version, c, _run_table(challenger, "holdout"), rule)
    return {"version": challenger.version, **decision.tags()}


def list_versions() -> list[dict[str, Any]]:
    client = connect()
    name = cached(MlflowSettings).model_name
    rows = []
    aliases: dict[str, list[str]] = {}
    for alias, ver in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(ver), []).append(alias)
    for v in client.search_model_versions(f"name='{name}'"):
        rows.append(
            {
                "version": int(v.version),
                "aliases": ",".join(sorted(aliases.get(str(v.version), []))),
                "family": v.tags.get("family", ""),
                "harrell_c": float(v.tags.get("metrics.harrell_c", "nan")),
                "decision": v.tags.get("promotion.decision", ""),
                "reason": v.tags.get("promotion.reason", ""),
                "window": v.tags.get("data.window", ""),
                "run_id": v.run_id,
            }
        )
    return sorted(rows, key=lambda r: r["version"])


def export_champion(out: Path) -> Path:
    """A self-contained zip of the champion: MLmodel, files, requirements, README."""
    import shutil
    import tempfile
    import zipfile

    name = cached(MlflowSettings).model_name
    version = alias_version(connect(), name, CHAMPION)
    if version is None:
        raise RuntimeError("no champion to export")
    work = Path(tempfile.mkdtemp(prefix="diskrisk-export-"))
    try:
        model_dir = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{name}/{version.version}", dst_path=str(work / "model")
            )
        )
        (model_dir / "README.md").write_text(
            f"# {name} version {version.version}\n\n"
            f"Family: {version.tags.get('family')}; data window {version.tags.get('data.window')};"
            f" Harrell C {version.tags.get('metrics.harrell_c')}; MLflow run {version.run_id}.\n\n"
            "Load it with `mlflow.pyfunc.load_model('<unzipped folder>')` after\n"
            "`pip install -r requirements.txt`; `predict(df)` takes the survival-dataset covariates\n"
            "and returns `risk`, `p_fail_30d`, `p_fail_90d`.\n"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(model_dir.rglob("*")):
                if p.is_file():
                    z.write(p, p.relative_to(model_dir))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def retrain_rounds(start: str, end: str, rounds: int, out: Path) -> dict[str, Any]:
    """Fine-tune the champion on [start, end] ``rounds`` times; each round is a challenger that
    must win to be promoted. Writes the report and the resulting champion zip to ``out``."""
    days = sorted(d for d in lake.read_manifest(lake_prefix()).get("days", {}) if start <= d <= end)
    if len(days) < 3:
        raise RuntimeError(f"the lake holds {len(days)} days within {start}..{end}: need 3+")
    cutoffs = [days[min(len(days) - 2, max(0, len(days) // 3) + i)] for i in range(rounds)]
    report = []
    for i, cutoff in enumerate(cutoffs, 1):
        ref = prepare_dataset(cutoff)
        try:
            challenger = fine_tune(ref)
        except RuntimeError:  # no champion yet: the first round trains one from scratch
            challenger = train_challenger(TrainSettings().families[0], ref)
        _, decision = promote([challenger], ref)
        report.append(
            {
                "round": i,
                "cutoff": cutoff,
                "version": challenger.version,
                "harrell_c": challenger.harrell_c,
                "promoted": decision.promote,
                "reason": decision.reason,
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrain_report.json").write_text(json.dumps(report, indent=2))
    export_champion(out / "champion.zip")
    return {"rounds": report, "out": str(out)}


def latest_drift() -> str:
    """One line on the newest drift check (from the drift experiment)."""
    runs = mlflow.search_runs(
        experiment_names=[drift_experiment()],
        order_by=["start_time DESC"],
        max_results=1,
    )
    if runs.empty:
        return "not checked yet (the first run trains the first champion)"
    row = runs.iloc[0]
    return (
        f"{row['tags.drift']} on {row['tags.data.day']} "
        f"(drifted share {row['metrics.drift_share']:.2f})"
    )
