"""Operator commands over the out-of-time yardstick on the real stack and real 2013 days:
evaluate a registered recipe, re-judge the challenger, fine-tune rounds, export."""

from __future__ import annotations

import json
import uuid
import zipfile

import pytest

from scheduled import in_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def real_lake(stack_env, backblaze_dir):
    """The real 2013 days up to 05-04 in a lake prefix of this module's own, built once; each
    test trains and judges over it in a registry, experiment and namespace of its own."""
    from diskrisk import pipeline

    prefix = f"trainlake{uuid.uuid4().hex[:8]}/"
    with in_process({"DISKRISK_LAKE_PREFIX": prefix}):
        pipeline.build_lake(pipeline.collect(str(backblaze_dir), "2013-04-10", "2013-05-04"))
    return prefix


@pytest.fixture
def isolated(monkeypatch, real_lake):
    tag = f"train{uuid.uuid4().hex[:8]}"
    for key, value in {
        "DISKRISK_LAKE_PREFIX": real_lake,
        "DISKRISK_MODEL_NAME": f"{tag}-risk",
        "DISKRISK_EXPERIMENT": tag,
        "DISKRISK_HBASE_NAMESPACE": tag,
        "DISKRISK_TRAIN_N_BOOTSTRAP": "30",  # a zero gain is zero in every resample
    }.items():
        monkeypatch.setenv(key, value)
    from diskrisk import config

    config.cached.cache_clear()
    yield tag
    config.cached.cache_clear()


def test_operator_commands_use_the_out_of_time_splits(tmp_path, isolated):
    from diskrisk import pipeline
    from diskrisk.dataset import DatasetRef, read_table
    from diskrisk.ops import evaluate_alias, retrain_rounds
    from diskrisk.promote import promote_challenger
    from diskrisk.registry import Registry

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


@pytest.fixture
def lake(isolated, monkeypatch):
    """The pipeline over the real lake, trained on by one fixed code revision (the
    repository's HEAD may move while a test runs)."""
    from diskrisk import pipeline

    monkeypatch.setenv("DISKRISK_GIT_REVISION", f"{isolated}-revision")
    return pipeline


def _refitted(champion, ours, ref, registry):
    """The paired figures of the refit path: the champion's recipe fitted on every split."""
    from diskrisk import oot, train
    from diskrisk.config import TrainSettings

    t = TrainSettings()
    theirs = train.oot_predictions(*train.recipe(champion, registry), ref).frame
    return oot.paired_difference(ours, theirs, n=t.n_bootstrap, seed=t.seed)


def _source(registry, version):
    from diskrisk.promote import SOURCE_TAG

    return registry.client.get_model_version(registry.name, version).tags[SOURCE_TAG]


def test_judging_reuses_the_predictions_a_version_logged_of_the_champions_recipe(lake, monkeypatch):
    from diskrisk import oot, promote
    from diskrisk.config import TrainSettings
    from diskrisk.dataset import DatasetRef
    from diskrisk.registry import CHAMPION, Registry

    ref = DatasetRef.from_json(lake.dataset())
    first = lake.train("coxph", ref.to_json())
    assert lake.promote([first], ref.to_json())["promote"]
    same = lake.train("coxph", ref.to_json())  # the daily run's challenger of the champion's recipe
    other = lake.train("coxph", ref.to_json(), {"penalizer": 0.5})  # the one judged
    registry = Registry.connect()
    champion = registry.require(CHAMPION)
    ours = promote.run_predictions(other["run_id"])

    def refit(*args, **kwargs):
        raise AssertionError("the champion's recipe was refitted")

    with monkeypatch.context() as m:
        m.setattr(promote, "oot_predictions", refit)
        m.setattr(promote, "recipe", refit)
        reused = promote.judge_version(
            other["version"], other["run_id"], other["harrell_c"], ref, registry=registry
        )
        theirs, source = promote.champion_predictions(champion, ref, registry)
    # the newest version of the recipe; not the judged one (other params)
    assert _source(registry, other["version"]) == source == f"reused from version {same['version']}"

    # the figures are those of the refit path (fitting is seeded)
    t = TrainSettings()
    paired = oot.paired_difference(ours, theirs, n=t.n_bootstrap, seed=t.seed)
    refitted = _refitted(champion, ours, ref, registry)
    assert paired == refitted
    assert reused.champion_c == refitted["c_b"]
    assert reused.gain_ci == (refitted["gain_ci_low"], refitted["gain_ci_high"])

    # predictions logged by another code revision are not the recipe's of today: refitted
    monkeypatch.setenv("DISKRISK_GIT_REVISION", "another-revision")
    assert promote.champion_predictions(champion, ref, registry)[1] == "refitted"


def test_judging_refits_the_champion_when_no_version_logged_its_recipe(lake, monkeypatch):
    from diskrisk import promote
    from diskrisk.dataset import DatasetRef
    from diskrisk.registry import CHAMPION, Registry

    older = DatasetRef.from_json(lake.dataset("2013-05-02"))
    ref = DatasetRef.from_json(lake.dataset())
    assert older.train_key != ref.train_key
    first = lake.train("coxph", older.to_json())  # the champion's recipe, on other tables
    assert lake.promote([first], older.to_json())["promote"]
    other = lake.train("coxph", ref.to_json(), {"penalizer": 0.5})  # these tables, other params
    registry = Registry.connect()
    champion = registry.require(CHAMPION)
    refits = []
    real = promote.oot_predictions

    def spy(family, params, on):
        refits.append(on)
        return real(family, params, on)

    monkeypatch.setattr(promote, "oot_predictions", spy)
    decision = promote.judge_version(
        other["version"], other["run_id"], other["harrell_c"], ref, registry=registry
    )
    assert refits == [ref] and _source(registry, other["version"]) == "refitted"
    refitted = _refitted(champion, promote.run_predictions(other["run_id"]), ref, registry)
    assert decision.champion_c == refitted["c_b"]
    assert decision.gain_ci == (refitted["gain_ci_low"], refitted["gain_ci_high"])


def test_the_ensemble_composes_the_fits_its_members_stored(lake, monkeypatch):
    """As the DAG runs it (single families first): the ensemble task fits none of its members
    again, and gives what fitting them again gives."""
    from diskrisk import layout, models, promote, s3, train
    from diskrisk.config import lake_prefix
    from diskrisk.dataset import DatasetRef

    ref = DatasetRef.from_json(lake.dataset())

    def stored() -> set[str]:  # the fits kept beside the production table (other tests' too)
        listed = s3.client().list_objects_v2(
            Bucket=s3.bucket(), Prefix=layout.fit(ref.train_key, "").removesuffix(".pkl")
        )
        return {o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", [])}

    before = stored()
    for family in ("coxnet", "coxph", "weibull_aft"):
        lake.train(family, ref.to_json())
    assert sorted(k.split("-")[0] for k in stored() - before) == ["coxnet", "coxph", "weibull_aft"]

    fits: list[str] = []
    real_fit = models.RiskModel.fit

    def counted(self, df):
        fits.append(self.family)
        return real_fit(self, df)

    monkeypatch.setattr(models.RiskModel, "fit", counted)
    ensemble = lake.train("ensemble", ref.to_json())
    assert "error" not in ensemble and fits == []

    # without a known code revision nothing is stored or loaded: every member of every split
    # and of the final fit is fitted, to the same predictions
    monkeypatch.setenv("DISKRISK_GIT_REVISION", "unknown")
    again = train.oot_predictions("ensemble", None, ref).frame
    assert sorted(fits) == sorted(["coxnet", "coxph", "weibull_aft"] * len(ref.splits))
    logged = promote.run_predictions(ensemble["run_id"])
    assert logged["risk"].to_numpy() == pytest.approx(again["risk"].to_numpy(), rel=1e-9)

    # once the run is judged its fits are gone, every version of them
    lake.promote([ensemble], ref.to_json())
    listed = s3.client().list_object_versions(
        Bucket=s3.bucket(), Prefix=layout.datasets_root(lake_prefix())
    )
    left = listed.get("Versions", []) + listed.get("DeleteMarkers", [])
    assert left and not [v["Key"] for v in left if layout.FITS in v["Key"]]
