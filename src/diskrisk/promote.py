"""Promotion: the best challenger of a run against the champion, on the same out-of-time splits.

The rule itself (:func:`diskrisk.registry.decide`) compares out-of-time Harrell C; here the
champion's *recipe* is refitted on exactly the challenger's rolling-origin splits, so both are
judged on the same test rows (the champion itself has seen them), and the paired difference
comes from a drive bootstrap (:func:`diskrisk.oot.paired_difference`).
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd

from diskrisk import oot
from diskrisk.config import PromotionSettings, TrainSettings
from diskrisk.dataset import DatasetRef, version_dataset
from diskrisk.registry import CHALLENGER, Decision, Registry
from diskrisk.train import Challenger, oot_predictions, recipe


def promote(
    challengers: list[Challenger], ref: DatasetRef, rule: PromotionSettings | None = None
) -> tuple[Challenger, Decision]:
    """The best challenger by out-of-time C against the champion's recipe refitted on exactly
    the same splits; every other challenger is tagged with why it was not put forward."""
    valid = [c for c in challengers if np.isfinite(c.harrell_c)]
    if not valid:
        raise RuntimeError("no challenger finished its evaluation: nothing to promote")
    best = max(valid, key=lambda c: c.harrell_c)
    registry = Registry.connect()
    for c in challengers:
        if c.version != best.version:
            registry.not_chosen(c.version, c.harrell_c, best.family, best.harrell_c)
    decision = judge_version(best.version, best.run_id, best.harrell_c, ref, rule, registry)
    return best, decision


def judge_version(
    version: str,
    run_id: str,
    challenger_c: float,
    ref: DatasetRef,
    rule: PromotionSettings | None = None,
    registry: Registry | None = None,
) -> Decision:
    """The promotion rule for one version, its out-of-time predictions paired with the
    champion's on the same test rows."""
    t = TrainSettings()
    registry = registry or Registry.connect()
    ours = run_predictions(run_id)
    events = int(ours["event"].sum())

    def compare(champion_version: Any) -> dict[str, float]:
        theirs = oot_predictions(recipe(champion_version, registry), ref).frame
        return oot.paired_difference(ours, theirs, n=t.n_bootstrap, seed=t.seed)

    return registry.judge(version, challenger_c, events, compare, rule)


def promote_challenger(rule: PromotionSettings | None = None) -> dict[str, Any]:
    """The promotion rule for the version behind ``challenger``, on its own splits."""
    registry = Registry.connect()
    challenger = registry.require(CHALLENGER)
    c = float(challenger.tags.get("metrics.harrell_c", "nan"))
    ref = version_dataset(challenger)
    decision = judge_version(challenger.version, str(challenger.run_id), c, ref, rule, registry)
    return {"version": challenger.version, **decision.tags()}


def run_predictions(run_id: str) -> pd.DataFrame:
    """The out-of-time predictions a training run logged."""
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="oot/predictions.parquet"
    )
    return pd.read_parquet(local)
