"""Failure-risk scores for every drive observed on a day, from the champion model.

The champion is loaded by alias and pinned to one version for the whole run, so every row of a
day carries the same model version and MLflow run id even if a promotion happens meanwhile.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd

from diskrisk.registry import CHAMPION, Predictor, Registry
from diskrisk.sinks import COLUMNS as SCORE_COLUMNS  # the sink's input is scoring's output


class ScoringError(RuntimeError):
    pass


def champion() -> Predictor:
    """The current champion, loaded (:class:`diskrisk.registry.NoModelError` before the first
    training)."""
    return Registry.connect().load(CHAMPION)


def score_frame(
    features: pd.DataFrame, predictor: Predictor, day: date | str, scored_at: str | None = None
) -> pd.DataFrame:
    """Predict and shape one row per drive (pure apart from the model call)."""
    if features.empty:
        raise ScoringError(f"no drive was observed on {day}: nothing to score")
    version = predictor.version
    pred = predictor.predict(features)
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
