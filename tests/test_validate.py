"""Row- and file-level validation on in-memory CSVs (no services)."""

import io
from datetime import date

import pyarrow.csv as pacsv
import pytest

from diskrisk import validate as v

HEADER = "date,serial_number,model,capacity_bytes,failure,smart_9_normalized,smart_9_raw\n"
DAY = "2013-04-10"


def rows(*lines: str) -> bytes:
    return (HEADER + "".join(line + "\n" for line in lines)).encode()


GOOD = [f"{DAY},S{i},ST3000DM001,3000592982016,0,100,{1000 + i}" for i in range(5)]


def test_clean_file_types_and_counts():
    r = v.validate_bytes(rows(*GOOD, f"{DAY},F1,ST3000DM001,3000592982016,1,,"), f"{DAY}.csv")
    assert r.rejected is None
    assert r.table.num_rows == 6
    assert r.failures == 1
    assert r.day == date(2013, 4, 10)
    assert str(r.table.schema.field("smart_9_raw").type) == "double"
    assert r.table["smart_9_raw"].null_count == 1


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2013-04-11,X,ST1,1,0,100,5", "date: not the file's day 2013-04-10"),
        (f"{DAY},X,ST1,1,2,100,5", "failure: not 0 or 1"),
        (f"{DAY},X,ST1,1,x,100,5", "failure: not a valid int8"),
        (f"{DAY},X,ST1,1,0,100,abc", "smart_9_raw: not a valid double"),
        (f"{DAY},,ST1,1,0,100,5", "serial_number: empty"),
        (f"{DAY},X,ST1,lots,0,100,5", "capacity_bytes: not a valid int64"),
        ("2013-13-45,X,ST1,1,0,100,5", "date: not a valid date32"),
    ],
)
def test_bad_row_is_quarantined_and_good_rows_kept(line, reason):
    data = rows(GOOD[0], GOOD[1], line, GOOD[2])
    r = v.validate_bytes(data, f"{DAY}.csv")
    assert r.table.num_rows == 3
    assert r.table["serial_number"].to_pylist() == ["S0", "S1", "S2"]
    assert r.rejected.num_rows == 1
    assert r.rejected["_row"].to_pylist() == [4]  # header is line 1
    assert reason in r.rejected["_reason"][0].as_py()
    # the quarantined row keeps its original text
    assert (
        ",".join(
            x or "" for x in r.rejected.drop_columns(["_row", "_reason"]).to_pylist()[0].values()
        )
        == line
    )


def test_duplicate_serial_keeps_first():
    dup = GOOD[1].replace(",1001", ",9999")
    r = v.validate_bytes(rows(*GOOD, dup), f"{DAY}.csv")
    assert r.table.num_rows == 5
    row = r.table.to_pylist()[1]
    assert (row["serial_number"], row["smart_9_raw"]) == ("S1", 1001)
    assert r.rejected["_row"].to_pylist() == [7]
    assert "duplicate" in r.rejected["_reason"][0].as_py()


def test_wrong_field_count_and_blank_lines_keep_row_numbers():
    data = rows(GOOD[0], "garbage,1", "", GOOD[1], f"{DAY},X,ST1,1,5,1,1")
    r = v.validate_bytes(data, f"{DAY}.csv")
    assert r.table.num_rows == 2
    assert r.rejected["_row"].to_pylist() == [3, 6]
    assert "expected 7 fields" in r.rejected["_reason"][0].as_py()
    assert r.rows_in == 4


def test_bom_is_stripped_with_warning():
    r = v.validate_bytes(v.BOM + rows(*GOOD), f"{DAY}.csv")
    assert r.table.num_rows == 5
    assert "date" in r.table.column_names
    assert any("byte-order mark" in w for w in r.warnings)


@pytest.mark.parametrize(
    ("data", "exc", "text"),
    [
        (b"", v.EmptyFileError, "empty"),
        (b"  \n", v.EmptyFileError, "empty"),
        (HEADER.encode(), v.HeaderOnlyError, "header only"),
        (
            b"date,serial_number,model,failure\n2013-04-10,a,b,0\n",
            v.MissingColumnError,
            "capacity_bytes",
        ),
        (rows(GOOD[0]) + b"2013-04-10,\xff\xfe,ST1,1,0,1,1\n", v.EncodingError, "line 3"),
        (b"date,date,serial_number,model,capacity_bytes,failure\n", v.BadHeaderError, "duplicate"),
    ],
)
def test_whole_file_problems_raise_naming_the_file(data, exc, text):
    with pytest.raises(exc) as info:
        v.validate_bytes(data, f"{DAY}.csv")
    assert isinstance(info.value, ValueError)
    assert f"{DAY}.csv" in str(info.value)
    assert text in str(info.value)
    assert info.value.record()["file"] == f"{DAY}.csv"


def test_day_from_name():
    assert v.day_from_name("data_Q2_2013/2013-04-10.csv") == date(2013, 4, 10)
    with pytest.raises(v.UnknownDayError, match=r"drives\.csv"):
        v.day_from_name("drives.csv")


def test_rejected_csv_roundtrip():
    r = v.validate_bytes(rows(GOOD[0], f"{DAY},X,ST1,1,7,1,1"), f"{DAY}.csv")
    back = pacsv.read_csv(io.BytesIO(v.rejected_csv(r.rejected)))
    assert back.column_names[-2:] == ["_row", "_reason"]
    assert back["_row"].to_pylist() == [3]


def test_optional_2023_columns():
    header = (
        "date,serial_number,model,capacity_bytes,failure,datacenter,cluster_id,vault_id,"
        "pod_id,pod_slot_num,is_legacy_format,smart_5_raw\n"
    )
    data = (
        header + f"{DAY},A,ST1,1,0,phx1,0,1001,3,17,false,0\n"
        f"{DAY},B,ST1,1,0,,,,,,True,\n"
        f"{DAY},C,ST1,1,0,phx1,0,1001,3,17,maybe,0\n"
    ).encode()
    r = v.validate_bytes(data, f"{DAY}.csv")
    assert r.table["is_legacy_format"].to_pylist() == [False, True]
    assert r.table["vault_id"].to_pylist() == [1001, None]
    assert "is_legacy_format" in r.rejected["_reason"][0].as_py()
