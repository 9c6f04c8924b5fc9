"""Training tables: stacked landmark snapshots of the lake and their out-of-time splits.

Stages hand each other S3 keys, not data, so every step (and every Airflow task) can run on its
own and be re-run: the tables of a cutoff are written once under a key derived from every input
(:func:`diskrisk.layout.dataset`), and a registered version finds its tables again through its
run's tags.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from diskrisk import lake, layout, oot, s3, survival
from diskrisk.config import TrainSettings, lake_prefix
from diskrisk.models import HORIZONS


class ShortLakeError(RuntimeError):
    """The lake's days cannot hold the out-of-time test windows after a training window: no
    challenger can be trained or judged on it (more days, not a retry, fix it)."""


@dataclass(frozen=True)
class DatasetRef:
    """Where a run's tables live, and the lake days they came from.

    ``train_key``: landmarks stacked over the whole window (the production fit);
    ``splits``: per rolling origin, its training and test tables (the out-of-time yardstick);
    ``holdout_key``: every split's test rows together (tagged with their split).
    ``rows``/``events`` count the stored training table; with rows sampled (a weight > 1)
    it stands for ``population_rows`` stacked rows.
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
    population_rows: int = 0  # stacked rows before rows were sampled (0: not known)
    censored_weight: float = 1.0  # weight of each kept censored row (1: none sampled)
    failure_weight: float = 1.0  # weight of each kept failure row (1: none sampled)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DatasetRef:
        return cls(**json.loads(text))


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
    rolling-origin splits (:mod:`diskrisk.oot`), built in DuckDB and written to S3 under a
    content-derived key; no table passes through pandas."""
    t = settings or TrainSettings()
    prefix = lake_prefix() if prefix is None else prefix
    manifest = lake.read_manifest(prefix).get("days", {})
    if not manifest:
        raise ShortLakeError("the lake is empty: collect days first")
    days = sorted(d for d in manifest if cutoff is None or d <= str(cutoff))
    if not days:
        raise ShortLakeError(f"no lake day on or before {cutoff}")
    cut = days[-1]
    p = training_plan(days, t)
    used = {d: manifest[d].get("parquet_sha256", "") for d in days}
    followup = int(max(HORIZONS))  # no published horizon needs more follow-up (oot.write_tables)
    recipe = [cut, t.lookback_days, p.to_dict(), used, followup, t.sampling()]
    ident = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    base = layout.dataset(cut, ident, prefix)
    with tempfile.TemporaryDirectory(prefix="diskrisk-dataset-") as tmp:
        tables = oot.write_tables(
            lake.connect(prefix, columns=survival.source_columns()),
            p,
            cut,
            t.lookback_days,
            Path(tmp),
            followup_days=followup,
            **t.sampling(),
        )
        splits = []
        for sp in p.splits:
            keys = {
                "train_key": f"{base}/{sp.origin}/train.parquet",
                "test_key": f"{base}/{sp.origin}/test.parquet",
            }
            _upload(tables.train(sp.origin), keys["train_key"])
            _upload(tables.test(sp.origin), keys["test_key"])
            splits.append({"origin": sp.origin, **keys, "test_events": tables.test_events[sp.name]})
        _upload(tables.train(), f"{base}/train.parquet")
        _upload(tables.holdout, f"{base}/holdout.parquet")
    return DatasetRef(
        cut,
        t.lookback_days,
        f"{base}/train.parquet",
        f"{base}/holdout.parquet",
        used,
        tables.rows,
        tables.events,
        tables.holdout_events,
        splits,
        p.to_dict(),
        tables.population_rows,
        tables.censored_weight,
        tables.failure_weight,
    )


def _upload(path: Path, key: str) -> None:
    s3.put_if_changed(key, path.read_bytes(), "application/vnd.apache.parquet")


def read_table(key: str) -> pd.DataFrame:
    return s3.read_parquet(key)


def version_table(version: Any, which: str = "train") -> pd.DataFrame:
    """The ``train`` or ``holdout`` table a registered version was built from (its run's
    ``data.<which>_uri`` tag); the training table is drift's reference."""
    from diskrisk.tracking import connect

    return read_table(s3.key_of(connect().get_run(version.run_id).data.tags[f"data.{which}_uri"]))


def version_dataset(version: Any) -> DatasetRef:
    """The :class:`DatasetRef` a registered version was trained on (its run's lineage)."""
    import mlflow

    lineage = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/lineage.json")
    return DatasetRef(**lineage["dataset_ref"])
