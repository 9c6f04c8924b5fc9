"""Promotion: the best challenger of a run against the champion, on the same out-of-time splits.

The rule itself (:func:`diskrisk.registry.decide`) compares out-of-time Harrell C; here the
champion's *recipe* is refitted on exactly the challenger's rolling-origin splits, so both are
judged on the same test rows (the champion itself has seen them), and the paired difference
comes from a drive bootstrap (:func:`diskrisk.oot.paired_difference`). When a registered version
already logged the predictions of that very recipe on those splits (the daily run trains one),
they are read instead of refitted (:func:`champion_predictions`).
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from diskrisk import oot, s3
from diskrisk.config import PromotionSettings, TrainSettings
from diskrisk.dataset import DatasetRef, version_dataset
from diskrisk.registry import CHALLENGER, Decision, Registry
from diskrisk.train import Challenger, git_revision, oot_predictions, recipe

log = logging.getLogger(__name__)
SOURCE_TAG = "promotion.champion_predictions"  # "reused from version N" or "refitted"


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
    sources: list[str] = []

    def compare(champion_version: ModelVersion) -> dict[str, float]:
        theirs, source = champion_predictions(champion_version, ref, registry)
        sources.append(source)
        return oot.paired_difference(ours, theirs, n=t.n_bootstrap, seed=t.seed)

    decision = registry.judge(version, challenger_c, events, compare, rule)
    for source in sources:
        registry.client.set_model_version_tag(registry.name, version, SOURCE_TAG, source)
    return decision


def champion_predictions(
    champion: ModelVersion, ref: DatasetRef, registry: Registry
) -> tuple[pd.DataFrame, str]:
    """The champion's recipe's out-of-time predictions on the splits of ``ref``, and where they
    came from (``"reused from version N"`` or ``"refitted"``).

    A version of this registered model whose run was trained on the same table (tag
    ``data.train_uri``; its key derives from the split plan, so the splits are the same too), of
    the champion's family, with the champion's params as logged and by the same code revision
    already logged exactly what refitting the recipe would give (fitting is seeded): its
    ``oot/predictions.parquet`` is read instead (the refit takes minutes at fleet scale). A
    fine-tuned version logs its grown params and the predictions of its grown recipe, so the
    params check covers it too. Otherwise the recipe is refitted on every split.
    """
    client = registry.client
    want = client.get_run(str(champion.run_id)).data
    family, revision = want.tags.get("family"), git_revision()
    train_uri = s3.uri(ref.train_key)
    versions = client.search_model_versions(f"name = '{registry.name}'")
    for v in sorted(versions, key=lambda v: -int(v.version)):  # the newest match first
        tags = v.tags or {}
        if tags.get("family") != family or tags.get("data.cutoff") != ref.cutoff:
            continue  # the version's own tags rule most out without reading its run
        run = client.get_run(str(v.run_id)).data
        if (
            run.tags.get("data.train_uri") == train_uri
            and run.tags.get("family") == family
            and revision != "unknown"
            and run.tags.get("git_revision") == revision
            and run.params == want.params
        ):
            log.info(
                "champion v%s: out-of-time predictions of its recipe reused from version %s",
                champion.version,
                v.version,
            )
            return run_predictions(str(v.run_id)), f"reused from version {v.version}"
    log.info(
        "champion v%s: no version logged its recipe on %s, refitting", champion.version, train_uri
    )
    return oot_predictions(*recipe(champion, registry), ref).frame, "refitted"


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
