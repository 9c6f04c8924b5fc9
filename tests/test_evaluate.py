"""Calibration and importance pieces on synthetic data (generator in test_models)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from diskrisk.evaluate import calibration_table, permutation_importance, plot_importance
from diskrisk.models import make_model
from test_models import make_frame


@pytest.fixture(scope="module")
def train():
    return make_frame(2000, seed=11)


@pytest.fixture(scope="module")
def holdout():
    return make_frame(1500, seed=12)


def test_permutation_importance_for_forest(train, holdout):
    rsf = make_model("rsf", {"n_estimators": 20}).fit(train)
    importance = permutation_importance(rsf, holdout, n_repeats=2, seed=0)
    top = importance.sort_values(ascending=False).index[:2]
    assert set(top) == {"smart_5_raw", "smart_197_raw"}
    assert isinstance(plot_importance(importance, "rsf"), Figure)


def test_calibration_table_perfect_prediction():
    rng = np.random.default_rng(0)
    p = np.repeat(np.linspace(0.05, 0.5, 10), 400)
    fail = rng.random(p.size) < p
    time = np.where(fail, 10, 30).astype(float)  # everybody followed past the horizon
    table = calibration_table(p, time, fail, horizon=20)
    assert np.allclose(table["predicted"], table["observed"], atol=0.06)
