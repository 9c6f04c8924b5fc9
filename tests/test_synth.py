"""The generator: exact headers, determinism, aging, failures disappear, valid output."""

import os
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from diskrisk import synth, validate

REAL = Path(__file__).resolve().parents[1] / os.environ.get(
    "BACKBLAZE_TEST_DATA", "../shared/data/backblaze-2013"
)


def test_2013_header_matches_real_files():
    files = sorted(REAL.glob("*.csv")) if REAL.is_dir() else []
    if not files:
        if os.environ.get("DISKRISK_REQUIRE_INTEGRATION"):
            pytest.fail(f"real 2013 sample not found in {REAL} (BACKBLAZE_TEST_DATA)")
        pytest.skip("real 2013 sample not available")
    with files[0].open() as f:
        real = f.readline().strip().split(",")
    assert synth.header("2013") == real
    assert len(real) == 85


def test_modern_header_shape():
    h = synth.header("modern")
    assert 185 <= len(h) <= 200
    assert h[5:11] == [
        "datacenter",
        "cluster_id",
        "vault_id",
        "pod_id",
        "pod_slot_num",
        "is_legacy_format",
    ]


def test_deterministic_for_seed():
    a = [
        synth.csv_bytes(t)
        for _, t in synth.Generator("2013", 300, seed=7).days(date(2013, 4, 10), 3)
    ]
    b = [
        synth.csv_bytes(t)
        for _, t in synth.Generator("2013", 300, seed=7).days(date(2013, 4, 10), 3)
    ]
    c = [
        synth.csv_bytes(t)
        for _, t in synth.Generator("2013", 300, seed=8).days(date(2013, 4, 10), 3)
    ]
    assert a == b
    assert a != c


def test_fleet_dynamics():
    g = synth.Generator("modern", 3000, seed=1, h0=2e-4)
    days = list(g.days(date(2024, 1, 1), 20))
    failed: set[str] = set()
    prev_age: dict[str, float] = {}
    for d, t in days:
        serials = t["serial_number"].to_pylist()
        assert len(serials) == len(set(serials))
        assert not failed & set(serials), "failed drives must disappear"
        fail = np.asarray(t["failure"]).astype(bool)
        failed |= {s for s, f in zip(serials, fail, strict=True) if f}
        age = dict(zip(serials, t["smart_9_raw"].to_pylist(), strict=True))
        common = set(age) & set(prev_age)
        assert all(age[s] - prev_age[s] == 24 for s in common)
        prev_age = age
        assert pc.all(pc.equal(t["date"], d)).as_py()
    assert failed, "some drives fail"
    new = set(days[-1][1]["serial_number"].to_pylist()) - set(
        days[0][1]["serial_number"].to_pylist()
    )
    assert new, "new drives appear"


def _failures_per_window(wear_onset: float, days: int = 240, window: int = 60) -> list[int]:
    g = synth.Generator("2013", 4000, seed=3, wear_onset=wear_onset)
    daily = [int(pc.sum(t["failure"]).as_py()) for _, t in g.days(date(2024, 1, 1), days)]
    return [sum(daily[i : i + window]) for i in range(0, days, window)]


def test_wear_onset_keeps_a_long_runs_failure_rate_level():
    """Without onset the degrading minority dies out within months and later failures carry
    no signal; with the stationary onset the last window fails about as often as the first."""
    plain = _failures_per_window(0.0)
    level = _failures_per_window(synth.STATIONARY_WEAR_ONSET)
    assert plain[-1] < 0.4 * plain[0], plain
    assert 0.7 * level[0] < level[-1] < 1.4 * level[0], level


def test_output_validates_clean(tmp_path):
    paths = synth.write_days(tmp_path, "modern", 500, 2, date(2024, 3, 1), seed=2)
    assert [p.name for p in paths] == ["2024-03-01.csv", "2024-03-02.csv"]
    for p in paths:
        v = validate.validate_file(p)
        assert v.rejected is None
        assert v.table.num_rows == v.rows_in > 0
        assert v.day == date(2024, 3, 1) + timedelta(days=paths.index(p))
    assert not paths[0].read_bytes().startswith(b'"')


def test_cli_synth(tmp_path):
    from typer.testing import CliRunner

    from diskrisk.cli_data import app

    out = tmp_path / "days"
    res = CliRunner().invoke(
        app,
        [
            "synth",
            "--era",
            "2013",
            "--drives",
            "200",
            "--days",
            "3",
            "--start",
            "2013-04-10",
            "--out",
            str(out),
            "--seed",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "2013-04-10.csv",
        "2013-04-11.csv",
        "2013-04-12.csv",
    ]
    assert (out / "2013-04-10.csv").read_text().splitlines()[0].split(",") == synth.header("2013")
