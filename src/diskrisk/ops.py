"""Operator commands behind the CLI: evaluate an alias, export the champion, retrain in rounds."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import mlflow

from diskrisk import lake
from diskrisk.config import TrainSettings, lake_prefix
from diskrisk.dataset import DatasetRef, prepare_dataset
from diskrisk.promote import promote
from diskrisk.registry import CHAMPION, NoModelError, Registry
from diskrisk.train import fine_tune, oot_metrics, oot_predictions, recipe, train_challenger


def evaluate_alias(alias: str, ref: DatasetRef) -> dict[str, Any]:
    """Out-of-time metrics of the recipe behind ``alias``, refitted on ``ref``'s splits."""
    registry = Registry.connect()
    version = registry.require(alias)
    pred = oot_predictions(*recipe(version, registry), ref)
    return {
        "alias": alias,
        "version": version.version,
        "cutoff": ref.cutoff,
        "origins": [s["origin"] for s in ref.splits],
        **oot_metrics(pred, ref, TrainSettings()),
    }


def export_champion(out: Path) -> Path:
    """A self-contained zip of the champion: MLmodel, files, requirements, README."""
    registry = Registry.connect()
    version = registry.require(CHAMPION)
    work = Path(tempfile.mkdtemp(prefix="diskrisk-export-"))
    try:
        model_dir = Path(
            mlflow.artifacts.download_artifacts(registry.uri(version), dst_path=str(work / "model"))
        )
        (model_dir / "README.md").write_text(
            f"# {registry.name} version {version.version}\n\n"
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
    must win to be promoted. Writes the report and the resulting champion zip to ``out``.

    Only a missing champion makes a round train from scratch; a fine-tune that fails for any
    other reason fails the command (it must not silently become a different model)."""
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
        except NoModelError:  # no champion yet: the first round trains one from scratch
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
