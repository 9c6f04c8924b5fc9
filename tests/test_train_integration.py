"""Operator commands over the out-of-time yardstick on the real stack and real 2013 days:
evaluate a registered recipe, re-judge the challenger, fine-tune rounds, export."""

from __future__ import annotations

import json
import uuid
import zipfile

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def isolated(monkeypatch):
    tag = f"train{uuid.uuid4().hex[:8]}"
    for key, value in {
        "DISKRISK_LAKE_PREFIX": f"{tag}/",
        "DISKRISK_MODEL_NAME": f"{tag}-risk",
        "DISKRISK_EXPERIMENT": tag,
        "DISKRISK_HBASE_NAMESPACE": tag,
        "DISKRISK_TRAIN_N_BOOTSTRAP": "100",
    }.items():
        monkeypatch.setenv(key, value)
    from diskrisk import config

    config.cached.cache_clear()
    yield tag
    config.cached.cache_clear()


def test_operator_commands_use_the_out_of_time_splits(stack_env, backblaze_dir, tmp_path, isolated):
    from diskrisk import pipeline
    from diskrisk.dataset import DatasetRef, read_table
    from diskrisk.ops import evaluate_alias, retrain_rounds
    from diskrisk.promote import promote_challenger
    from diskrisk.registry import Registry

    pipeline.build_lake(pipeline.collect(str(backblaze_dir), "2013-04-10", "2013-05-04"))
    with pytest.raises(RuntimeError, match="out-of-time test windows"):
        pipeline.dataset("2013-04-12")  # three days: no room for a training window
    ref = DatasetRef.from_json(pipeline.dataset())
    assert ref.cutoff == "2013-05-04" and [s["origin"] for s in ref.splits] == [
        "2013-04-26",
        "2013-04-30",
    ]
    for s in ref.splits:  # training outcomes end at the origin; tests start after it
        train, test = read_table(s["train_key"]), read_table(s["test_key"])
        assert (train["snapshot_date"] + train["duration_days"].astype("timedelta64[D]")).max() <= (
            test["snapshot_date"].min()
        )
    task = "manual__x/train_and_evaluate/0"
    first = pipeline.train("coxph", ref.to_json(), task=task)
    # a retry of the same task (say its result was lost) returns its version, not a second one
    retried = pipeline.train("coxph", ref.to_json(), task=task)
    assert (retried["version"], retried["run_id"]) == (first["version"], first["run_id"])
    assert retried["harrell_c"] == pytest.approx(first["harrell_c"], abs=1e-4)
    decision = pipeline.promote([first], ref.to_json())
    assert decision["promote"] and decision["champion_c"] is None

    # the champion's recipe refitted on the same splits reproduces its own out-of-time C
    again = evaluate_alias("champion", ref)
    assert again["oot_harrell_c"] == pytest.approx(first["harrell_c"], abs=1e-9)
    assert 0 <= again["oot_recall_top1pct"] <= 1

    # the same recipe again: zero gain, refused, and the tags carry the paired interval
    second = pipeline.train("coxph", ref.to_json())
    refused = pipeline.promote([second], ref.to_json())
    assert not refused["promote"]
    lo, hi = refused["gain_ci"]
    assert lo <= 0 <= hi and refused["champion_c"] == pytest.approx(first["harrell_c"])
    rejudged = promote_challenger()
    assert rejudged["version"] == second["version"]
    assert rejudged["promotion.decision"] == "refused"
    assert rejudged["promotion.gain_ci95"].startswith(f"{lo:+.4f}")

    # fine-tuning rounds make challengers judged the same way, and export the champion
    report = retrain_rounds("2013-04-10", "2013-05-04", 1, tmp_path / "out")
    (round_,) = report["rounds"]
    assert round_["cutoff"] == "2013-05-04" and "out-of-time C" in round_["reason"]
    with zipfile.ZipFile(tmp_path / "out" / "champion.zip") as z:
        meta = z.read("MLmodel").decode()
    assert "unsupported_horizons" in meta and "p_fail_90d" in meta
    saved = json.loads((tmp_path / "out" / "retrain_report.json").read_text())
    assert saved == report["rounds"]
    rows = {r["version"]: r for r in Registry.connect().list()}
    assert rows[int(first["version"])]["aliases"].find("champion") >= 0
    assert all(r["decision"] for r in rows.values())
