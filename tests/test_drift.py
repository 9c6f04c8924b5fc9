"""Evidently drift decisions on data with and without a deliberate shift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diskrisk.config import DriftSettings
from diskrisk.drift import check_drift, drift_features, write_report

NUM = ["smart_5_raw", "smart_197_raw", "age_days", "capacity_tb"]
CAT = ["vendor"]


def drives(n: int, seed: int, shift: float = 0.0, vendor_p=(0.6, 0.3, 0.1)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "smart_5_raw": rng.poisson(0.3 + shift * 5, n).astype(float),
            "smart_197_raw": rng.poisson(0.2 + shift * 5, n).astype(float),
            "age_days": rng.normal(900 + shift * 400, 200, n),
            "capacity_tb": rng.choice([3.0, 4.0], n),
            "vendor": rng.choice(["Seagate", "HGST", "WDC"], n, p=vendor_p),
        }
    )


def test_same_distribution_is_not_drift():
    summary, _ = check_drift(drives(5000, 1), drives(5000, 2), NUM, CAT)
    assert summary.drift is False
    assert summary.tested_columns == 5
    assert summary.share < 0.5


def test_shifted_distribution_is_drift():
    summary, _ = check_drift(
        drives(5000, 1), drives(5000, 2, shift=1.0, vendor_p=(0.1, 0.1, 0.8)), NUM, CAT
    )
    assert summary.drift is True
    for col in ("smart_5_raw", "smart_197_raw", "age_days", "vendor"):
        assert summary.columns[col].drifted, col
    assert summary.columns["vendor"].method == "psi"
    assert summary.columns["age_days"].method == "ks"


def test_threshold_share_is_configurable():
    """One drifted feature of five: drift only when the required share is low enough."""
    ref, cur = drives(5000, 1), drives(5000, 2)
    cur["age_days"] += 500
    strict, _ = check_drift(ref, cur, NUM, CAT, DriftSettings(drift_share=0.5))
    loose, _ = check_drift(ref, cur, NUM, CAT, DriftSettings(drift_share=0.2))
    assert strict.drifted_columns == loose.drifted_columns == 1
    assert (strict.drift, loose.drift) == (False, True)


def test_empty_columns_are_skipped_with_a_reason():
    ref, cur = drives(1000, 1), drives(1000, 2)
    ref["smart_187_raw"] = np.nan
    cur["smart_187_raw"] = np.nan
    summary, _ = check_drift(ref, cur, [*NUM, "smart_187_raw", "smart_999_raw"], CAT)
    assert set(summary.skipped) == {"smart_187_raw", "smart_999_raw"}
    assert summary.tested_columns == 5


def test_nothing_testable_is_an_error():
    with pytest.raises(ValueError, match="no feature can be tested"):
        check_drift(drives(100, 1), drives(100, 2), ["nope"], [])


def test_report_files(tmp_path):
    summary, snap = check_drift(drives(2000, 1), drives(2000, 2, shift=1.0), NUM, CAT)
    paths = write_report(summary, snap, tmp_path)
    assert paths["html"].stat().st_size > 10_000
    assert '"drift": true' in paths["json"].read_text()


def test_time_driven_and_derived_features_are_not_tested():
    cols = [
        "serial_number",
        "vendor",
        "capacity_bytes",
        "age_days",
        "smart_5_raw",
        "smart_5_raw_d7",
        "smart_5_raw_d30",
        "smart_9_raw",
        "smart_12_raw",
        "smart_197_raw",
    ]
    assert drift_features(cols) == (["capacity_bytes", "smart_5_raw", "smart_197_raw"], ["vendor"])


def test_weighted_reference_is_drawn_by_its_weights():
    """A sampled training table (every failure, a share of the censored rows, weighted) stands
    for the fleet in the drift reference, not for its own over-share of failures."""
    from diskrisk.drift import _sample

    table = pd.DataFrame({"failed": [True] * 1000 + [False] * 1000})
    weight = np.where(table["failed"], 1.0, 99.0)  # 1 % failures in the fleet it stands for
    drawn = _sample(table, 5000, seed=0, weight=weight)
    assert len(drawn) == 2000  # never more rows than the table
    assert drawn["failed"].mean() == pytest.approx(0.01, abs=0.01)
    assert _sample(table, 5000, seed=0)["failed"].mean() == 0.5  # unweighted: as it is
