"""Failure-risk scores for every drive observed on a day, from the champion model.

The champion is loaded by alias and pinned to one version for the whole run, so every row of a
day carries the same model version and MLflow run id even if a promotion happens meanwhile.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import mlflow
import pandas as pd

from diskrisk.config import MlflowSettings, cached
from diskrisk.pyfunc import with_long_columns
from diskrisk.registry import CHAMPION, alias_version
from diskrisk.sinks import COLUMNS as SCORE_COLUMNS  # the sink's input is scoring's output
from diskrisk.tracking import connect


class ScoringError(RuntimeError):
    pass


def champion() -> tuple[Any, Any]:
    """(model version, loaded pyfunc) of the current champion."""
    client = connect()
    name = cached(MlflowSettings).model_name
    version = alias_version(client, name, CHAMPION)
    if version is None:
        raise ScoringError(f"registered model {name!r} has no {CHAMPION!r} alias yet: train first")
    return version, mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")


def score_frame(
    features: pd.DataFrame, version: Any, model: Any, day: date | str, scored_at: str | None = None
) -> pd.DataFrame:
    """Predict and shape one row per drive (pure apart from the model call)."""
    if features.empty:
        raise ScoringError(f"no drive was observed on {day}: nothing to score")
    pred = model.predict(with_long_columns(features))
    out = pd.DataFrame(
        {
            "serial_number": features["serial_number"].astype(str).to_numpy(),
            "model": features["model"].astype(str).to_numpy(),
            "risk": pred["risk"].to_numpy(dtype=float),
            "p_fail_30d": pred["p_fail_30d"].to_numpy(dtype=float),
            "p_fail_90d": pred["p_fail_90d"].to_numpy(dtype=float),
        }
    )
    out["rank_pct"] = out["risk"].rank(pct=True, method="max") * 100.0
    out["model_name"] = version.name
    out["model_version"] = str(version.version)
    out["run_id"] = version.run_id
    out["data_date"] = str(pd.Timestamp(day).date())
    out["scored_at"] = scored_at or datetime.now(UTC).isoformat(timespec="seconds")
    return out[list(SCORE_COLUMNS)]
