"""MLflow pyfunc round trip through a local directory (no tracking server)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.types import DataType

from diskrisk.models import make_model
from diskrisk.pyfunc import RiskPyfunc, build_signature, model_input, pyfunc_kwargs, save_pyfunc
from test_models import make_frame


@pytest.fixture(scope="module")
def data():
    return make_frame(1500, seed=21), make_frame(300, seed=22)


@pytest.fixture(scope="module", params=["coxph", "gbsa", "ensemble"])
def saved(request, data, tmp_path_factory):
    train, _ = data
    model = make_model(request.param, {"n_estimators": 20} if request.param == "gbsa" else None)
    model.fit(train)
    path = save_pyfunc(model, tmp_path_factory.mktemp(request.param) / "model", train)
    return model, path


def test_predict_columns_and_probabilities(data):
    train, score = data
    model = make_model("coxph").fit(train)
    out = RiskPyfunc(model).predict(None, score)
    assert list(out.columns) == ["risk", "p_fail_30d", "p_fail_90d"]
    assert out.index.equals(score.index)
    assert np.allclose(out["risk"], model.predict_risk(score))
    assert np.allclose(out["p_fail_90d"], 1 - model.predict_survival(score, (90,))[:, 0])
    assert ((out["p_fail_30d"] >= 0) & (out["p_fail_30d"] <= out["p_fail_90d"] + 1e-12)).all()
    assert (out["p_fail_90d"] <= 1).all()


@pytest.mark.parametrize("family", ["coxph", "coxnet", "gbsa", "weibull_aft"])
def test_longer_horizon_is_riskier_unless_marked_unsupported(data, family):
    """p_fail_30d < p_fail_90d for every drive while both horizons lie inside the training
    follow-up; beyond it the horizon is missing with a reason, never a flat copy."""
    train, score = data
    params = {"n_estimators": 20} if family == "gbsa" else None
    model = make_model(family, params).fit(train)
    assert model.horizon_support((30, 90)) == {30.0: None, 90.0: None}
    out = RiskPyfunc(model).predict(None, score)
    cap = 1 - 1 / (len(train) + 1)  # survival below 1/(n+1) is beyond what n drives resolve
    resolved = out["p_fail_30d"] < cap - 1e-12
    assert resolved.mean() > 0.95
    assert (out.loc[resolved, "p_fail_30d"] < out.loc[resolved, "p_fail_90d"]).all()
    assert np.allclose(out.loc[~resolved, ["p_fail_30d", "p_fail_90d"]], cap)
    short = train.assign(duration_days=train["duration_days"].clip(upper=60))
    model = make_model(family, params).fit(short)
    why = model.horizon_support((30, 90))
    assert why[30.0] is None and "beyond the training follow-up (60 d)" in why[90.0]
    out = RiskPyfunc(model).predict(None, score)
    assert out["p_fail_90d"].isna().all() and out["p_fail_30d"].between(0, 1).all()
    meta = pyfunc_kwargs(model, short)["metadata"]
    assert meta["unsupported_horizons"] == {"p_fail_90d": why[90.0]}


def test_no_certain_failure_from_extrapolated_counters(data):
    """Counters far beyond anything seen in training are held at the training range, so no
    drive gets a failure probability of exactly 1 (issue #11)."""
    train, score = data
    model = make_model("coxph").fit(train)
    extreme = score.assign(smart_5_raw=1e12, smart_197_raw=1e12, smart_5_raw_d7=1e12)
    out = RiskPyfunc(model).predict(None, extreme)
    assert (out["p_fail_90d"] < 1).all() and (out["p_fail_90d"] > 0.99).all()
    top = score.loc[[score["smart_5_raw"].idxmax()]]
    assert np.allclose(  # beyond the range = at its edge
        model.predict_risk(extreme.iloc[:1].assign(**top.iloc[0][["age_days"]])),
        model.predict_risk(
            extreme.iloc[:1].assign(
                smart_5_raw=train["smart_5_raw"].max(),
                smart_197_raw=train["smart_197_raw"].max(),
                smart_5_raw_d7=train["smart_5_raw_d7"].max(),
                age_days=top.iloc[0]["age_days"],
            )
        ),
    )


def test_signature_inputs_are_optional_doubles(data):
    train, _ = data
    model = make_model("coxph").fit(train)
    signature, example = build_signature(model, train)
    inputs = {c.name: c for c in signature.inputs.inputs}
    assert set(inputs) == set(model.input_columns_)
    assert not any(c.required for c in inputs.values())
    assert inputs["capacity_bytes"].type == DataType.long  # int64 as in the lake
    assert inputs["smart_5_raw"].type == DataType.double
    assert inputs["vendor"].type == DataType.string
    assert [c.name for c in signature.outputs.inputs] == ["risk", "p_fail_30d", "p_fail_90d"]
    assert len(example) == 5


def test_save_load_round_trip(saved, data):
    model, path = saved
    _, score = data
    loaded = mlflow.pyfunc.load_model(str(path))
    out = loaded.predict(model_input(score, model))
    expected = RiskPyfunc(model).predict(None, score)
    pd.testing.assert_frame_equal(out.reset_index(drop=True), expected.reset_index(drop=True))
    meta = loaded.metadata.metadata
    assert meta["family"] == model.family and meta["input_columns"] == model.input_columns_
    # a raw survival frame (extra columns, int64 capacity as in the lake) is accepted as is
    raw = score.assign(capacity_bytes=score["capacity_bytes"].astype("int64"))
    assert np.allclose(loaded.predict(raw)["risk"], expected["risk"])
    # a scoring day without one SMART attribute still scores (column optional, imputed)
    partial = model_input(score, model).drop(columns=["smart_187_raw"])
    assert np.isfinite(loaded.predict(partial)["risk"]).all()


@pytest.mark.parametrize("saved", ["gbsa"], indirect=True)  # one family: a fresh interpreter
def test_load_needs_only_shipped_code(saved, data, tmp_path):
    """Load in a fresh interpreter where the installed (editable) diskrisk is hidden."""
    _, path = saved
    _, score = data
    score.head(20).to_parquet(tmp_path / "score.parquet")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/src") and p != ""]
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        try:
            import diskrisk  # noqa: F401
            sys.exit("diskrisk should not be importable before loading")
        except ImportError:
            pass
        import mlflow.pyfunc, pandas as pd
        model = mlflow.pyfunc.load_model({str(path)!r})
        import diskrisk
        assert {str(path)!r} in diskrisk.__file__, diskrisk.__file__
        frame = pd.read_parquet({str(tmp_path / "score.parquet")!r})
        cols = model.metadata.metadata["input_columns"]
        out = model.predict(frame[cols].astype({{"capacity_bytes": "int64"}}))
        print(out.shape, list(out.columns))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(20, 3) ['risk', 'p_fail_30d', 'p_fail_90d']" in run.stdout
