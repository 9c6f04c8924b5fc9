"""Data drift between the champion's training snapshot and the newest days (Evidently).

Which features: the current raw SMART values, capacity and vendor. Not tested: age and the SMART
counters that grow with time for every drive (power-on hours 9, power cycles 12): they shift
between any two dates by construction, and KS on tens of thousands of drives would call that
drift every day. Not tested either: the trailing 7/30-day changes, which are functions of the raw
values and depend on how much history the lake held at the snapshot.

The decision follows Evidently's dataset-drift rule: each feature is tested on its own (KS for
numeric features, PSI for categorical ones by default), and the data has drifted when the share of
drifted features reaches ``drift_share``. The pipeline retrains when it has.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from diskrisk.config import DriftSettings

# Evidently tests whose statistic is a p-value: drift when it falls *below* the threshold.
# For the others (PSI, Jensen-Shannon, Wasserstein, ...) it is a distance: drift when at or above.
_P_VALUE_TESTS = {
    "ks",
    "chisquare",
    "z",
    "t_test",
    "mannw",
    "fisher_exact",
    "g_test",
    "anderson",
    "cramer_von_mises",
    "epps_singleton",
    "empirical_mmd",
}


# SMART counters that grow with calendar time on every healthy drive.
TIME_DRIVEN = {"smart_9_raw", "smart_12_raw", "smart_240_raw", "smart_241_raw", "smart_242_raw"}


def drift_features(columns: list[str]) -> tuple[list[str], list[str]]:
    """(numerical, categorical) features to test, chosen from a survival table's columns."""
    numeric = [
        c
        for c in columns
        if (c.startswith("smart_") and c.endswith("_raw") and c not in TIME_DRIVEN)
        or c == "capacity_bytes"
    ]
    return numeric, [c for c in columns if c == "vendor"]


@dataclass
class ColumnDrift:
    method: str
    statistic: float
    threshold: float
    drifted: bool


@dataclass
class DriftSummary:
    drift: bool
    share: float
    drifted_columns: int
    tested_columns: int
    drift_share_threshold: float
    columns: dict[str, ColumnDrift] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    reference_rows: int = 0
    current_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    settings: DriftSettings | None = None,
    seed: int = 0,
) -> tuple[DriftSummary, Any]:
    """Run Evidently's data-drift preset; returns the summary and the Evidently snapshot."""
    s = settings or DriftSettings()
    skipped: dict[str, str] = {}
    usable_num: list[str] = []
    usable_cat: list[str] = []
    for col, bucket in [(c, usable_num) for c in numerical] + [
        (c, usable_cat) for c in categorical
    ]:
        if col not in reference or col not in current:
            skipped[col] = "missing from reference or current data"
        elif reference[col].notna().sum() < 2 or current[col].notna().sum() < 2:
            skipped[col] = "no values on one side"
        else:
            bucket.append(col)
    if not usable_num and not usable_cat:
        raise ValueError(f"no feature can be tested for drift: {skipped}")
    cols = usable_num + usable_cat
    from diskrisk.models import case_weights

    ref = _sample(reference[cols], s.max_rows, seed, case_weights(reference))
    cur = _sample(current[cols], s.max_rows, seed)
    for col in usable_cat:
        ref[col], cur[col] = ref[col].astype(str), cur[col].astype(str)
    definition = DataDefinition(numerical_columns=usable_num, categorical_columns=usable_cat)
    report = Report(
        [
            DataDriftPreset(
                columns=cols,
                num_method=s.num_method,
                cat_method=s.cat_method,
                num_threshold=s.num_threshold,
                cat_threshold=s.cat_threshold,
                drift_share=s.drift_share,
            )
        ]
    )
    snapshot = report.run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    return _summarise(snapshot.dict(), s, skipped, len(ref), len(cur)), snapshot


def _sample(df: pd.DataFrame, n: int, seed: int, weight: np.ndarray | None = None) -> pd.DataFrame:
    """At most ``n`` rows; a weighted table (censored rows sampled for training) is drawn by
    its weights, with replacement, so the sample stands for the fleet and not for a table in
    which failures are over-represented."""
    if weight is not None:
        return df.sample(n=min(n, len(df)), weights=weight, replace=True, random_state=seed)
    return (df.sample(n=n, random_state=seed) if len(df) > n else df).copy()


def _summarise(
    result: dict[str, Any], s: DriftSettings, skipped: dict[str, str], n_ref: int, n_cur: int
) -> DriftSummary:
    columns: dict[str, ColumnDrift] = {}
    count = share = None
    for metric in result["metrics"]:
        cfg, value = metric["config"], metric["value"]
        if cfg["type"].endswith(":DriftedColumnsCount"):
            count, share = int(value["count"]), float(value["share"])
        elif cfg["type"].endswith(":ValueDrift"):
            method, threshold, stat = cfg["method"], float(cfg["threshold"]), float(value)
            drifted = stat < threshold if method in _P_VALUE_TESTS else stat >= threshold
            columns[cfg["column"]] = ColumnDrift(method, _finite(stat), threshold, drifted)
    if count is None or share is None:
        raise RuntimeError("Evidently returned no DriftedColumnsCount metric")
    if count != sum(c.drifted for c in columns.values()):
        raise RuntimeError("per-column drift verdicts disagree with Evidently's count")
    return DriftSummary(
        drift=share >= s.drift_share,
        share=share,
        drifted_columns=count,
        tested_columns=len(columns),
        drift_share_threshold=s.drift_share,
        columns=columns,
        skipped=skipped,
        reference_rows=n_ref,
        current_rows=n_cur,
    )


def _finite(x: float) -> float:
    return x if math.isfinite(x) else float("nan")


def write_report(summary: DriftSummary, snapshot: Any, out_dir: Path) -> dict[str, Path]:
    """HTML report and JSON summary on local disk (then shipped to S3 and MLflow)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    html, js = out_dir / "drift_report.html", out_dir / "drift_summary.json"
    snapshot.save_html(str(html))
    js.write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    return {"html": html, "json": js}


# --- the pipeline's check --------------------------------------------------------------------------
def check_champion(day: str, prefix: str = "") -> dict[str, Any]:
    """The champion's training snapshot against ``day``'s drives: the verdict, the report in
    S3 (``reports/drift/<day>/``) and a run in the drift experiment."""
    import tempfile

    import mlflow

    from diskrisk import layout, s3
    from diskrisk.config import TrainSettings
    from diskrisk.dataset import version_table
    from diskrisk.registry import CHAMPION, Registry
    from diskrisk.survival import snapshot_features
    from diskrisk.tracking import drift_experiment, set_shared_experiment

    version = Registry.connect().version(CHAMPION)
    if version is None:
        return {"drift": None, "reason": "no champion yet: nothing to compare with"}
    reference = version_table(version, "train")
    current = snapshot_features(day, TrainSettings().lookback_days, prefix=prefix)
    numeric, categorical = drift_features(list(reference.columns))
    summary, snapshot = check_drift(reference, current, numeric, categorical)
    out = write_report(summary, snapshot, Path(tempfile.mkdtemp(prefix="diskrisk-drift-")))
    keys = {}
    for kind, path in out.items():
        key = layout.drift_report(day, path.name, prefix)
        s3.put_if_changed(
            key, path.read_bytes(), "text/html" if kind == "html" else "application/json"
        )
        keys[kind] = s3.uri(key)
    set_shared_experiment(drift_experiment())
    with mlflow.start_run(run_name=f"drift-{day}") as run:
        mlflow.set_tags(
            {
                "data.day": day,
                "champion_version": str(version.version),
                "drift": str(summary.drift).lower(),
            }
        )
        mlflow.log_metrics(
            {"drift_share": summary.share, "drifted_columns": summary.drifted_columns}
        )
        for path in out.values():
            mlflow.log_artifact(str(path))
    return {
        "drift": summary.drift,
        "share": summary.share,
        "day": day,
        "drifted": sorted(c for c, v in summary.columns.items() if v.drifted),
        "champion_version": str(version.version),
        "report": keys["html"],
        "mlflow_run_id": run.info.run_id,
    }


def latest_verdict() -> str:
    """One line on the newest drift check (from the drift experiment)."""
    import mlflow

    from diskrisk.tracking import connect, drift_experiment

    connect()
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
