"""Out-of-time evaluation (diskrisk.oot) on a seeded synthetic local lake and hand-made frames."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from sksurv.metrics import concordance_index_censored

from diskrisk import lake, oot, survival, synth, validate
from diskrisk.models import make_model


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ootlake")
    g = synth.Generator("2013", 3000, seed=5, h0=5e-5, degrade_share=0.05)
    for d, t in g.days(date(2013, 4, 1), 36):
        lake.write_local(validate.validate_bytes(synth.csv_bytes(t), f"{d}.csv"), root)
    return root


@pytest.fixture(scope="module")
def con(lake_root):
    return lake.connect(root=lake_root)


@pytest.fixture(scope="module")
def days(con):
    return sorted(str(r[0]) for r in con.execute("SELECT DISTINCT date FROM lake").fetchall())


# The tables written row by row in pandas: the oracle oot.write_tables is checked against.
def oracle_stacked(marks, end, lookback, con, followup_days=None):
    """Landmark snapshots before ``end``, each followed up to ``end`` or ``followup_days``."""
    frames = []
    for s in marks:
        if date.fromisoformat(s) >= date.fromisoformat(end):
            continue
        stop = date.fromisoformat(end)
        if followup_days is not None:
            stop = min(stop, date.fromisoformat(s) + timedelta(days=followup_days))
        frames.append(survival.survival_dataset(s, lookback, end=stop, con=con))
    return pd.concat([f for f in frames if not f.empty], ignore_index=True)


def oracle_train(full, origin):
    """A split's training rows: landmarks before ``origin``, follow-up censored at it (events
    after it become censored at ``origin``; rows left with no follow-up dropped)."""
    df = full[full["snapshot_date"] < pd.Timestamp(origin)].copy()
    end = pd.Timestamp(origin)
    late = df["snapshot_date"] + pd.to_timedelta(df["duration_days"], unit="D") > end
    df.loc[late, "duration_days"] = (end - df.loc[late, "snapshot_date"]).dt.days
    df.loc[late, "event"] = False
    df = df[df["duration_days"] >= 1].copy()
    df["exit_age_days"] = df["entry_age_days"] + df["duration_days"]
    return df.reset_index(drop=True)


def oracle_test(split, lookback, con):
    """The split's test landmarks with their own follow-up windows, tagged with the split."""
    return pd.concat(
        [
            survival.survival_dataset(lm, lookback, end=end, con=con).assign(
                **{oot.SPLIT: split.name, oot.WINDOW: (pd.Timestamp(end) - pd.Timestamp(lm)).days}
            )
            for lm, end in split.test
        ],
        ignore_index=True,
    )


@pytest.fixture(scope="module")
def tables(days, con):
    p = oot.plan(days, step=5, n_origins=2, block=6)
    full = oracle_stacked(p.landmarks, days[-1], 20, con)
    trains = {sp.name: oracle_train(full, sp.origin) for sp in p.splits}
    tests = {sp.name: oracle_test(sp, 20, con) for sp in p.splits}
    return p, full, trains, tests


@pytest.fixture(scope="module")
def predictions(tables):
    p, _, trains, tests = tables
    fit = {}
    for family in ("coxnet", "km"):
        fit[family] = oot.predict_splits(
            lambda sp, f=family: make_model(f).fit(trains[sp.name]),
            p.splits,
            lambda sp: tests[sp.name],
        )
    return fit


def test_plan_windows_do_not_overlap(days):
    p = oot.plan(days, step=5, n_origins=3, block=6)
    assert p.landmarks == days[:-1:5]
    assert [s.origin for s in p.splits] == [days[-19], days[-13], days[-7]]
    windows = [w for s in p.splits for w in s.test]
    assert windows[-1][1] == days[-1]
    for (_, end), (nxt, _) in itertools.pairwise(windows):
        assert end == nxt  # contiguous: every later day is tested once
    assert oot.Plan.from_dict(p.to_dict()) == p
    fixed = oot.fixed_origin_splits(days, days[20], 5)
    assert len(fixed) == 1 and fixed[0].test[0] == (days[20], days[25])
    assert fixed[0].test[-1][1] == days[-1]
    with pytest.raises(ValueError, match="not a lake day"):
        oot.fixed_origin_splits(days, "2020-01-01", 5)
    assert oot.default_block(30) == 5 and oot.default_block(365) == 30


def test_no_outcome_after_the_origin_leaks_into_training(tables, days):
    p, full, trains, tests = tables
    for sp in p.splits:
        tr, te = trains[sp.name], tests[sp.name]
        origin = pd.Timestamp(sp.origin)
        assert (tr["snapshot_date"] < origin).all()
        stop = tr["snapshot_date"] + pd.to_timedelta(tr["duration_days"], unit="D")
        assert (stop <= origin).all()
        ((lm, end),) = sp.test
        assert (te["snapshot_date"] == pd.Timestamp(lm)).all()
        assert (te["duration_days"] <= (pd.Timestamp(end) - pd.Timestamp(lm)).days).all()
        assert (te[oot.WINDOW] == (pd.Timestamp(end) - pd.Timestamp(lm)).days).all()
    assert full["snapshot_date"].nunique() == len(p.landmarks)


def test_stacking_uses_every_failure_of_the_window(tables, con, days):
    p, _, trains, _ = tables
    sp = p.splits[-1]
    tr = trains[sp.name]
    failed = con.execute(
        f"""SELECT f.serial_number FROM lake f WHERE f.failure = 1
            AND f.date > DATE '{days[0]}' AND f.date <= DATE '{sp.origin}'
            AND EXISTS (SELECT 1 FROM lake l WHERE l.serial_number = f.serial_number
                        AND l.date IN ({", ".join(f"DATE '{m}'" for m in p.landmarks)})
                        AND l.date < f.date)"""
    ).df()["serial_number"]
    assert len(failed) >= 10
    assert set(failed) == set(tr.loc[tr["event"], "serial_number"])
    # a single snapshot at the first landmark misses the drives that appear later
    first = tr[tr["snapshot_date"] == tr["snapshot_date"].min()]
    assert first["event"].sum() <= tr.drop_duplicates("serial_number")["event"].sum()


def test_out_of_time_metrics(predictions):
    cox = oot.metrics(predictions["coxnet"], n_bootstrap=50, seed=1)
    km = oot.metrics(predictions["km"], n_bootstrap=50, seed=1)
    assert cox["oot_events"] >= 10 and cox["oot_splits"] == 2
    assert cox["oot_harrell_c"] > 0.75 > km["oot_harrell_c"]
    assert cox["oot_harrell_c_ci_low"] < cox["oot_harrell_c"] < cox["oot_harrell_c_ci_high"]
    assert 0 <= cox["oot_recall_top0.5pct"] <= cox["oot_recall_top1pct"] <= 1
    assert cox["oot_recall_top1pct"] > km["oot_recall_top1pct"]
    frame = predictions["coxnet"].frame
    assert frame["p_fail_window"].between(0, 1, inclusive="neither").all()
    table, err = oot.calibration(frame)
    assert len(table) == 10 and table["n"].sum() == len(frame)
    assert 0 <= err < 0.2 and np.isfinite(cox["oot_calibration_oe"])


def test_the_generators_hazard_is_the_ceiling_the_models_approach(tables, predictions):
    _, _, _, tests = tables
    held = pd.concat([tests[s] for s in tests], ignore_index=True)
    truth = held.assign(risk=synth.true_risk(held))
    ceiling = oot.pooled_c(truth)
    cox = oot.pooled_c(predictions["coxnet"].frame)
    assert ceiling > 0.8 and cox <= ceiling + 0.02  # a model cannot rank far above the truth
    assert oot.pooled_c(truth.assign(risk=-truth["risk"])) == pytest.approx(1 - ceiling, abs=0.02)


def test_pooled_c_is_sksurv_c_within_one_landmark():
    rng = np.random.default_rng(0)
    n = 400
    f = pd.DataFrame(
        {
            oot.SPLIT: "a",
            "serial_number": [f"s{i}" for i in range(n)],
            "snapshot_date": pd.Timestamp("2024-01-01"),
            "duration_days": rng.integers(1, 10, n),
            "event": rng.random(n) < 0.1,
            "risk": rng.normal(size=n),
        }
    )
    expected = concordance_index_censored(f["event"], f["duration_days"].astype(float), f["risk"])
    assert oot.pooled_c(f) == pytest.approx(expected[0])
    # pooling two landmarks never compares drives across them: C of a copy shifted in risk
    # (all riskier) is unchanged
    g = f.assign(snapshot_date=pd.Timestamp("2024-01-08"), risk=f["risk"] + 100)
    assert oot.pooled_c(pd.concat([f, g], ignore_index=True)) == pytest.approx(expected[0])


def test_td_auc_skips_a_landmark_whose_weights_are_undefined():
    """When every training drive is censored by the time a test drive is last seen, the
    inverse-probability-of-censoring weights are undefined there (sksurv raises): that
    landmark gives no AUC instead of failing the whole family."""
    n = 60
    train = pd.DataFrame({"duration_days": np.full(n, 6.0), "event": np.zeros(n, bool)})
    train.loc[:9, ["duration_days", "event"]] = [2.0, True]

    def landmark(day: str, last: float) -> pd.DataFrame:
        t = np.r_[1.0, 2.0, np.full(n - 2, last)]
        return pd.DataFrame(
            {
                oot.SPLIT: "a",
                "serial_number": [f"s{i}" for i in range(n)],
                "snapshot_date": pd.Timestamp(day),
                "duration_days": t,
                "event": np.r_[True, True, True, np.zeros(n - 3, bool)],  # one fails when last seen
                "risk": -t,
            }
        )

    broken = landmark("2024-01-01", 6.0)  # test follow-up reaches the censoring curve's zero
    assert oot.td_auc(broken, train, [3.0]) == {}
    fine = landmark("2024-01-08", 5.0)
    both = oot.td_auc(pd.concat([broken, fine], ignore_index=True), train, [3.0])
    assert both == oot.td_auc(fine, train, [3.0]) and 0 < both["auc_3d"] <= 1


def test_recall_at_budget_hand_computed():
    f = pd.DataFrame(
        {
            oot.SPLIT: "a",
            "serial_number": [f"s{i}" for i in range(200)],
            "snapshot_date": pd.Timestamp("2024-01-01"),
            "duration_days": 5,
            "event": [True, True, True, True] + [False] * 196,
            "risk": [100.0, 99.0, 0.1, 0.2, *list(np.linspace(0, 50, 196))],
        }
    )
    assert oot.recall_at_budget(f, 0.01) == 0.5  # top 2 of 200: both riskiest failed
    assert oot.recall_at_budget(f, 0.005) == 0.25  # top 1
    assert oot.recall_at_budget(f.assign(event=False), 0.01) != oot.recall_at_budget(f, 0.01)


def test_the_bootstrap_counts_each_drawn_drive_as_its_rows_repeated(predictions):
    """The same draws as rows repeated per landmark, counted by sksurv, give the interval."""
    frame = predictions["coxnet"].frame
    e, t = frame["event"].to_numpy(bool), frame["duration_days"].to_numpy(float)
    r = frame["risk"].to_numpy(float)
    codes, uniques = pd.factorize(frame["serial_number"])
    rng = np.random.default_rng(3)
    values = []
    for _ in range(20):
        counts = np.bincount(rng.integers(0, len(uniques), len(uniques)), minlength=len(uniques))
        num = den = 0.0
        for idx in oot._groups(frame):
            rows = np.repeat(idx, counts[codes[idx]])
            _, conc, disc, tied, _ = concordance_index_censored(e[rows], t[rows], r[rows])
            num, den = num + conc + 0.5 * tied, den + conc + disc + tied
        values.append(num / den)
    assert oot.bootstrap_c(frame, 20, seed=3) == pytest.approx(
        tuple(np.percentile(values, [2.5, 97.5])), abs=1e-12
    )


def test_paired_difference(predictions):
    cox, km = predictions["coxnet"].frame, predictions["km"].frame
    same = oot.paired_difference(cox, cox, n=30)
    assert same["gain"] == 0 and same["gain_ci_low"] == 0 == same["gain_ci_high"]
    d = oot.paired_difference(cox, km, n=100, seed=2)
    assert d["gain"] == pytest.approx(d["c_a"] - d["c_b"])
    assert d["gain_ci_low"] > 0  # cox clearly beats the age-only reference
    reverse = oot.paired_difference(km, cox, n=100, seed=2)
    assert reverse["gain_ci_high"] == pytest.approx(-d["gain_ci_low"])
    with pytest.raises(ValueError, match="exactly the same test rows"):
        oot.paired_difference(cox, km.iloc[1:], n=10)


def test_a_lake_too_short_for_the_test_windows_is_a_short_lake_error(monkeypatch, tmp_path):
    """Default plan (two origins, windows of at least 3 days): 8 days are the minimum; fewer
    raise ShortLakeError, which the DAG's dataset task turns into a skip or an immediate fail."""
    from diskrisk.config import TrainSettings
    from diskrisk.dataset import ShortLakeError, training_plan

    monkeypatch.setenv("DISKRISK_ENV_FILE", str(tmp_path / "absent.env"))
    days = [date.fromordinal(date(2013, 4, 10).toordinal() + i).isoformat() for i in range(9)]
    t = TrainSettings()
    assert [s.origin for s in training_plan(days[:8], t).splits] == ["2013-04-11", "2013-04-14"]
    for n in (1, 3, 7):
        with pytest.raises(ShortLakeError, match=f"{n} lake days up to {days[n - 1]} cannot hold"):
            training_plan(days[:n], t)
    assert issubclass(ShortLakeError, RuntimeError)  # callers catching RuntimeError still do


# --- the tables built in DuckDB (the dataset stage) ------------------------------------------------
def _frame(path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    df["snapshot_date"] = df["snapshot_date"].astype("datetime64[ns]")
    return df


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    b = b.assign(snapshot_date=b["snapshot_date"].astype("datetime64[ns]"))
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_batches_hold_consecutive_snapshots_up_to_the_bound():
    sizes = [("a", 3), ("b", 3), ("c", 5), ("d", 1), ("e", 9), ("f", 1)]
    assert oot.batches(sizes, 6) == [("a", "b", 6), ("c", "d", 6), ("e", "e", 9), ("f", "f", 1)]
    assert oot.batches(sizes, 100) == [("a", "f", 22)]
    assert oot.batches(sizes, 1) == [(x, x, n) for x, n in sizes]


def test_drive_parts_split_rows_above_the_bound_by_serial(con, days):
    assert survival.drive_parts(0, 10) == survival.drive_parts(10, 10) == ["TRUE"]
    parts = survival.drive_parts(25, 10)
    assert len(parts) == 3
    # every drive of a day falls in exactly one part
    day = f"FROM lake WHERE date = DATE '{days[-1]}'"
    (n,) = con.execute(f"SELECT count(DISTINCT serial_number) {day}").fetchone()
    counts = [con.execute(f"SELECT count(DISTINCT serial_number) {day} AND {p}").fetchone()[0]
              for p in parts]  # fmt: skip
    assert sum(counts) == n and min(counts) > 0


def test_a_day_split_by_drive_is_the_same_snapshot(con, days, monkeypatch):
    """One statement per part of the drives (big fleets) gives the frames of one statement."""
    whole = survival.snapshot_features(days[-1], 20, con=con)
    table = survival.survival_dataset(days[-5], 20, con=con)
    monkeypatch.setattr(survival, "FEATURE_BATCH_ROWS", 700)
    assert len(whole) > 2 * 700
    pd.testing.assert_frame_equal(survival.snapshot_features(days[-1], 20, con=con), whole)
    pd.testing.assert_frame_equal(survival.survival_dataset(days[-5], 20, con=con), table)


# one statement for all landmarks, landmarks split by drive, a few landmarks per statement
@pytest.mark.parametrize("batch_rows", [survival.FEATURE_BATCH_ROWS, 1000, 7000])
def test_write_tables_are_the_pandas_tables(tables, days, con, tmp_path, monkeypatch, batch_rows):
    monkeypatch.setattr(survival, "FEATURE_BATCH_ROWS", batch_rows)
    p, full, trains, tests = tables
    out = oot.write_tables(con, p, days[-1], 20, tmp_path)
    train = _frame(out.train())
    assert (train["weight"] == 1.0).all() and out.censored_weight == 1.0
    _same(train.drop(columns="weight"), full)
    assert (out.rows, out.events, out.population_rows) == (
        len(full),
        full["event"].sum(),
        len(full),
    )
    for sp in p.splits:
        _same(_frame(out.train(sp.origin)).drop(columns="weight"), trains[sp.name])
        _same(_frame(out.test(sp.origin)), tests[sp.name])
        assert out.test_events[sp.name] == tests[sp.name]["event"].sum()
    _same(_frame(out.holdout), pd.concat([tests[sp.name] for sp in p.splits]))


def test_write_tables_end_follow_up_days_after_each_landmark(tables, days, con, tmp_path):
    p, full, _, tests = tables
    out = oot.write_tables(con, p, days[-1], 20, tmp_path, followup_days=6)
    limited = oracle_stacked(p.landmarks, days[-1], 20, con, followup_days=6)
    train = _frame(out.train()).drop(columns="weight")
    _same(train, limited)
    assert train["duration_days"].max() == 6 < full["duration_days"].max()
    # a failure more than 6 days after its landmark is censored there, not dropped
    late = full["event"] & (full["duration_days"] > 6)
    assert late.any() and out.events == full["event"].sum() - late.sum()
    assert len(train) == len(full)
    for sp in p.splits:
        _same(_frame(out.train(sp.origin)).drop(columns="weight"), oracle_train(limited, sp.origin))
        _same(_frame(out.test(sp.origin)), tests[sp.name])  # test windows are their own


def test_write_tables_keep_censored_rows_per_failure_above_the_cap(tables, days, con, tmp_path):
    p, full, _, _ = tables
    events, n_censored = int(full["event"].sum()), int((~full["event"]).sum())
    assert 5 * events < n_censored
    out = oot.write_tables(
        con, p, days[-1], 20, tmp_path, max_censored_rows=100, min_censored_per_failure=5
    )
    assert (out.events, out.rows) == (events, 6 * events)  # 5 censored rows per failure, not 100
    assert out.censored_weight == pytest.approx(n_censored / (5 * events), abs=1 / 2048)
    below = oot.write_tables(con, p, days[-1], 20, tmp_path / "b", max_censored_rows=100)
    assert below.rows == events + 100


def test_write_tables_samples_censored_rows_with_weights(tables, days, con, tmp_path):
    p, full, _, tests = tables
    n_censored = int((~full["event"]).sum())
    out = oot.write_tables(con, p, days[-1], 20, tmp_path / "a", max_censored_rows=2000, seed=3)
    train = _frame(out.train())
    failed, kept = train[train["event"]], train[~train["event"]]
    assert len(failed) == full["event"].sum() == out.events  # every failure kept
    assert len(kept) == 2000 == out.rows - out.events
    assert (failed["weight"] == 1).all()
    assert kept["weight"].to_numpy() == pytest.approx(n_censored / 2000, abs=1 / 2048)
    assert (kept["weight"] * 1024).apply(float.is_integer).all()  # sums exact in floating point
    assert train["weight"].sum() == pytest.approx(len(full), rel=1e-3)
    assert out.population_rows == len(full)
    key = ["serial_number", "snapshot_date"]
    assert not train.duplicated(key).any()
    # rows of the stack, values and all: covariates are computed for the kept rows alone
    _same(train.drop(columns="weight"), full.merge(train[key], on=key))
    # a split's table is the sampled table censored at its origin (same rows and weights)
    for sp in p.splits:
        expected = oracle_train(train, sp.origin)
        _same(_frame(out.train(sp.origin)), expected)
        _same(_frame(out.test(sp.origin)), tests[sp.name])  # tests are never sampled
    # every family fits the sampled tables (lifelines' KM failed on inexact weight sums)
    for table in [train, *(_frame(out.train(sp.origin)) for sp in p.splits)]:
        make_model("km", {"time_scale": "landmark"}).fit(table)
    # seeded: the same draw again, another seed draws other rows
    again = oot.write_tables(con, p, days[-1], 20, tmp_path / "b", max_censored_rows=2000, seed=3)
    _same(_frame(again.train()), train)
    other = oot.write_tables(con, p, days[-1], 20, tmp_path / "c", max_censored_rows=2000, seed=4)
    assert set(map(tuple, _frame(other.train())[key].to_numpy())) != set(
        map(tuple, train[key].to_numpy())
    )


def test_write_tables_bound_failure_rows_with_weights(tables, days, con, tmp_path):
    p, full, _, tests = tables
    events = int(full["event"].sum())
    cap = events // 3
    out = oot.write_tables(
        con,
        p,
        days[-1],
        20,
        tmp_path,
        max_censored_rows=100,
        min_censored_per_failure=5,
        max_failure_rows=cap,
        seed=1,
    )
    train = _frame(out.train())
    failed, kept = train[train["event"]], train[~train["event"]]
    # the ceiling holds the failure rows, and the floor counts the *kept* failures
    assert len(failed) == cap == out.events and len(kept) == 5 * cap > 100
    assert failed["weight"].to_numpy() == pytest.approx(events / cap, abs=1 / 2048)
    assert out.failure_weight == failed["weight"].iloc[0]
    assert (train["weight"] * 1024).apply(float.is_integer).all()
    assert failed["weight"].sum() == pytest.approx(events, rel=1e-3)
    assert train["weight"].sum() == pytest.approx(len(full), rel=1e-3)
    key = ["serial_number", "snapshot_date"]
    _same(train.drop(columns="weight"), full.merge(train[key], on=key))
    # weights stay inverse inclusion probabilities in the splits: a failure row whose failure
    # falls after the origin is censored there and keeps the failure rows' weight
    for sp in p.splits:
        _same(_frame(out.train(sp.origin)), oracle_train(train, sp.origin))
        _same(_frame(out.test(sp.origin)), tests[sp.name])
    for table in [train, *(_frame(out.train(sp.origin)) for sp in p.splits)]:
        make_model("km", {"time_scale": "landmark"}).fit(table)
    # above the stack's failures the ceiling draws nothing
    above = oot.write_tables(con, p, days[-1], 20, tmp_path / "a", max_failure_rows=events)
    assert (above.events, above.rows, above.failure_weight) == (events, len(full), 1.0)
