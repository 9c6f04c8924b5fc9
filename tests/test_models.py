"""Model families on a synthetic survival frame shaped like docs/contracts.md.

`make_frame` (also imported by test_evaluate/test_pyfunc) draws exponential failure times whose
hazard rises with log1p(smart_5_raw) and log1p(smart_197_raw), weakly with age, and censors
administratively after 30-180 days of follow-up.
"""

from __future__ import annotations

import os
import pickle
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from sksurv.metrics import concordance_index_censored

from diskrisk import models
from diskrisk.models import (
    DEFAULT_PARAMS,
    FAMILIES,
    ModelError,
    ParamsError,
    breslow,
    build_preprocessor,
    make_model,
    prepare_input,
    validate_params,
    warm_start,
)

HORIZONS = (30, 90)
FAST = {  # small ensembles keep the suite quick; defaults are exercised by test_default_sizes
    "rsf": {"n_estimators": 30},
    "gbsa": {"n_estimators": 40},
}


def make_frame(n: int = 2000, seed: int = 0, base_rate: float = 4e-4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    vendors = rng.choice(["Seagate", "HGST", "Toshiba", "WDC"], size=n, p=[0.5, 0.25, 0.15, 0.1])
    age = rng.uniform(30, 2500, n)
    s5 = np.where(rng.random(n) < 0.15, rng.geometric(0.02, n), 0).astype(float)
    s197 = np.where(rng.random(n) < 0.08, rng.geometric(0.1, n), 0).astype(float)
    s187 = np.where(rng.random(n) < 0.1, rng.poisson(3, n), 0).astype(float)
    s187[vendors != "Seagate"] = np.nan  # vendor-specific attribute
    log_hazard = 0.9 * np.log1p(s5) + 1.0 * np.log1p(s197) + 0.0002 * age
    t_fail = rng.exponential(1.0 / (base_rate * np.exp(log_hazard)))
    follow = rng.integers(30, 181, n).astype(float)
    event = t_fail <= follow
    duration = np.maximum(np.ceil(np.minimum(t_fail, follow)), 1).astype(int)
    df = pd.DataFrame(
        {
            "serial_number": [f"S{i:06d}" for i in range(n)],
            "model": np.char.add(vendors.astype(str), " X"),
            "vendor": vendors,
            "capacity_bytes": rng.choice([4e12, 8e12, 12e12, 16e12], n),
            "snapshot_date": pd.Timestamp("2024-01-01"),
            "age_days": age,
            "smart_5_raw": s5,
            "smart_5_raw_d7": np.where(s5 > 0, rng.poisson(1, n), 0.0),
            "smart_5_raw_d30": np.where(s5 > 0, rng.poisson(3, n), 0.0),
            "smart_9_raw": age * 24.0,
            "smart_187_raw": s187,
            "smart_197_raw": s197,
            "smart_197_raw_d7": np.where(s197 > 0, rng.poisson(1, n), 0.0),
            "smart_197_raw_d30": np.nan,  # never known: must be dropped, not crash
            "duration_days": duration,
            "event": event,
            "entry_age_days": age,
            "exit_age_days": age + duration,
        }
    )
    for col in ("smart_5_raw", "smart_197_raw", "smart_5_raw_d7"):  # scattered missing values
        df.loc[rng.random(n) < 0.03, col] = np.nan
    return df


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return make_frame(2000, seed=1)


@pytest.fixture(scope="module")
def test() -> pd.DataFrame:
    return make_frame(1500, seed=2)


@pytest.fixture(scope="module")
def fitted(train) -> dict:
    return {f: make_model(f, FAST.get(f)).fit(train) for f in FAMILIES}


def harrell(df: pd.DataFrame, risk: np.ndarray) -> float:
    return concordance_index_censored(df["event"].to_numpy(), df["duration_days"], risk)[0]


def test_synthetic_frame_has_events(train):
    assert 0.02 < train["event"].mean() < 0.3


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_shapes_and_probabilities(fitted, test, family):
    model = fitted[family]
    risk = model.predict_risk(test)
    assert risk.shape == (len(test),) and np.isfinite(risk).all()
    surv = model.predict_survival(test, horizons=(7, 30, 90))
    assert surv.shape == (len(test), 3)
    assert ((surv >= 0) & (surv <= 1)).all()
    assert (np.diff(surv, axis=1) <= 1e-12).all(), "S(t) must not increase with t"
    assert model.family == family and model.params == {
        **DEFAULT_PARAMS[family],
        **FAST.get(family, {}),
    }


@pytest.mark.parametrize("family", ["coxph", "weibull_aft", "rsf", "gbsa", "coxnet", "ensemble"])
def test_riskier_drives_rank_higher(fitted, test, family):
    model = fitted[family]
    healthy = test.iloc[:50].assign(smart_5_raw=0.0, smart_197_raw=0.0)
    sick = healthy.assign(smart_5_raw=200.0, smart_197_raw=30.0)
    assert (model.predict_risk(sick) > model.predict_risk(healthy)).mean() > 0.9
    p_sick = 1 - model.predict_survival(sick, (90,))[:, 0]
    p_healthy = 1 - model.predict_survival(healthy, (90,))[:, 0]
    assert p_sick.mean() > 2 * p_healthy.mean()


def test_concordance_signal_vs_reference(fitted, test):
    c_cox = harrell(test, fitted["coxph"].predict_risk(test))
    c_age = harrell(test, fitted["km"].predict_risk(test))
    assert c_cox > 0.7
    assert 0.4 < c_age < 0.68
    assert c_cox > c_age + 0.05
    for family in ("weibull_aft", "rsf", "gbsa", "coxnet", "ensemble"):
        assert harrell(test, fitted[family].predict_risk(test)) > 0.65, family


def test_ensemble_is_the_rank_average_of_its_members(fitted, train, test):
    ens = fitted["ensemble"]
    assert [m.family for m in ens.members_] == ["coxnet", "coxph", "weibull_aft"]
    one_by_one = np.concatenate([ens.predict_risk(test.iloc[[i]]) for i in range(20)])
    assert np.allclose(one_by_one, ens.predict_risk(test.iloc[:20]))  # no batch dependence
    assert ((ens.predict_risk(test) > 0) & (ens.predict_risk(test) <= 1)).all()
    members = [make_model(f).fit(train) for f in ("coxnet", "coxph", "weibull_aft")]
    assert np.allclose(
        ens.predict_survival(test, (30,)),
        np.mean([m.predict_survival(test, (30,)) for m in members], axis=0),
    )
    with pytest.raises(ParamsError, match="single model families"):
        make_model("ensemble", {"members": ["coxph", "ensemble"]})


def test_ensemble_ranks_against_each_distinct_training_risk(train, test):
    """A member's risk becomes the weighted share of training rows at or below it; the
    reference keeps each distinct training risk once, so drives that tie add nothing to it."""
    tied = pd.concat([train] * 3, ignore_index=True)
    w = np.repeat([1.0, 2.0, 0.5], len(train))
    ens = make_model("ensemble").fit(tied.assign(weight=w))
    expected = []
    for m, ref in zip(ens.members_, ens.reference_, strict=True):
        r_train, r_test = m.predict_risk(tied), m.predict_risk(test)
        expected.append((r_test[:, None] >= r_train[None, :]) @ w / w.sum())
        assert ref.size == np.unique(r_train).size <= len(train)
    np.testing.assert_allclose(ens.predict_risk(test), np.mean(expected, axis=0), rtol=1e-9)


def test_landmark_km_is_constant(train, test):
    model = make_model("km", {"time_scale": "landmark"}).fit(train)
    assert np.all(model.predict_risk(test) == 0)
    s = model.predict_survival(test)
    assert np.allclose(s, s[0])
    assert harrell(test, model.predict_risk(test)) == pytest.approx(0.5)


def test_preprocessing_is_stored_and_robust(fitted, test):
    model = fitted["coxph"]
    assert "smart_197_raw_d30" not in model.input_columns_  # all-NaN column dropped at fit
    assert any(n.startswith("missingindicator_") for n in model.feature_names_)
    # scoring frame: columns shuffled, one missing, an unseen vendor, int dtypes, extra columns
    scoring = test.drop(columns=["smart_187_raw", "duration_days", "event"])
    scoring = scoring[scoring.columns[::-1]].copy()
    scoring.loc[scoring.index[:5], "vendor"] = "NewVendor"
    scoring["capacity_bytes"] = scoring["capacity_bytes"].astype("int64")
    risk = model.predict_risk(scoring)
    assert np.isfinite(risk).all()
    # identical transforms: same rows, same scores whatever the column order or dtypes
    assert np.allclose(
        model.predict_risk(test.iloc[5:].drop(columns=["smart_187_raw"])),
        risk[5:],
    )


def test_params_validation_names_family_and_key():
    with pytest.raises(ParamsError, match=r"rsf: unknown parameter 'n_trees'"):
        validate_params("rsf", {"n_trees": 10})
    with pytest.raises(ParamsError, match=r"coxph: parameter 'l1_ratio'"):
        make_model("coxph", {"l1_ratio": 2})
    with pytest.raises(ParamsError, match="unknown model family 'xgb'"):
        make_model("xgb")
    assert validate_params("gbsa", {"learning_rate": 0.05})["learning_rate"] == 0.05
    assert DEFAULT_PARAMS["rsf"]["n_jobs"] == 2


def test_fit_refuses_unusable_data(train):
    with pytest.raises(ModelError, match="at least 2 events"):
        make_model("coxph").fit(train.assign(event=False))
    with pytest.raises(ModelError, match="duration_days"):
        make_model("coxph").fit(train.drop(columns=["duration_days"]))
    with pytest.raises(ModelError, match="not fitted"):
        make_model("coxph").predict_risk(train)


@pytest.mark.parametrize("family", ["gbsa", "rsf"])
def test_warm_start_adds_estimators(fitted, train, test, family):
    model = fitted[family]
    before = model.n_estimators_fitted
    grown = warm_start(model, train, extra_estimators=10)
    assert grown.n_estimators_fitted == before + 10
    assert grown.params["n_estimators"] == before + 10
    assert model.n_estimators_fitted == before  # the original is untouched
    assert harrell(test, grown.predict_risk(test)) > 0.65


def test_unconverged_newton_fit_is_noted(train, fitted):
    """lifelines returns coefficients even when Newton-Raphson stops at max_steps; the model
    keeps the warning as a note (model card, registry tag) instead of passing for converged."""
    assert fitted["coxph"].fit_notes_ == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the convergence warning is consumed, not re-raised
        stopped = make_model("coxph", {"max_steps": 1}).fit(train)
    assert stopped.fit_notes_ == ["coxph: Newton-Raphson failed to converge sufficiently"]
    assert make_model("coxph", {"max_steps": 1}).fit_notes_ == []  # per fit, not per class


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_pass_prediction_equals_the_two_calls(fitted, test, family):
    """Scoring's single call returns what predict_risk and predict_survival return."""
    model = fitted[family]
    risk, survival = model.predict_risk_and_survival(test, (30, 90))
    np.testing.assert_array_equal(risk, model.predict_risk(test))
    np.testing.assert_array_equal(survival, model.predict_survival(test, (30, 90)))


def test_rsf_predictions_equal_sksurv(fitted, test):
    """The forest's own leaf-table path gives sksurv's numbers (risk = mean of the trees' summed
    cumulative hazard at event times, S = mean of the trees' Kaplan-Meier curves)."""
    model = fitted["rsf"]
    forest, X = model.estimator_, model._transform(test)
    np.testing.assert_allclose(model.predict_risk(test), forest.predict(X), rtol=1e-12)
    times = forest.unique_times_
    curves = forest.predict_survival_function(X, return_array=True)
    for h in (0.5, 30, 90, 1e4):  # before the first time point, on the grid, past its end
        at = np.searchsorted(times, h, side="right") - 1
        expected = np.ones(len(test)) if at < 0 else curves[:, at]
        floor = 1.0 / (model.n_train_ + 1)
        np.testing.assert_allclose(
            model.predict_survival(test, (h,))[:, 0], np.clip(expected, floor, 1), rtol=1e-12
        )


def test_warm_start_on_new_data(fitted, test):
    newer = make_frame(1500, seed=3)
    gbsa = warm_start(fitted["gbsa"], newer, extra_estimators=5)
    assert gbsa.n_estimators_fitted == fitted["gbsa"].n_estimators_fitted + 5
    # RSF trees store curves on the training time grid: new grid -> full refit, still bigger
    rsf = warm_start(fitted["rsf"], newer, extra_estimators=5)
    assert rsf.n_estimators_fitted == fitted["rsf"].n_estimators_fitted + 5
    cox = warm_start(fitted["coxph"], newer, extra_estimators=5)  # no stages: refit
    assert cox.n_train_ == len(newer)


def test_censored_subsampling_keeps_events(train):
    model = make_model("gbsa", {"n_estimators": 20, "max_censored_rows": 500}).fit(train)
    rows, weight = model._sample(*_target(train), None)
    n_events = train["event"].sum()
    assert train["event"].to_numpy()[rows].sum() == n_events
    assert len(rows) == n_events + 500
    assert weight.max() == pytest.approx((len(train) - n_events) / 500)
    # the baseline comes from the full frame: mean predicted 90-day failure stays near observed
    full = make_model("gbsa", {"n_estimators": 20, "max_censored_rows": None}).fit(train)
    p_sub = 1 - model.predict_survival(train, (90,)).mean()
    p_full = 1 - full.predict_survival(train, (90,)).mean()
    assert p_sub == pytest.approx(p_full, rel=0.25)


def _ipw_sample(df: pd.DataFrame, keep: int, seed: int = 0) -> pd.DataFrame:
    """Every failure and ``keep`` censored rows weighted n_censored / keep (as the dataset
    stage samples a fleet's stacked table)."""
    censored = df.index[~df["event"]]
    kept = np.random.default_rng(seed).choice(censored, keep, replace=False)
    out = df.loc[df["event"] | df.index.isin(kept)].copy()
    out["weight"] = np.where(out["event"], 1.0, round(len(censored) / keep * 1024) / 1024)
    return out.reset_index(drop=True)


def test_breslow_with_unit_weights_is_sksurvs():
    from sksurv.linear_model.coxph import BreslowEstimator

    rng = np.random.default_rng(0)
    time_ = rng.integers(1, 40, 500).astype(float)  # many ties
    event = rng.random(500) < 0.3
    f = rng.normal(size=500)
    times, s0 = breslow(f, time_, event)
    ref = BreslowEstimator().fit(f, event, time_).baseline_survival_
    np.testing.assert_allclose(s0, ref(times), rtol=1e-10)
    # integer weights are duplicated rows
    w = rng.integers(1, 4, 500)
    dup = np.repeat(np.arange(500), w)
    t2, s2 = breslow(f[dup], time_[dup], event[dup])
    t3, s3 = breslow(f, time_, event, w.astype(float))
    np.testing.assert_allclose(s3, s2, rtol=1e-10)
    np.testing.assert_array_equal(t3, t2)


def test_km_weights_are_duplicated_rows(train):
    w = np.random.default_rng(1).integers(1, 4, len(train))
    weighted = make_model("km").fit(train.assign(weight=w.astype(float)))
    duplicated = make_model("km").fit(train.loc[train.index.repeat(w)].reset_index(drop=True))
    np.testing.assert_allclose(
        weighted.predict_survival(test_frame := train.head(200), HORIZONS),
        duplicated.predict_survival(test_frame, HORIZONS),
        rtol=1e-9,
    )
    assert weighted.n_train_ == duplicated.n_train_ == int(w.sum())


@pytest.mark.parametrize("family", ["coxph", "weibull_aft", "km"])
def test_a_fit_ships_without_its_training_rows(family, test, monkeypatch):
    """The lifelines families drop the rows their fitters keep: the same predictions, from a
    pickle a fraction of the size, which (the covariate families) does not grow with the rows."""
    frame = make_frame(20_000, seed=3).assign(weight=0.5)  # weights are kept rows too
    slim = make_model(family).fit(frame)
    with monkeypatch.context() as m:
        m.setattr(models, "_LIFELINES_ROWS", ())
        whole = make_model(family).fit(frame)
    shipped = pickle.loads(pickle.dumps(slim))
    for a, b in zip(
        shipped.predict_risk_and_survival(test, HORIZONS),
        whole.predict_risk_and_survival(test, HORIZONS),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert len(pickle.dumps(slim)) < len(pickle.dumps(whole)) / 3
    if family != "km":  # km's curve on the age scale has a step per distinct entry/exit age
        small = make_model(family).fit(make_frame(2_000, seed=3))
        assert len(pickle.dumps(slim)) < 1.5 * len(pickle.dumps(small))


@pytest.mark.parametrize("family", ["coxph", "weibull_aft", "coxnet", "km", "gbsa", "ensemble"])
def test_weighted_sample_stands_for_the_full_table(family):
    """Fitted on every failure and a tenth of the censored rows, weighted, a family predicts
    about the failure probability of its fit on the whole table; the same sample unweighted
    over-states it (failures are over-represented in it): the weights are used."""
    full = make_frame(6000, seed=11)
    sample = _ipw_sample(full, keep=int((~full["event"]).sum() // 10))
    params = FAST.get(family)
    p_full = 1 - make_model(family, params).fit(full).predict_survival(full, (90,)).mean()
    weighted = make_model(family, params).fit(sample)
    p_weighted = 1 - weighted.predict_survival(full, (90,)).mean()
    unweighted = make_model(family, params).fit(sample.drop(columns="weight"))
    p_unweighted = 1 - unweighted.predict_survival(full, (90,)).mean()
    assert p_weighted == pytest.approx(p_full, rel=0.25)
    assert p_unweighted > 2 * p_full
    assert weighted.n_train_ == pytest.approx(len(full), rel=0.01)
    if family != "km":  # and it still ranks the drives
        c = concordance_index_censored(
            full["event"].to_numpy(bool),
            full["duration_days"].to_numpy(float),
            weighted.predict_risk(full),
        )[0]
        assert c > 0.7


@pytest.mark.parametrize("family", ["coxph", "weibull_aft"])
def test_integer_weights_fit_like_duplicated_rows(family):
    """A row of weight k is k copies of it, penalty included: lifelines scales the Cox penalty
    by rows and the likelihood by weights, so unscaled a sampled table (weights ~13x its rows)
    was penalised 13x less than the table it stands for (seen: log hazards up to 24 and a
    fifth of the failures expected on the real 2013 days)."""
    full = make_frame(6000, seed=12)
    w = np.random.default_rng(0).integers(1, 6, len(full))
    duplicated = full.loc[full.index.repeat(w)].reset_index(drop=True)
    params = {"penalizer": 1.0}
    a = make_model(family, params).fit(duplicated)
    b = make_model(family, params).fit(full.assign(weight=w.astype(float)))
    # lifelines standardises internally with the unweighted SD, the only difference left
    np.testing.assert_allclose(b.feature_importance(), a.feature_importance(), atol=0.005)
    np.testing.assert_allclose(
        b.predict_survival(full, HORIZONS), a.predict_survival(full, HORIZONS), rtol=0.02
    )


def test_coxnet_baseline_with_unit_weights_is_sksurvs(train):
    model = make_model("coxnet").fit(train.assign(weight=1.0))
    X = model._transform(train)
    ours = model.predict_survival(train, HORIZONS)
    theirs = np.stack(
        [fn(np.asarray(HORIZONS, float)) for fn in model.estimator_.predict_survival_function(X)]
    )
    np.testing.assert_allclose(ours, np.clip(theirs, 1 / (len(train) + 1), 1), rtol=1e-6)


def test_gbsa_pickled_with_sksurvs_baseline_still_predicts(train, test):
    import pickle

    from sksurv.linear_model.coxph import BreslowEstimator

    model = make_model("gbsa", {"n_estimators": 20, "max_censored_rows": None}).fit(train)
    old = pickle.loads(pickle.dumps(model))
    time_, event = train["duration_days"].to_numpy(float), train["event"].to_numpy(bool)
    f = model.estimator_.predict(model._transform(train))
    old.baseline_ = BreslowEstimator().fit(f, event, time_)  # what versions before it stored
    loaded = pickle.loads(pickle.dumps(old))
    assert isinstance(loaded.baseline_, tuple)  # converted on load, not while predicting
    np.testing.assert_allclose(
        loaded.predict_survival(test, HORIZONS), model.predict_survival(test, HORIZONS), rtol=1e-8
    )


def test_bad_weights_are_refused(train):
    with pytest.raises(ModelError, match="weight"):
        make_model("coxph").fit(train.assign(weight=0.0))


def _target(df):
    return df["duration_days"].to_numpy(float), df["event"].to_numpy(bool)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DISKRISK_SLOW"), reason="set DISKRISK_SLOW=1 (~1 min)")
def test_default_sizes_train_fast_on_15k_rows():
    """The brief's budget: each default tree model fits ~15k rows (0.4 % events) in < 60 s."""
    big = make_frame(15_000, seed=4, base_rate=2.5e-5)
    assert big["event"].sum() >= 20
    for family in ("rsf", "gbsa"):
        start = time.perf_counter()
        make_model(family).fit(big)
        assert time.perf_counter() - start < 60, family


def test_degenerate_fit_is_refused(monkeypatch):
    """A covariate model ranking its own training drives worse than chance is not a model."""
    from diskrisk.models import CoxPHModel

    df = make_frame(2000, seed=5)
    assert make_model("coxph").fit(df).n_train_ == 2000  # the honest fit passes the check
    original = CoxPHModel._risk
    monkeypatch.setattr(CoxPHModel, "_risk", lambda self, X, frame: -original(self, X, frame))
    with pytest.raises(ModelError, match="degenerate fit"):
        make_model("coxph").fit(df)


@pytest.mark.parametrize("params", [{}, {"model_ranks": True}])
def test_fitting_transforms_the_training_rows_as_predicting_would(train, params):
    """The degenerate-fit check ranks the training rows as fitting transformed them, instead of
    transforming them again: the same matrix, weights and within-model ranks included."""
    w = np.random.default_rng(2).uniform(0.5, 3.0, len(train))
    model = make_model("coxph", params)
    fitted_rows = model._fit_transform(train.assign(weight=w))
    pd.testing.assert_frame_equal(fitted_rows, model._transform(train))


def test_within_model_rank_compares_a_drive_with_its_own_model():
    """Raw scales differ by model: the same raw value is ordinary on one model, extreme on
    another; the rank is fitted on training rows and stored."""
    from diskrisk.models import WithinModelRank

    train = pd.DataFrame(
        {
            "smart_1_raw": [*np.arange(100.0) * 1e6, *np.zeros(99), 5.0],
            "model": ["ST"] * 100 + ["HGST"] * 100,
        }
    )
    t = WithinModelRank(min_drives=50).fit(train)
    score = pd.DataFrame(
        {"smart_1_raw": [5.0, 5.0, 5e7, np.nan, 5.0], "model": ["ST", "HGST", "ST", "ST", "NEW"]}
    )
    r = t.transform(score)[:, 0]
    assert r[0] == pytest.approx(0.01)  # above 1 of ST's 100 values (the 0), tied with none
    assert r[1] == pytest.approx(0.995)  # the largest HGST value seen in training
    assert r[2] == pytest.approx(0.505)  # the ST median
    assert r[3] == 0.5  # unknown value: a typical drive
    assert 0.5 < r[4] < 0.6  # unseen model: ranked against every training drive
    assert list(t.get_feature_names_out()) == ["smart_1_raw_model_rank"]


def test_model_ranks_option_adds_features_and_scores(train, test):
    model = make_model("coxph", {"model_ranks": True}).fit(train)
    assert "model" in model.input_columns_
    assert {"smart_5_raw_model_rank", "smart_197_raw_model_rank"} <= set(model.feature_names_)
    assert harrell(test, model.predict_risk(test)) > 0.7
    alone = np.concatenate([model.predict_risk(test.iloc[[i]]) for i in range(10)])
    assert np.allclose(alone, model.predict_risk(test.iloc[:10]))


def test_missing_values_are_filled_with_sklearns_median(train):
    """The imputers' callable strategy transforms exactly as strategy="median" does."""
    df = train.copy()
    df.loc[df.index[::3], ["smart_5_raw", "age_days", "capacity_bytes"]] = np.nan
    pipe, cols = build_preprocessor(df, DEFAULT_PARAMS["coxph"])
    reference, _ = build_preprocessor(df, DEFAULT_PARAMS["coxph"])
    reference.set_params(
        columns__smart__impute__strategy="median",
        columns__age__strategy="median",
        columns__capacity__impute__strategy="median",
    )
    X = prepare_input(df, cols)
    ours, theirs = pipe.fit_transform(X), reference.fit_transform(X)
    assert list(ours.columns) == list(theirs.columns)
    assert np.array_equal(ours.to_numpy(), theirs.to_numpy())
