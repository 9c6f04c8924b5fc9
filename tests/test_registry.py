"""The promotion rule, alone and against the real MLflow registry."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest

from diskrisk.registry import (
    CHALLENGER,
    CHAMPION,
    PromotionSettings,
    alias_version,
    apply,
    champion_c_index,
    decide,
    register,
)

RULE = PromotionSettings(min_gain=0.01, min_events=5)


def test_first_valid_challenger_becomes_champion():
    d = decide(0.70, None, 20, RULE)
    assert d.promote and d.reason == "no champion yet"


@pytest.mark.parametrize(
    ("challenger", "champion", "events", "promote"),
    [
        (0.80, 0.75, 20, True),
        (0.755, 0.75, 20, False),
        (0.70, 0.75, 20, False),
        (0.90, 0.75, 4, False),
        (float("nan"), 0.75, 20, False),
        (0.90, float("nan"), 20, False),
        (0.90, None, 4, False),
    ],
)
def test_rule(challenger, champion, events, promote):
    d = decide(challenger, champion, events, RULE)
    assert d.promote is promote, d.reason
    assert d.tags()["promotion.decision"] == ("promoted" if promote else "refused")


class ColumnRisk(mlflow.pyfunc.PythonModel):
    """Risk = one column (+ noise): strong when the column drives failures, weak otherwise."""

    def __init__(self, column: str | None, seed: int = 0):
        self.column, self.seed = column, seed

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        rng = np.random.default_rng(self.seed)
        noise = rng.normal(size=len(model_input))
        base = model_input[self.column].to_numpy(float) if self.column else 0.0
        return pd.DataFrame({"risk": base * 10 + noise})


def holdout(n: int = 3000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    smart5 = rng.poisson(0.5, n).astype(float)
    hazard = 0.002 * np.exp(1.2 * smart5)
    t_fail = rng.exponential(1 / hazard)
    follow = rng.integers(5, 60, n)
    return pd.DataFrame(
        {
            "smart_5_raw": smart5,
            "duration_days": np.maximum(1, np.minimum(t_fail, follow)).astype(int),
            "event": t_fail <= follow,
        }
    )


@pytest.mark.integration
def test_champion_challenger_both_directions(stack_env):
    from diskrisk.tracking import connect

    client = connect()
    name = f"test-risk-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(f"test-registry-{uuid.uuid4().hex[:6]}")
    data = holdout()
    events = int(data["event"].sum())
    assert events >= RULE.min_events

    def challenge(column: str | None) -> tuple[str, float]:
        from sksurv.metrics import concordance_index_censored

        model = ColumnRisk(column)
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=model, pip_requirements=["mlflow", "pandas", "numpy"]
            )
        version = register(client, name, info.model_uri, {"test": "1"})
        risk = model.predict(None, data)["risk"].to_numpy()
        c = concordance_index_censored(
            data["event"].to_numpy(), data["duration_days"].to_numpy(float), risk
        )[0]
        champ = champion_c_index(client, name, data)
        d = decide(c, champ[1] if champ else None, events, RULE)
        apply(client, name, version.version, d)
        assert alias_version(client, name, CHALLENGER).version == version.version
        return version.version, c

    weak_v, weak_c = challenge(None)  # no champion yet: promoted
    assert alias_version(client, name, CHAMPION).version == weak_v
    strong_v, strong_c = challenge("smart_5_raw")  # clearly better on the same holdout: promoted
    assert strong_c > weak_c + RULE.min_gain
    assert alias_version(client, name, CHAMPION).version == strong_v
    refused_v, _ = challenge(None)  # weak again: refused, champion stays
    assert alias_version(client, name, CHAMPION).version == strong_v
    tags = client.get_model_version(name, refused_v).tags
    assert tags["promotion.decision"] == "refused" and "gain" in tags["promotion.reason"]
    assert client.get_model_version(name, strong_v).tags["promotion.decision"] == "promoted"
