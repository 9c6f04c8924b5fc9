"""Shaping of score rows (the part of scoring that needs no service)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from diskrisk.models import make_model
from diskrisk.pyfunc import save_pyfunc
from diskrisk.registry import Predictor
from diskrisk.scoring import SCORE_COLUMNS, ScoringError, score_frame
from diskrisk.sinks import normalise
from test_models import make_frame


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A champion as scoring sees it: saved as an MLflow pyfunc and loaded back."""
    import mlflow

    df = make_frame(3000, seed=11)
    df["serial_number"] = [f"S{i:05d}" for i in range(len(df))]
    df["model"] = "ST4000DM000"
    path = save_pyfunc(make_model("coxph").fit(df), tmp_path_factory.mktemp("m") / "model", df)
    return df, mlflow.pyfunc.load_model(str(path))


def test_score_rows_match_the_sink_contract(fitted):
    df, model = fitted
    version = SimpleNamespace(name="risk", version="7", run_id="r123")
    out = score_frame(
        df, Predictor(version, model), "2024-01-30", scored_at="2024-01-31T00:00:00+00:00"
    )
    assert list(out.columns) == list(SCORE_COLUMNS)
    assert len(out) == len(df) and out["serial_number"].is_unique
    assert out["rank_pct"].between(0, 100, inclusive="right").all()
    assert out.loc[out["risk"].idxmax(), "rank_pct"] == 100.0
    assert (out["p_fail_90d"] >= out["p_fail_30d"] - 1e-12).all()
    assert set(out["model_version"]) == {"7"} and set(out["data_date"]) == {"2024-01-30"}
    normalise(out)  # the sink accepts it as is


def test_no_drive_is_an_error(fitted):
    df, model = fitted
    with pytest.raises(ScoringError, match="no drive was observed on x"):
        score_frame(
            df.iloc[:0], Predictor(SimpleNamespace(name="r", version="1", run_id="x"), model), "x"
        )
