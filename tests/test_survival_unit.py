"""Landmark survival dataset on small local lakes with hand-computed answers (no services)."""

from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from diskrisk import lake, schema, survival, synth, validate

D0 = date(2020, 1, 1)


def day(k: int) -> date:
    return D0 + timedelta(days=k - 1)


def write_lake(root, rows: list[dict]) -> None:
    """rows: dicts with day index k and column values; one partition per day."""
    df = pd.DataFrame(rows)
    for k, part in df.groupby("k"):
        part = part.drop(columns="k").dropna(axis=1, how="all")
        part.insert(0, "date", day(int(k)))
        t = pa.Table.from_pandas(part, preserve_index=False).cast(
            schema.schema_for(list(part.columns))
        )
        v = validate.Validated(day(int(k)), f"{day(int(k))}.csv", t, None, t.num_rows)
        lake.write_local(v, root)


def drive(serial, days, *, fail=(), model="ST4000DM000", s5=None, s197=None):
    out = []
    for k in days:
        out.append(
            {
                "k": k,
                "serial_number": serial,
                "model": model,
                "capacity_bytes": 4 * 10**12,
                "failure": int(k in fail),
                "smart_9_raw": 24.0 * k + 1000,
                "smart_5_raw": None if s5 is None else float(s5(k)),
                "smart_197_raw": None if s197 is None else float(s197(k)),
            }
        )
    return out


@pytest.fixture()
def tiny(tmp_path):
    rows = (
        drive("A", range(1, 11), fail={8}, s5=lambda k: max(k - 1, 0))
        + drive("B", range(1, 11), model="HGST HMS5C4040ALE640")
        + drive("C", range(1, 11), fail={3})  # failed before s, reappeared
        + drive("D", range(1, 6))  # no follow-up
        + drive("E", [1, 2, 3, 4, 6, 7, 8, 9, 10])  # not seen on s
        + drive("F", range(1, 11), fail={7, 9}, model="WDC WD30EFRX")  # repeated failure
        + drive("G", range(3, 11), s197=lambda k: 2 * k)  # late entry, sparse SMART
    )
    write_lake(tmp_path, rows)
    return tmp_path


def test_survival_dataset_hand_computed(tiny):
    s = day(5)
    df = survival.survival_dataset(s, lookback=5, root=tiny).set_index("serial_number")
    assert sorted(df.index) == ["A", "B", "F", "G"]
    assert (df.loc["A", "duration_days"], df.loc["A", "event"]) == (3, True)
    assert (df.loc["B", "duration_days"], df.loc["B", "event"]) == (5, False)
    assert (df.loc["F", "duration_days"], df.loc["F", "event"]) == (2, True)  # first failure
    assert (df.loc["G", "duration_days"], df.loc["G", "event"]) == (5, False)
    assert df.loc["A", "smart_5_raw"] == 4
    assert df.loc["A", "smart_5_raw_d7"] == 4  # earliest in [s-7, s] is day 1 (0)
    assert df.loc["G", "smart_197_raw"] == 10
    assert df.loc["G", "smart_197_raw_d7"] == 4  # day 3 → day 5
    assert np.isnan(df.loc["B", "smart_5_raw"])
    assert np.isnan(df.loc["B", "smart_12_raw"])  # a column no partition has
    assert df.loc["A", "age_days"] == pytest.approx((24 * 5 + 1000) / 24)
    assert df.loc["B", "vendor"] == "HGST"
    assert df.loc["F", "vendor"] == "WDC"
    assert df.loc["A", "vendor"] == "Seagate"
    assert (df["exit_age_days"] - df["entry_age_days"] == df["duration_days"]).all()
    assert (df["snapshot_date"] == pd.Timestamp(s)).all()
    expected = [
        *survival.feature_columns(),
        "duration_days",
        "event",
        "entry_age_days",
        "exit_age_days",
    ]
    assert list(df.reset_index().columns) == expected


def test_lookback_limits_latest_value(tiny):
    df = survival.snapshot_features(day(5), lookback=1, root=tiny).set_index("serial_number")
    assert "E" not in df.index and "C" in df.index  # scoring: every drive seen on the day
    assert df.loc["A", "smart_5_raw"] == 4
    assert "duration_days" not in df.columns


def test_end_truncates_followup(tiny):
    df = survival.survival_dataset(day(5), 5, end=day(6), root=tiny).set_index("serial_number")
    assert not df["event"].any()
    assert (df["duration_days"] == 1).all()


def test_vendor_sql_matches_python():
    models = [
        "ST4000DM000",
        "Hitachi HDS5C3030ALA630",
        "HGST HUH721212ALE604",
        "WDC WD30EFRX",
        "TOSHIBA MG07ACA14TA",
        "SAMSUNG HD103UJ",
        "CT250MX500SSD1",
        "Seagate BarraCuda",
        "MTFDDAV240TCB",
        "DELLBOSS VD",
        "ZA250CM10002",
        "mystery",
        None,
    ]
    con = duckdb.connect()
    con.execute("CREATE TABLE m (model VARCHAR)")
    con.executemany("INSERT INTO m VALUES (?)", [[x] for x in models])
    got = [r[0] for r in con.execute(f"SELECT {survival.vendor_sql()} FROM m").fetchall()]
    assert got == [survival.vendor_of(x) for x in models]
    assert got[:6] == ["Seagate", "HGST", "HGST", "WDC", "Toshiba", "Samsung"]
    assert survival.vendor_of("mystery") == "other"


def test_synthetic_signal_cox_cindex(tmp_path):
    lifelines = pytest.importorskip("lifelines")
    from lifelines.utils import concordance_index

    g = synth.Generator("2013", 3000, seed=5, h0=5e-5, degrade_share=0.05)
    for d, t in g.days(date(2013, 4, 1), 60):
        lake.write_local(validate.validate_bytes(synth.csv_bytes(t), f"{d}.csv"), tmp_path)
    # out of time: fit on the drives of one landmark (follow-up up to the next), rank later
    cols = ["age_days", "smart_5_raw", "smart_187_raw", "smart_197_raw", "smart_198_raw"]

    def table(landmark: date, end: date | None = None) -> pd.DataFrame:
        df = survival.survival_dataset(landmark, 20, end=end, root=tmp_path)
        x = df[[*cols, "duration_days", "event"]].copy()
        x[cols] = np.log1p(x[cols].fillna(0).clip(lower=0))
        return x

    tr, ho = table(date(2013, 4, 20), date(2013, 5, 5)), table(date(2013, 5, 5))
    assert tr["event"].sum() >= 10 and ho["event"].sum() >= 10
    m = lifelines.CoxPHFitter(penalizer=0.01).fit(tr, "duration_days", "event")
    c = concordance_index(ho["duration_days"], -m.predict_partial_hazard(ho), ho["event"])
    assert c > 0.75


def test_cli_preprocess_and_stats_on_local_lake(tiny, tmp_path):
    import json

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from diskrisk.cli_data import app

    out = tmp_path / "ds.parquet"
    res = CliRunner().invoke(
        app,
        [
            "preprocess",
            "--cutoff",
            str(day(5)),
            "--lookback",
            "5",
            "--out",
            str(out),
            "--root",
            str(tiny),
        ],
    )
    assert res.exit_code == 0, res.output
    t = pq.read_table(out)
    assert sorted(t["serial_number"].to_pylist()) == ["A", "B", "F", "G"]
    assert sum(t["event"].to_pylist()) == 2

    res = CliRunner().invoke(app, ["stats", "--root", str(tiny), "--out", str(tmp_path / "st")])
    assert res.exit_code == 0, res.output
    st = json.loads((tmp_path / "st" / "stats.json").read_text())
    assert st["drives"] == 7
    assert st["failures"] == 4  # A, C, F twice
    assert st["drives_failed_more_than_once"] == 1  # F
    assert st["late_entry_share"] == pytest.approx(1 / 7)  # G
    assert (tmp_path / "st" / "failures_per_day.png").stat().st_size > 1000


def test_lake_queries_spill_to_disk_instead_of_running_out_of_memory(tmp_path, monkeypatch):
    """``bounded_duckdb`` holds DuckDB to DISKRISK_DUCKDB_MEMORY_LIMIT and lets it spill to
    DISKRISK_DUCKDB_TEMP_DIR: the same aggregation that fails under the limit with nowhere to
    spill completes with the spill directory."""
    monkeypatch.setenv("DISKRISK_DUCKDB_MEMORY_LIMIT", "64MiB")
    monkeypatch.setenv("DISKRISK_DUCKDB_TEMP_DIR", str(tmp_path / "spill"))
    con = lake.bounded_duckdb()
    con.execute("SET threads = 1")
    big = """SELECT count(*), sum(l) FROM (
                 SELECT i % 4000000 AS k, max(i) AS m, list(i) AS l0, count(*) AS l
                 FROM range(12000000) t(i) GROUP BY k)"""
    assert con.execute(big).fetchone() == (4_000_000, 12_000_000)
    nowhere = duckdb.connect(config={"memory_limit": "64MiB", "temp_directory": ""})
    nowhere.execute("SET threads = 1")
    with pytest.raises(duckdb.OutOfMemoryException):
        nowhere.execute(big).fetchone()
