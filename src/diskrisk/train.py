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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from diskrisk import lake, oot, s3
from diskrisk.config import EnvFileSettings, MlflowSettings, S3Settings, cached, lake_prefix
from diskrisk.config import git_revision as configured_revision
from diskrisk.evaluate import (
    permutation_importance,
    plot_calibration,
    plot_importance,
    plot_km_by_vendor,
)
from diskrisk.families import DEFAULT_FAMILIES
from diskrisk.models import RiskModel, make_model, warm_start
from diskrisk.pyfunc import HORIZONS, pyfunc_kwargs
from diskrisk.registry import (
    CHAMPION,
    Decision,
    PromotionSettings,
    alias_version,
    judge,
    record_not_chosen,
    register,
)
from diskrisk.tracking import connect, drift_experiment

log = logging.getLogger(__name__)


class TrainSettings(EnvFileSettings):
    """Training knobs (DISKRISK_TRAIN_*); families and params can be overridden per run."""

    model_config = SettingsConfigDict(env_prefix="DISKRISK_TRAIN_", extra="ignore")
    # DEFAULT_FAMILIES: chosen out of time (see diskrisk.families)
    families: list[str] = Field(default_factory=lambda: list(DEFAULT_FAMILIES))
    lookback_days: int = Field(30, ge=1)
    landmark_step_days: int = Field(7, ge=1, description="days between stacked training snapshots")
    oot_origins: int = Field(2, ge=1, description="rolling origins of the out-of-time evaluation")
    oot_block_days: int | None = Field(None, ge=2, description="test window; default: lake/6")
    seed: int = 0
    n_bootstrap: int = Field(200, ge=0)


@dataclass(frozen=True)
class DatasetRef:
    """Where a run's tables live, and the lake days they came from.

    ``train_key``: landmarks stacked over the whole window (the production fit);
    ``splits``: per rolling origin, its training and test tables (the out-of-time yardstick);
    ``holdout_key``: every split's test rows together (tagged with their split).
    """

    cutoff: str
    lookback_days: int
    train_key: str
    holdout_key: str
    lake_days: dict[str, str]  # day -> parquet digest, for lineage
    rows: int
    events: int
    holdout_events: int
    splits: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)

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
    harrell_c: float  # out-of-time, pooled over the splits
    metrics: dict[str, float]


# --- dataset ---------------------------------------------------------------------------------------
class ShortLakeError(RuntimeError):
    """The lake's days cannot hold the out-of-time test windows after a training window: no
    challenger can be trained or judged on it (more days, not a retry, fix it)."""


def training_plan(days: list[str], settings: TrainSettings | None = None) -> oot.Plan:
    """The landmarks and rolling-origin splits of ``days`` (sorted lake days) under ``settings``;
    :class:`ShortLakeError` when there are too few days for them."""
    t = settings or TrainSettings()
    try:
        return oot.plan(
            days, step=t.landmark_step_days, n_origins=t.oot_origins, block=t.oot_block_days
        )
    except (ValueError, IndexError) as exc:
        last = days[-1] if days else "-"
        raise ShortLakeError(
            f"{len(days)} lake days up to {last} cannot hold {t.oot_origins} out-of-time test "
            f"windows after a training window: {exc}"
        ) from exc


def prepare_dataset(
    cutoff: date | str | None = None,
    prefix: str | None = None,
    settings: TrainSettings | None = None,
) -> DatasetRef:
    """Stacked landmark tables of the lake up to ``cutoff`` (default: its newest day) and the
    rolling-origin splits (:mod:`diskrisk.oot`), written to S3 under a content-derived key."""
    t = settings or TrainSettings()
    prefix = lake_prefix() if prefix is None else prefix
    manifest = lake.read_manifest(prefix).get("days", {})
    if not manifest:
        raise RuntimeError("the lake is empty: collect days first")
    days = sorted(d for d in manifest if cutoff is None or d <= str(cutoff))
    if not days:
        raise RuntimeError(f"no lake day on or before {cutoff}")
    cut = days[-1]
    p = training_plan(days, t)
    used = {d: manifest[d].get("parquet_sha256", "") for d in days}
    ident = hashlib.sha256(
        json.dumps([cut, t.lookback_days, p.to_dict(), used], sort_keys=True).encode()
    ).hexdigest()[:16]
    base = f"{prefix}datasets/{cut}-{ident}"
    con = lake.connect(prefix)
    full = oot.stacked(p.landmarks, cut, t.lookback_days, con=con)
    _put_parquet(f"{base}/train.parquet", full)
    splits, tests = [], []
    for sp in p.splits:
        train = oot.train_frame(full, sp.origin)
        test = oot.test_frame(sp, t.lookback_days, con=con)
        keys = {"train_key": f"{base}/{sp.origin}/train.parquet"}
        keys["test_key"] = f"{base}/{sp.origin}/test.parquet"
        _put_parquet(keys["train_key"], train)
        _put_parquet(keys["test_key"], test)
        tests.append(test)
        splits.append({"origin": sp.origin, **keys, "test_events": int(test["event"].sum())})
    holdout = pd.concat(tests, ignore_index=True)
    _put_parquet(f"{base}/holdout.parquet", holdout)
    return DatasetRef(
        cut,
        t.lookback_days,
        f"{base}/train.parquet",
        f"{base}/holdout.parquet",
        used,
        len(full),
        int(full["event"].sum()),
        int(holdout["event"].sum()),
        splits,
        p.to_dict(),
    )


def _put_parquet(key: str, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, compression="zstd")
    s3.client().put_object(Bucket=cached(S3Settings).bucket, Key=key, Body=buf.getvalue())


def read_parquet(key: str) -> pd.DataFrame:
    body = s3.client().get_object(Bucket=cached(S3Settings).bucket, Key=key)["Body"].read()
    return pd.read_parquet(io.BytesIO(body))


# --- out-of-time predictions -----------------------------------------------------------------------
def oot_predictions(make: Callable[[], RiskModel], ref: DatasetRef) -> oot.Predictions:
    """Refit a recipe on every split of ``ref`` and predict its test windows."""
    plan = oot.Plan.from_dict(ref.plan)
    keys = {s["origin"]: s for s in ref.splits}
    return oot.predict_splits(
        make,
        plan.splits,
        lambda sp: read_parquet(keys[sp.origin]["train_key"]),
        lambda sp: read_parquet(keys[sp.origin]["test_key"]),
    )


def oot_metrics(pred: oot.Predictions, ref: DatasetRef, t: TrainSettings) -> dict[str, float]:
    block = float(ref.plan["block"])
    first_train = read_parquet(ref.splits[0]["train_key"])
    return oot.metrics(
        pred,
        n_bootstrap=t.n_bootstrap,
        seed=t.seed,
        auc_horizons=[block - 1],
        train_outcomes=first_train,
    )


def recipe(version: Any) -> Callable[[], RiskModel]:
    """How a registered version was made (family and params), to refit it on other data."""
    base = _load_risk_model(version)
    return lambda: make_model(base.family, base.params)


def _load_risk_model(version: Any) -> RiskModel:
    name = cached(MlflowSettings).model_name
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    return loaded.unwrap_python_model().model


# --- one challenger --------------------------------------------------------------------------------
def train_challenger(
    family: str,
    ref: DatasetRef,
    params: dict[str, Any] | None = None,
    settings: TrainSettings | None = None,
) -> Challenger:
    """Out-of-time evaluation of the recipe, the production fit on the whole window, MLflow
    run, registered version."""
    t = settings or TrainSettings()
    pred = oot_predictions(lambda: make_model(family, params), ref)
    train = read_parquet(ref.train_key)
    model = make_model(family, params).fit(train)
    return _track(model, train, pred, ref, t, parent=None)


def fine_tune(
    ref: DatasetRef, extra_estimators: int = 50, settings: TrainSettings | None = None
) -> Challenger:
    """Continue the champion on a newer window (trees add stages; others refit): a challenger.
    Its out-of-time figures refit the grown recipe per split (the champion itself has seen the
    test windows, so scoring it there would be in-sample)."""
    t = settings or TrainSettings()
    from diskrisk.scoring import champion

    version, pyfunc_model = champion()
    base = pyfunc_model.unwrap_python_model().model
    train = read_parquet(ref.train_key)
    model = warm_start(base, train, extra_estimators)
    pred = oot_predictions(lambda: make_model(model.family, model.params), ref)
    return _track(model, train, pred, ref, t, parent=str(version.version))


def _track(
    model: Any,
    train: pd.DataFrame,
    pred: oot.Predictions,
    ref: DatasetRef,
    t: TrainSettings,
    parent: str | None,
) -> Challenger:
    metrics = oot_metrics(pred, ref, t)
    holdout = read_parquet(ref.holdout_key)
    cal_table, _ = oot.calibration(pred.frame)
    importance = model.feature_importance()
    if importance.empty and model.uses_covariates:
        importance = permutation_importance(model, holdout, 2, t.seed)
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
                "oot.origins": ",".join(s["origin"] for s in ref.splits),
                "oot.block_days": str(ref.plan.get("block")),
                **({"fine_tuned_from_version": parent} if parent else {}),
            }
        )
        mlflow.log_params({k: _short(v) for k, v in model.params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict(
            {"lake_days": ref.lake_days, "notes": pred.notes, "dataset_ref": asdict(ref)},
            "lineage.json",
        )
        mlflow.log_input(
            mlflow.data.from_pandas(  # type: ignore[attr-defined]
                train, source=f"s3://{bucket}/{ref.train_key}", name=f"train-{ref.cutoff}"
            ),
            context="training",
        )
        mlflow.log_input(
            mlflow.data.from_pandas(  # type: ignore[attr-defined]
                holdout, source=f"s3://{bucket}/{ref.holdout_key}", name=f"oot-{ref.cutoff}"
            ),
            context="out-of-time test",
        )
        _log_frame(pred.frame, "oot/predictions.parquet")
        figures = {"km_by_vendor": plot_km_by_vendor(train)}
        if not cal_table.empty:
            _log_frame(cal_table, "oot/calibration.parquet")
            figures["calibration"] = plot_calibration(cal_table, f"{model.family} (out-of-time)")
        if not importance.empty:
            figures["importance"] = plot_importance(importance, model.family)
        for name, fig in figures.items():
            _log_figure(fig, f"plots/{name}.png")
        info = mlflow.pyfunc.log_model(name="model", **pyfunc_kwargs(model, train))
    harrell = float(metrics.get("oot_harrell_c", float("nan")))
    version = register(
        client, ms.model_name, info.model_uri, tags=version_tags(model, ref, metrics)
    )
    client.update_model_version(
        ms.model_name, version.version, model_card(model.family, ref, metrics, pred.notes)
    )
    if not client.get_registered_model(ms.model_name).description:
        client.update_registered_model(ms.model_name, MODEL_DESCRIPTION)
    log.info("%s: out-of-time Harrell C %.4f, version %s", model.family, harrell, version.version)
    return Challenger(
        model.family,
        run.info.run_id,
        str(version.version),
        harrell,
        {k: float(v) for k, v in metrics.items()},
    )


MODEL_DESCRIPTION = (
    "Failure risk of every active hard drive (Backblaze Drive Stats) from survival models. "
    "`predict` returns `risk` (ranking, higher = riskier) and `p_fail_30d`/`p_fail_90d` "
    "(missing when the training follow-up cannot support the horizon; see each version's "
    "metadata). Alias `champion` is what scoring uses; a challenger replaces it only when its "
    "out-of-time Harrell C beats the champion's recipe on the same rolling-origin splits by "
    "more than the paired drive-bootstrap uncertainty. Each version's description is its model "
    "card; its `promotion.*` tags hold the decision and the reason."
)


def version_tags(model: RiskModel, ref: DatasetRef, m: dict[str, float]) -> dict[str, str]:
    """Registry tags: the data window and the out-of-time figures an operator asks for."""

    def f(key: str, fmt: str = "{:.4f}") -> str:
        v = m.get(key, float("nan"))
        return fmt.format(v) if np.isfinite(v) else "nan"

    tags = {
        "family": model.family,
        "data.cutoff": ref.cutoff,
        "data.window": f"{min(ref.lake_days)}..{max(ref.lake_days)}",
        "metrics.harrell_c": f("oot_harrell_c"),
        "metrics.oot_harrell_c_ci95": f"{f('oot_harrell_c_ci_low')}..{f('oot_harrell_c_ci_high')}",
        "metrics.oot_events": f("oot_events", "{:.0f}"),
        "metrics.oot_calibration_abs_err": f("oot_calibration_abs_err", "{:.6f}"),
    }
    for key in m:
        if key.startswith(("oot_recall_top", "oot_auc_")):
            tags[f"metrics.{key}"] = f(key)
    unsupported = {h: why for h, why in model.horizon_support(HORIZONS).items() if why}
    tags["horizons.unsupported"] = (
        "; ".join(f"p_fail_{h:g}d: {why}" for h, why in unsupported.items()) or "none"
    )
    return tags


def model_card(family: str, ref: DatasetRef, m: dict[str, float], notes: list[str]) -> str:
    """Markdown shown as the version's description in the MLflow UI."""
    lines = [
        f"**{family}** survival model, trained on landmark snapshots every "
        f"{ref.plan.get('step')} days of {min(ref.lake_days)}..{max(ref.lake_days)} "
        f"({ref.rows} drive-snapshots, {ref.events} failures).",
        "",
        f"Out-of-time evaluation (refit per origin {', '.join(s['origin'] for s in ref.splits)}"
        f", {ref.plan.get('block')}-day test windows, {m.get('oot_events', 0):.0f} failures):",
        "",
        "| metric | value |",
        "|---|---|",
        f"| Harrell C (95% drive-bootstrap CI) | {m.get('oot_harrell_c', float('nan')):.4f} "
        f"({m.get('oot_harrell_c_ci_low', float('nan')):.4f}.."
        f"{m.get('oot_harrell_c_ci_high', float('nan')):.4f}) |",
    ]
    for key in sorted(m):
        if key.startswith(("oot_recall_top", "oot_auc_", "oot_calibration")):
            lines.append(f"| {key.removeprefix('oot_')} | {m[key]:.4f} |")
    lines += ["", "Promotion decision and reason: see the `promotion.*` tags."]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


def _log_frame(df: pd.DataFrame, path: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(path).name
        df.to_parquet(local, index=False)
        mlflow.log_artifact(str(local), str(Path(path).parent))


def _log_figure(fig: Figure, path: str) -> None:
    """Saved with a tight bounding box: long feature names would be cut off otherwise."""
    mlflow.log_figure(fig, path, save_kwargs={"bbox_inches": "tight", "dpi": 100})


def _run_predictions(run_id: str) -> pd.DataFrame:
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="oot/predictions.parquet"
    )
    return pd.read_parquet(local)


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
    """The best challenger by out-of-time C against the champion's recipe refitted on exactly
    the same splits; every other challenger is tagged with why it was not put forward."""
    valid = [c for c in challengers if np.isfinite(c.harrell_c)]
    if not valid:
        raise RuntimeError("no challenger finished its evaluation: nothing to promote")
    best = max(valid, key=lambda c: c.harrell_c)
    client, name = connect(), cached(MlflowSettings).model_name
    for c in challengers:
        if c.version != best.version:
            record_not_chosen(client, name, c.version, c.harrell_c, best.family, best.harrell_c)
    decision = judge_version(best.version, best.run_id, best.harrell_c, ref, rule)
    return best, decision


def judge_version(
    version: str,
    run_id: str,
    challenger_c: float,
    ref: DatasetRef,
    rule: PromotionSettings | None = None,
) -> Decision:
    """The promotion rule for one version, its out-of-time predictions paired with the
    champion's on the same test rows."""
    t = TrainSettings()
    ours = _run_predictions(run_id)
    events = int(ours["event"].sum())

    def compare(champion_version: Any) -> dict[str, float]:
        theirs = oot_predictions(recipe(champion_version), ref).frame
        return oot.paired_difference(ours, theirs, n=t.n_bootstrap, seed=t.seed)

    name = cached(MlflowSettings).model_name
    return judge(connect(), name, version, challenger_c, events, compare, rule)


def _run_table(version: Any, which: str) -> pd.DataFrame:
    """The ``train`` or ``holdout`` table a registered version was built from (run tags)."""
    return read_parquet(s3.key_of(connect().get_run(version.run_id).data.tags[f"data.{which}_uri"]))


def load_reference(version: Any) -> pd.DataFrame:
    """The training table of a registered version (drift's reference)."""
    return _run_table(version, "train")


def _run_ref(version: Any) -> DatasetRef:
    lineage = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/lineage.json")
    return DatasetRef(**lineage["dataset_ref"])


# --- operator commands -------------------------------------------------------------------------------


def evaluate_alias(alias: str, ref: DatasetRef) -> dict[str, Any]:
    """Out-of-time metrics of the recipe behind ``alias``, refitted on ``ref``'s splits."""
    name = cached(MlflowSettings).model_name
    version = alias_version(connect(), name, alias)
    if version is None:
        raise RuntimeError(f"no version has the alias {alias!r}")
    pred = oot_predictions(recipe(version), ref)
    return {
        "alias": alias,
        "version": version.version,
        "cutoff": ref.cutoff,
        "origins": [s["origin"] for s in ref.splits],
        **oot_metrics(pred, ref, TrainSettings()),
    }


def promote_challenger(rule: PromotionSettings | None = None) -> dict[str, Any]:
    """The promotion rule for the version behind ``challenger``, on its own splits."""
    from diskrisk.registry import CHALLENGER

    client = connect()
    name = cached(MlflowSettings).model_name
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is None:
        raise RuntimeError("no challenger: train first")
    c = float(challenger.tags.get("metrics.harrell_c", "nan"))
    ref = _run_ref(challenger)
    decision = judge_version(challenger.version, str(challenger.run_id), c, ref, rule)
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
                "c_ci95": v.tags.get("metrics.oot_harrell_c_ci95", ""),
                "recall_top1pct": float(v.tags.get("metrics.oot_recall_top1pct", "nan")),
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
    # growing windows ending on the last `rounds` days (each needs history for its origins)
    cutoffs = [days[len(days) - rounds + i] for i in range(rounds)] if rounds <= len(days) else days
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
