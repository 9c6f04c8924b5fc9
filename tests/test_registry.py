"""The promotion rule, alone and against the real MLflow registry."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest

from diskrisk.config import PromotionSettings
from diskrisk.registry import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    apply,
    champion_c_index,
    decide,
    register,
)

RULE = PromotionSettings(min_gain=0.01, min_events=5)


def test_first_valid_challenger_becomes_champion():
    d = decide(0.70, None, 20, RULE)
    assert d.promote and d.reason.startswith("no champion yet")


@pytest.mark.parametrize(
    ("challenger", "champion", "events", "ci", "promote"),
    [
        (0.80, 0.75, 20, (0.02, 0.08), True),
        (0.755, 0.75, 20, (0.001, 0.009), False),  # interval above 0 but gain < min_gain
        (0.70, 0.75, 20, (-0.08, -0.02), False),
        (0.90, 0.75, 4, (0.10, 0.20), False),
        (float("nan"), 0.75, 20, (0.1, 0.2), False),
        (0.90, float("nan"), 20, (0.1, 0.2), False),
        (0.90, None, 4, None, False),
        (0.90, 0.75, 20, None, False),  # a gain without its uncertainty never promotes
    ],
)
def test_rule(challenger, champion, events, ci, promote):
    d = decide(challenger, champion, events, RULE, ci)
    assert d.promote is promote, d.reason
    assert d.tags()["promotion.decision"] == ("promoted" if promote else "refused")


def test_gain_inside_its_interval_is_refused():
    """A large point gain whose paired bootstrap interval includes 0 is noise: refused."""
    d = decide(0.92, 0.88, 50, RULE, (-0.01, 0.09))
    assert not d.promote
    assert "inside its uncertainty" in d.reason and "-0.0100..+0.0900" in d.reason
    assert d.tags()["promotion.gain_ci95"] == "-0.0100..+0.0900"
    # the same gain measured tightly enough is promoted, and the tags name the figures
    d = decide(0.92, 0.88, 50, RULE, (0.01, 0.07))
    assert d.promote and "gain +0.0400" in d.reason and "above 0" in d.reason
    assert d.tags()["promotion.champion_c_index"] == "0.880000"


def test_no_champion_tag_is_not_empty():
    tags = decide(0.9, None, 20, RULE).tags()
    assert tags["promotion.champion_c_index"] == "none"
    assert all(v != "" for v in tags.values())


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
    frame = data.assign(
        **{"split": "s", "serial_number": [f"d{i}" for i in range(len(data))]},
        snapshot_date=pd.Timestamp("2024-01-01"),
    )
    events = int(data["event"].sum())
    assert events >= RULE.min_events

    def challenge(column: str | None) -> tuple[str, float]:
        from diskrisk.oot import paired_difference, pooled_c

        model = ColumnRisk(column)
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=model, pip_requirements=["mlflow", "pandas", "numpy"]
            )
        version = register(client, name, info.model_uri, {"test": "1"})
        ours = frame.assign(risk=model.predict(None, data)["risk"].to_numpy())
        c = pooled_c(ours)
        champ = champion_c_index(client, name, data)
        if champ is None:
            d = decide(c, None, events, RULE)
        else:  # the champion as served by the registry, paired on the same drives
            served = mlflow.pyfunc.load_model(f"models:/{name}/{champ[0]}").predict(data)
            theirs = frame.assign(risk=served["risk"].to_numpy())
            paired = paired_difference(ours, theirs, n=200)
            assert paired["c_b"] == pytest.approx(champ[1])
            d = decide(c, champ[1], events, RULE, (paired["gain_ci_low"], paired["gain_ci_high"]))
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
