"""The drift stage on the real stack: a champion trained on real 2013 days, then an unshifted
real day (no drift) and a day from a different population (drift), each reported to S3 and
MLflow with the decision the DAG uses."""

from __future__ import annotations

import uuid

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def isolated(monkeypatch):
    tag = f"drift{uuid.uuid4().hex[:8]}"
    for key, value in {
        "DISKRISK_LAKE_PREFIX": f"{tag}/",
        "DISKRISK_MODEL_NAME": f"{tag}-risk",
        "DISKRISK_EXPERIMENT": tag,
        "DISKRISK_HBASE_NAMESPACE": tag,
    }.items():
        monkeypatch.setenv(key, value)
    from diskrisk import config

    config.cached.cache_clear()
    yield tag
    config.cached.cache_clear()


def test_drift_decisions_logged(stack_env, backblaze_dir, tmp_path, isolated):
    import mlflow

    from diskrisk import pipeline, s3
    from diskrisk.config import S3Settings, load
    from diskrisk.synth import write_days

    lake = pipeline.build_lake(pipeline.collect(str(backblaze_dir), "2013-04-10", "2013-05-04"))
    assert lake["lake_days"] == 25
    ref = pipeline.dataset("2013-04-27")  # data up to that day; 2013-05-04 is later
    decision = pipeline.promote([pipeline.train("coxph", ref)], ref)
    assert decision["promote"], decision

    same = pipeline.drift("2013-05-04")  # a later day of the same fleet
    assert same["drift"] is False, same

    # the next day comes from another fleet (the project's generator): a different population
    write_days(tmp_path, era="2013", drives=3000, days=1, start="2013-05-05", seed=3)
    pipeline.build_lake(pipeline.collect(str(tmp_path)))
    shifted = pipeline.drift("2013-05-05")
    assert shifted["drift"] is True, shifted
    assert pipeline.should_retrain(shifted) and not pipeline.should_retrain(same)

    # both reports are in S3 and in MLflow with their decisions
    bucket = load(S3Settings).bucket
    for result in (same, shifted):
        key = result["report"].split("/", 3)[3]
        assert s3.client().head_object(Bucket=bucket, Key=key)["ContentLength"] > 10_000
        run = mlflow.get_run(result["mlflow_run_id"])
        assert run.data.tags["drift"] == str(result["drift"]).lower()
        assert {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)} >= {
            "drift_report.html",
            "drift_summary.json",
        }
