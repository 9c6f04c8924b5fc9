"""Holdout evaluation on synthetic data (generator in test_models)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from diskrisk.evaluate import EvaluationError, calibration_table, evaluate
from diskrisk.models import make_model
from test_models import make_frame


@pytest.fixture(scope="module")
def train():
    return make_frame(2000, seed=11)


@pytest.fixture(scope="module")
def holdout():
    return make_frame(1500, seed=12)


@pytest.fixture(scope="module")
def cox(train):
    return make_model("coxph").fit(train)


@pytest.fixture(scope="module")
def cox_eval(cox, train, holdout):
    return evaluate(cox, train, holdout, horizons=(30, 90, 400), n_bootstrap=50, seed=3)


def test_metrics_present_and_sane(cox_eval):
    m = cox_eval.metrics
    for key in (
        "harrell_c",
        "uno_c",
        "auc_30d",
        "auc_90d",
        "brier_30d",
        "brier_90d",
        "ibs",
        "calibration_abs_err_90d",
        "calibration_oe_90d",
    ):
        assert np.isfinite(m[key]), key
        assert isinstance(m[key], float)
    assert m["harrell_c"] > 0.7 and m["uno_c"] > 0.7 and m["auc_90d"] > 0.7
    assert m["harrell_c_ci_low"] <= m["harrell_c"] <= m["harrell_c_ci_high"]
    assert 0 <= m["ibs"] < 0.25
    assert 0.5 < m["calibration_oe_90d"] < 2  # well specified model: O/E near 1
    assert m["uno_c_tau"] == 90


def test_unsupported_horizon_dropped_with_note(cox_eval):
    assert cox_eval.horizons == [30, 90]
    assert cox_eval.dropped_horizons == [400]
    assert any("horizon 400 d dropped" in n for n in cox_eval.notes)
    assert "auc_400d" not in cox_eval.metrics


def test_bootstrap_is_seeded(cox, train, holdout):
    a = evaluate(cox, train, holdout, n_bootstrap=30, seed=5, figures=False).metrics
    b = evaluate(cox, train, holdout, n_bootstrap=30, seed=5, figures=False).metrics
    c = evaluate(cox, train, holdout, n_bootstrap=30, seed=6, figures=False).metrics
    assert a["harrell_c_ci_low"] == b["harrell_c_ci_low"]
    assert a["harrell_c_ci_low"] != c["harrell_c_ci_low"]


def test_reference_model_scores_lower(train, holdout, cox_eval):
    km = make_model("km").fit(train)
    ev = evaluate(km, train, holdout, n_bootstrap=20, figures=False)
    assert ev.metrics["harrell_c"] < cox_eval.metrics["harrell_c"] - 0.05
    assert ev.metrics["ibs"] >= cox_eval.metrics["ibs"]


def test_refuses_holdout_without_events(cox, train, holdout):
    with pytest.raises(EvaluationError, match="0 events"):
        evaluate(cox, train, holdout.assign(event=False))
    few = holdout.assign(event=False)
    few.loc[few.index[:3], "event"] = True
    with pytest.raises(EvaluationError, match="3 events"):
        evaluate(cox, train, few, min_events=5)
    late = holdout.assign(event=holdout["duration_days"] > 170)  # all after training follow-up
    with pytest.raises(EvaluationError, match="no holdout failure before"):
        evaluate(cox, train.assign(duration_days=train["duration_days"].clip(upper=150)), late)


def test_holdout_longer_than_training_follow_up_is_capped(cox, train, holdout):
    short_train = train.assign(duration_days=np.minimum(train["duration_days"], 60))
    model = make_model("coxph").fit(short_train)
    ev = evaluate(model, short_train, holdout, n_bootstrap=0, figures=False)
    assert ev.horizons == [30] and ev.dropped_horizons == [90]
    assert any(n.startswith("holdout capped at 59 d") for n in ev.notes)
    assert ev.metrics["ibs_t_max"] < 59


def test_figures_and_save(cox_eval, tmp_path):
    assert set(cox_eval.figures) == {"calibration", "km_by_vendor", "importance"}
    assert all(isinstance(f, Figure) for f in cox_eval.figures.values())
    paths = cox_eval.save(tmp_path)
    for name in ("calibration", "km_by_vendor", "importance"):
        assert paths[name].stat().st_size > 1000
    saved = json.loads(paths["evaluation"].read_text())
    assert saved["metrics"]["harrell_c"] == cox_eval.metrics["harrell_c"]
    assert len(cox_eval.calibration) == 10
    assert cox_eval.calibration["n"].sum() == 1500


def test_permutation_importance_for_forest(train, holdout):
    rsf = make_model("rsf", {"n_estimators": 20}).fit(train)
    ev = evaluate(rsf, train, holdout, n_bootstrap=0, permutation_repeats=2)
    top = ev.importance.sort_values(ascending=False).index[:2]
    assert set(top) == {"smart_5_raw", "smart_197_raw"}
    assert "importance" in ev.figures


def test_calibration_table_perfect_prediction():
    rng = np.random.default_rng(0)
    p = np.repeat(np.linspace(0.05, 0.5, 10), 400)
    fail = rng.random(p.size) < p
    time = np.where(fail, 10, 30).astype(float)  # everybody followed past the horizon
    table = calibration_table(p, time, fail, horizon=20)
    assert np.allclose(table["predicted"], table["observed"], atol=0.06)
