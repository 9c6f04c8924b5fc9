"""The stats stage's null rates from Parquet footers against a full scan and pandas."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from diskrisk import lake, stats


def _day(root, day: str, frame: pd.DataFrame, row_group_size: int) -> None:
    path = root / f"date={day}" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    table = pa.Table.from_pandas(frame.assign(date=date.fromisoformat(day)), preserve_index=False)
    pq.write_table(table, path, row_group_size=row_group_size)


def test_null_rates_from_footers_equal_a_scan_of_every_column(tmp_path):
    """Several row groups per file, and a column the first day's file lacks (the schema grew):
    that day counts as null on every row of it."""
    first = pd.DataFrame(
        {
            "serial_number": ["A", "B", "C", "D", "E"],
            "failure": [0, 0, 1, 0, 0],
            "smart_9_raw": [48.0, None, 24.0, None, 30.0],
        }
    )
    second = pd.DataFrame(
        {
            "serial_number": ["A", "B", "D", None],
            "failure": [0, 0, 0, 1],
            "smart_9_raw": [72.0, 96.0, None, 12.0],
            "smart_242_raw": [None, 1.0, 2.0, None],
        }
    )
    _day(tmp_path, "2024-01-01", first, row_group_size=2)
    _day(tmp_path, "2024-01-02", second, row_group_size=3)

    rows, nulls = lake.null_counts(root=tmp_path)
    assert rows == 9
    assert nulls["smart_242_raw"] == 5 + 2 and nulls["smart_9_raw"] == 3
    assert nulls["serial_number"] == 1 and nulls["failure"] == 0

    con = lake.connect(root=tmp_path)
    from_footers = stats.compute(con, nulls=(rows, nulls))["na_rate"]
    scanned = stats.compute(con)["na_rate"]
    assert from_footers.keys() == scanned.keys()
    for column, rate in scanned.items():
        assert from_footers[column] == pytest.approx(rate), column
    truth = pd.concat([first, second]).isna().mean()
    assert from_footers["smart_242_raw"] == pytest.approx(truth["smart_242_raw"])
    assert from_footers["smart_9_raw"] == pytest.approx(truth["smart_9_raw"])


def test_a_column_without_recorded_null_counts_is_scanned(tmp_path):
    frame = pd.DataFrame({"serial_number": ["A", None], "failure": [0, 1]})
    path = tmp_path / "date=2024-01-01" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(frame), path, write_statistics=False)
    rows, nulls = lake.null_counts(root=tmp_path)
    assert rows == 2 and nulls["serial_number"] is None
    con = lake.connect(root=tmp_path)
    assert stats.compute(con, nulls=(rows, nulls))["na_rate"]["serial_number"] == 0.5


def test_daily_churn_counts_first_and_last_days_of_each_drive(tmp_path):
    days = {
        "2024-01-01": ["A", "B", "C"],
        "2024-01-02": ["A", "C", "D"],
        "2024-01-03": ["A", "D", "E"],
    }
    for day, serials in days.items():
        frame = pd.DataFrame({"serial_number": serials, "failure": 0, "smart_9_raw": 24.0})
        _day(tmp_path, day, frame, row_group_size=2)
    after_compute = lake.connect(root=tmp_path)
    stats.compute(after_compute)  # leaves its per-drive table on the connection
    for con in (after_compute, lake.connect(root=tmp_path)):
        d = stats.daily(con)
        assert d["drives"].tolist() == [3, 3, 3]
        assert d["new_drives"].tolist() == [3, 1, 1]  # A B C, then D, then E
        assert d["last_seen_drives"].tolist() == [1, 1, 3]  # B, then C, then A D E


def _figures(con) -> tuple:
    summary = stats.compute(con)
    summary.pop("na_rate")
    return summary, stats.daily(con).to_dict("list"), stats.failure_curves(con)


def test_days_folded_in_any_order_give_the_figures_of_the_whole_lake(tmp_path):
    """The state merges exactly: drive A's age is unknown on its first day, so its age at
    first sight is day 2's, whichever of its days is folded first; B fails; C and D come
    late; two models."""
    days = {
        "2024-01-01": (["A", "B"], ["m1", "m2"], [0, 0], [None, 240.0]),
        "2024-01-02": (["A", "B", "C"], ["m1", "m2", "m1"], [0, 1, 0], [48.0, 264.0, 12.0]),
        "2024-01-03": (["A", "C", "D"], ["m1", "m1", "m2"], [0, 0, 0], [72.0, 36.0, None]),
    }
    for day, (serials, models, failures, hours) in days.items():
        frame = pd.DataFrame(
            {"serial_number": serials, "model": models, "failure": failures, "smart_9_raw": hours}
        )
        _day(tmp_path, day, frame, row_group_size=2)
    whole = _figures(lake.connect(root=tmp_path))
    assert whole[0]["mean_age_at_first_seen_days"] == pytest.approx((2 + 10 + 0.5) / 3)
    assert whole[0]["drives"] == 4 and whole[0]["failures"] == 1 and whole[0]["rows"] == 8
    first, second, third = days
    for parts in ([[first], [second, third]], [[third], [first], [second]], [[third, first], []]):
        con = lake.connect(root=tmp_path)
        for part in parts:
            stats.fold(con, part)
        if len(parts) == 2 and not parts[1]:  # the second day never folded
            assert _figures(con)[0]["rows"] == 5
            continue
        folded = _figures(con)
        assert folded[1:] == whole[1:]
        assert folded[0] == pytest.approx(whole[0]), parts
