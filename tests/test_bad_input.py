"""Input classes real Backblaze releases and real sources contain (issue #14): each one either
lands correctly or is set aside with its reason. Fixtures are written by the tests; URLs are
served by a real HTTP server on loopback."""

from __future__ import annotations

import http.server
import threading
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import ClassVar

import pytest

from diskrisk import lake, schema, sinks, survival, synth
from diskrisk.ingest import SourceError, days_of, download
from diskrisk.validate import (
    EmptyFileError,
    FutureDayError,
    HeaderOnlyError,
    validate_bytes,
)
from test_sinks import make_scores

HEADER = "date,serial_number,model,capacity_bytes,failure,smart_5_raw,smart_9_raw"


def day_csv(day: str, rows: list[str], header: str = HEADER, newline: str = "\n") -> bytes:
    return newline.join([header, *rows, ""]).encode()


ROWS = [
    "2013-04-10,A1,ST4000DM000,4000787030016,0,0,100",
    '2013-04-10,A2,"WDC ""WD30""",3000592982016,1,8,200',
    "2013-04-10,A3,HGST HMS5C4040ALE640,4000787030016,0,0,300",
]


def test_a_day_from_the_future_is_refused_with_its_reason():
    data = day_csv("2099-01-01", [r.replace("2013-04-10", "2099-01-01") for r in ROWS])
    with pytest.raises(FutureDayError, match="2099-01-01 is in the future"):
        validate_bytes(data, "2099-01-01.csv", latest_day=date(2026, 11, 24))
    assert validate_bytes(data, "2099-01-01.csv").table.num_rows == 3  # no limit given


def test_a_serial_the_score_store_cannot_key_is_quarantined_and_the_rest_land():
    rows = [*ROWS, "2013-04-10,BAD#7,ST4000DM000,4000787030016,0,0,400"]
    v = validate_bytes(day_csv("2013-04-10", rows), "2013-04-10.csv")
    assert v.table["serial_number"].to_pylist() == ["A1", "A2", "A3"]
    (bad,) = v.rejected.to_pylist()
    assert bad["serial_number"] == "BAD#7" and bad["_reason"] == schema.SERIAL_SEP_REASON
    assert bad["_row"] == 5


def test_the_sink_sets_aside_rows_it_cannot_store_and_keeps_the_others():
    scores = make_scores(5)
    scores.loc[1, "serial_number"] = "X#1"
    scores.loc[3, "risk"] = float("nan")
    good, aside = sinks.partition(scores)
    assert len(good) == 3 and set(aside["serial_number"]) == {"X#1", "S00000003"}
    assert aside.set_index("serial_number")["_reason"].to_dict() == {
        "X#1": schema.SERIAL_SEP_REASON,
        "S00000003": "non-finite risk",
    }
    with pytest.raises(ValueError, match="2 score row"):
        sinks.normalise(scores)  # callers that want all or nothing still get an error


@pytest.mark.parametrize(
    ("newline", "warning"),
    [("\n", None), ("\r\n", None), ("\r", "carriage-return line endings")],
)
def test_line_endings_and_quoted_fields_land(newline, warning):
    v = validate_bytes(day_csv("2013-04-10", ROWS, newline=newline), "2013-04-10.csv")
    assert v.rejected is None and v.table.num_rows == 3
    assert v.table["model"].to_pylist()[1] == 'WDC "WD30"'
    assert (warning is None) == (not v.warnings)
    if warning:
        assert warning in v.warnings[0]


def test_a_us_style_date_is_quarantined_with_its_reason():
    rows = [ROWS[0], ROWS[1].replace("2013-04-10", "4/10/13"), ROWS[2]]
    v = validate_bytes(day_csv("2013-04-10", rows), "2013-04-10.csv")
    assert v.table["serial_number"].to_pylist() == ["A1", "A3"]
    (bad,) = v.rejected.to_pylist()
    assert bad["date"] == "4/10/13" and bad["_reason"].startswith("date: not a valid")


def test_empty_days_are_refused_naming_the_file():
    with pytest.raises(EmptyFileError, match=r"2013-04-10\.csv: file is empty"):
        validate_bytes(b"", "2013-04-10.csv")
    with pytest.raises(HeaderOnlyError, match=r"2013-04-10\.csv: header only"):
        validate_bytes(day_csv("2013-04-10", []), "2013-04-10.csv")


def test_a_lake_across_schema_layouts_stays_readable(tmp_path):
    """2013's 85-column layout, then the modern ~190-column one with datacenter, pod_id,
    is_legacy_format...: one lake, one unified schema, features for drives of both."""
    days = tmp_path / "days"
    old = synth.write_days(days, "2013", 300, 2, date(2024, 1, 1), 1)
    new = synth.write_days(days, "modern", 300, 2, date(2024, 1, 3), 2)
    widths = {p.name: len(p.read_text().splitlines()[0].split(",")) for p in [*old, *new]}
    assert min(widths.values()) < 100 < max(widths.values())
    root = tmp_path / "lake"
    for p in [*old, *new]:
        lake.write_local(validate_bytes(p.read_bytes(), p.name), root)
    unified = lake.dataset(root=root).schema
    assert {"datacenter", "pod_id", "is_legacy_format"} <= set(unified.names)
    con = lake.connect(root=root)
    per_day = dict(con.execute("SELECT date, count(*) FROM lake GROUP BY 1").fetchall())
    assert len(per_day) == 4
    feats = survival.snapshot_features("2024-01-04", 30, root=root)
    assert len(feats) > 0 and feats["serial_number"].is_unique


def test_a_drive_whose_model_string_changes_keeps_its_newest_model(tmp_path):
    root = tmp_path / "lake"
    for day, model in (("2013-04-10", "ST4000DM000"), ("2013-04-11", "ST4000DM000-1F2168")):
        rows = [f"{day},A1,{model},4000787030016,0,0,100", f"{day},A2,WDC X,3000592982016,0,0,9"]
        lake.write_local(validate_bytes(day_csv(day, rows), f"{day}.csv"), root)
    feats = survival.snapshot_features("2013-04-11", 30, root=root).set_index("serial_number")
    assert feats.loc["A1", "model"] == "ST4000DM000-1F2168"


def test_a_zip_with_a_csv_that_is_not_a_day_lands_its_days(tmp_path):
    z = tmp_path / "q.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("data_Q2_2013/2013-04-10.csv", day_csv("2013-04-10", ROWS))
        zf.writestr("data_Q2_2013/README_models.csv", "model,notes\nST4000DM000,x\n")
    with days_of(z) as days:
        assert [(d.day, d.name) for d in days] == [(date(2013, 4, 10), "2013-04-10.csv")]


@pytest.mark.integration
def test_a_day_twice_in_one_source_or_from_the_future_is_not_collected(stack_env, tmp_path):
    """Into the real S3 of the local stack: the same bytes twice are one day; two different
    files for one day are both refused (neither can be told to be right); a future day is
    refused before it reaches raw/. Each refusal has its record; the other days land."""
    import uuid

    from diskrisk import ingest, layout, s3

    prefix = f"dup{uuid.uuid4().hex[:8]}/"
    later = [r.replace("2013-04-10", "2013-04-11") for r in ROWS]
    z = tmp_path / "q.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a/2013-04-10.csv", day_csv("2013-04-10", ROWS))
        zf.writestr("b/2013-04-10.csv", day_csv("2013-04-10", ROWS))  # same bytes
        zf.writestr("a/2013-04-11.csv", day_csv("2013-04-11", later))
        zf.writestr("b/2013-04-11.csv", day_csv("2013-04-11", later[:2]))  # different
        zf.writestr("2099-01-01.csv", day_csv("2099-01-01", ROWS))
    summary = ingest.collect(z, prefix=prefix, latest=date(2026, 11, 24))
    assert [d.day for d in summary.days] == [date(2013, 4, 10)]
    kinds = {e.file: e.kind for e in summary.errors}
    assert kinds == {"2013-04-11.csv": "duplicate_day", "2099-01-01.csv": "future_day"}
    assert "q.zip!a/2013-04-11.csv, q.zip!b/2013-04-11.csv" in str(summary.errors[0])
    assert s3.head(layout.raw(date(2013, 4, 10), prefix)) is not None
    for refused in (date(2013, 4, 11), date(2099, 1, 1)):
        assert s3.head(layout.raw(refused, prefix)) is None
        record = s3.get_json(layout.file_record(f"{refused.isoformat()}.csv", prefix))
        assert record["kind"] in {"duplicate_day", "future_day"}, record


# --- URL sources, from a real HTTP server on loopback ------------------------------------------
BODY = day_csv("2013-04-10", ROWS)


class Handler(http.server.BaseHTTPRequestHandler):
    calls: ClassVar[dict[str, int]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        Handler.calls[self.path] = Handler.calls.get(self.path, 0) + 1
        if self.path.endswith("/missing.csv"):
            self.send_error(404, "Not Found")
        elif self.path.endswith("/secret.csv"):
            self.send_error(401, "Unauthorized")
        elif self.path.endswith("/empty.csv"):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.endswith("/stalled.csv"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:10])
            self.wfile.flush()
            threading.Event().wait(3)  # longer than the read timeout
        elif self.path.endswith("/flaky.csv") and Handler.calls[self.path] == 1:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:20])  # cut short: a truncated download
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.fixture
def quick(monkeypatch):
    from diskrisk import config

    monkeypatch.setenv("DISKRISK_DOWNLOAD_TIMEOUT_S", "1")
    monkeypatch.setenv("DISKRISK_DOWNLOAD_ATTEMPTS", "2")
    monkeypatch.setattr("time.sleep", lambda s: None)  # the backoff pauses, not the server
    config.cached.cache_clear()


def test_a_url_day_is_downloaded_whole(server, tmp_path, quick):
    path = download(f"{server}/days/2013-04-10.csv", tmp_path / "2013-04-10.csv")
    assert path.read_bytes() == BODY and not list(tmp_path.glob("*.part"))
    with days_of(f"{server}/days/2013-04-10.csv") as days:
        assert [d.day for d in days] == [date(2013, 4, 10)]


def test_a_truncated_download_is_tried_again(server, tmp_path, quick):
    path = download(f"{server}/days/flaky.csv", tmp_path / "flaky.csv")
    assert path.read_bytes() == BODY and Handler.calls["/days/flaky.csv"] == 2


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.csv", "HTTP 404"),
        ("secret.csv", "HTTP 401"),
        ("empty.csv", "empty file"),
        ("stalled.csv", "download failed after 2 attempt"),
    ],
)
def test_url_failures_are_clear_and_leave_no_half_file(server, tmp_path, quick, name, message):
    with pytest.raises(SourceError, match=message):
        download(f"{server}/days/{name}", tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    if name in ("missing.csv", "secret.csv"):  # not worth a second try
        assert Handler.calls[f"/days/{name}"] == 1


def test_source_errors_are_data_errors_with_the_file(server, tmp_path, quick):
    with pytest.raises(SourceError) as info:
        download(f"{server}/days/missing.csv", tmp_path / "missing.csv")
    assert isinstance(info.value, ValueError) and info.value.file == "missing.csv"
    assert Path(tmp_path / "missing.csv").exists() is False
