"""Data stage against the real S3 server and the real Backblaze days (scripts/stack up s3).

Every test writes under its own ``test-<uuid>/`` prefix inside DISKRISK_BUCKET and removes all
object versions under it afterwards. Expected numbers are computed independently here by
reading the CSVs with pyarrow, never hard-coded from the pipeline's own output.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
import uuid
import zipfile
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / os.environ.get("BACKBLAZE_TEST_DATA", "../shared/data/backblaze-2013")).resolve()


def _s3_ready() -> bool:
    try:
        from diskrisk import s3
        from diskrisk.config import S3Settings, load

        s3.client().head_bucket(Bucket=load(S3Settings).bucket)
        return True
    except Exception:
        return False


if not DATA.is_dir() or not _s3_ready():
    _why = f"needs the S3 server (scripts/stack up s3) and the real days in {DATA} (BACKBLAZE_TEST_DATA)"
    if os.environ.get("DISKRISK_REQUIRE_INTEGRATION"):  # `make test`: missing is a failure
        raise RuntimeError(_why)
    pytest.skip(_why, allow_module_level=True)

from diskrisk import ingest, lake, layout, s3, stats, survival  # noqa: E402
from diskrisk.validate import CorruptZipError  # noqa: E402

BUCKET = s3.bucket()


def versions(prefix: str) -> list[dict]:
    out = []
    for page in (
        s3.client().get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix)
    ):
        out += page.get("Versions", []) + page.get("DeleteMarkers", [])
    return out


def purge(prefix: str) -> None:
    objs = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions(prefix)]
    for i in range(0, len(objs), 1000):
        s3.client().delete_objects(Bucket=BUCKET, Delete={"Objects": objs[i : i + 1000]})


@pytest.fixture(scope="module")
def truth() -> pa.Table:
    """The real days read independently (only the columns the checks need)."""
    opts = pacsv.ConvertOptions(
        include_columns=["date", "serial_number", "failure"], column_types={"date": pa.string()}
    )
    return pa.concat_tables(
        pacsv.read_csv(p, convert_options=opts) for p in sorted(DATA.glob("*.csv"))
    )


@pytest.fixture(scope="module")
def real_lake():
    prefix = f"test-{uuid.uuid4().hex[:10]}/"
    summary = lake.process(DATA, prefix=prefix, chunk_size=5 * ingest.MIB)
    yield prefix, summary
    purge(prefix)


@pytest.fixture()
def scratch():
    prefix = f"test-{uuid.uuid4().hex[:10]}/"
    yield prefix
    purge(prefix)


def test_all_days_collected_and_every_row_lands(real_lake, truth):
    prefix, summary = real_lake
    n_files = len(list(DATA.glob("*.csv")))
    assert n_files == 30
    assert summary.collected.count("new") == n_files
    assert not summary.errors
    assert len(lake.lake_paths(prefix)) == n_files
    con = lake.connect(prefix)
    rows, failures, drives = con.execute(
        "SELECT count(*), sum(failure), count(DISTINCT serial_number) FROM lake"
    ).fetchone()
    assert rows == truth.num_rows == 648_339
    assert failures == pc.sum(truth["failure"]).as_py() == 93
    assert drives == pc.count_distinct(truth["serial_number"]).as_py()
    manifest = lake.read_manifest(prefix)
    assert sum(d["rows"] for d in manifest["days"].values()) == truth.num_rows
    # raw objects carry the sha256 and row count of the original bytes
    first = sorted(DATA.glob("*.csv"))[0]
    meta = s3.head(layout.raw(date.fromisoformat(first.stem), prefix))["Metadata"]
    assert meta["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert int(meta["rows"]) == first.read_bytes().count(b"\n") - 1


def test_another_engine_reads_the_lake_in_s3_from_the_layout_alone(real_lake, truth):
    """Scale-out readers (Spark, Trino, a notebook) know only the documented layout: Hive-style
    ``date=`` partitions under ``lake/`` in S3, one stable schema, the manifest beside them."""
    import pyarrow.dataset as pads

    prefix, _ = real_lake
    root = f"{s3.bucket()}/{prefix}lake/"
    # the partition key is typed (a date); the files also hold ``date`` with the same value
    part = pads.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")
    found = pads.dataset(root, filesystem=s3.arrow_fs(), format="parquet", partitioning=part)
    days = found.files  # _manifest.json is skipped, as every engine skips "_" files
    assert len(days) == 30 and all("/lake/date=2013-" in f for f in days)
    table = found.to_table(columns=["date", "serial_number", "failure"])
    assert table.num_rows == truth.num_rows
    assert pc.sum(table["failure"]).as_py() == 93
    schemas = {pq_schema_of(f) for f in days}
    assert len(schemas) == 1, "every day partition has the same column types"
    manifest = lake.read_manifest(prefix)["days"]
    assert sorted(manifest) == sorted(f.split("date=")[1][:10] for f in days)


def pq_schema_of(path: str) -> str:
    import pyarrow.parquet as pq

    return str(pq.read_schema(path, filesystem=s3.arrow_fs()))


def test_process_reads_each_day_once(scratch, tmp_path, monkeypatch):
    """One pass: a day's bytes are read once, hashed from memory, and the raw upload runs
    while the same bytes are validated (no second streaming read of the source)."""
    folder = tmp_path / "days"
    folder.mkdir()
    for p in sorted(DATA.glob("*.csv"))[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    reads: list[str] = []
    real_read = ingest.read_day
    monkeypatch.setattr(ingest, "read_day", lambda d: reads.append(d.name) or real_read(d))
    monkeypatch.setattr(ingest, "digest", lambda *a, **k: pytest.fail("second read of a day"))
    summary = lake.process(folder, prefix=scratch)
    assert sorted(reads) == sorted(p.name for p in folder.iterdir())
    assert [d.status for d in summary.days] == ["written"] * 3
    assert summary.collected.count("new") == 3


def test_a_new_day_is_parsed_before_its_digest_and_uploaded_while_it_is_encoded(
    scratch, tmp_path, monkeypatch
):
    """A day new to the manifest is validated at once (the upload thread hashes it), and its
    raw upload starts between the parse and the Parquet encode; a day the manifest knows is
    hashed first, so unchanged bytes are never parsed again."""
    import threading

    folder = tmp_path / "days"
    folder.mkdir()
    first = sorted(DATA.glob("*.csv"))[0]
    (folder / first.name).write_bytes(first.read_bytes())
    events: list[tuple[str, str]] = []

    def spy(module, name):
        real = getattr(module, name)

        def called(*args, **kwargs):
            events.append((name, threading.current_thread().name))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, called)

    spy(lake, "validate_bytes")
    spy(lake, "parquet_bytes")
    spy(ingest, "digest_bytes")
    spy(ingest.RawUpload, "start")
    spy(ingest, "upload_day")

    def order(*names: str) -> list[str]:
        return [name for name, _ in events if name in names]

    assert lake.process(folder, prefix=scratch).days[0].status == "written"
    assert order("validate_bytes", "start", "parquet_bytes") == [
        "validate_bytes", "start", "parquet_bytes", "start",  # the second: collect's own wait
    ]  # fmt: skip
    assert order("validate_bytes", "digest_bytes")[0] == "validate_bytes"
    assert {t for name, t in events if name == "digest_bytes"} == {"raw-upload_0"}

    events.clear()
    assert lake.process(folder, prefix=scratch).days[0].status == "unchanged"
    assert order("digest_bytes", "validate_bytes", "upload_day") == ["digest_bytes", "upload_day"]
    assert events[0] == ("digest_bytes", "MainThread")  # once: the upload reuses it

    events.clear()
    changed = folder / first.name  # its last row dropped: bytes the manifest does not know
    changed.write_bytes(b"\n".join(changed.read_bytes().rstrip(b"\n").split(b"\n")[:-1]) + b"\n")
    assert lake.process(folder, prefix=scratch).days[0].status == "written"
    assert order("digest_bytes", "validate_bytes")[:2] == ["digest_bytes", "validate_bytes"]


def test_rerun_is_idempotent(real_lake):
    prefix, _ = real_lake
    before_manifest = lake.read_manifest(prefix)
    before = {(v["Key"], v["VersionId"]) for v in versions(prefix)}
    again = lake.process(DATA, prefix=prefix)
    assert again.collected.count("unchanged") == 30
    assert {d.status for d in again.days} == {"unchanged"}
    assert lake.read_manifest(prefix) == before_manifest
    assert {(v["Key"], v["VersionId"]) for v in versions(prefix)} == before


def test_stats_match_independent_counts(real_lake, truth, tmp_path):
    prefix, _ = real_lake
    st = stats.run(tmp_path, prefix=prefix)
    assert st["rows"] == truth.num_rows
    assert st["failures"] == pc.sum(truth["failure"]).as_py()
    assert st["drives"] == pc.count_distinct(truth["serial_number"]).as_py()
    assert st["days"] == 30
    assert st["first_date"] == pc.min(truth["date"]).as_py()
    assert st["last_date"] == pc.max(truth["date"]).as_py()
    assert st["drives_failed_more_than_once"] == 0
    assert 0 <= st["left_truncated_share"] <= 1
    assert st["na_rate"]["serial_number"] == 0
    scanned = stats.compute(lake.connect(prefix))["na_rate"]  # every column, no footers
    assert st["na_rate"] == pytest.approx(scanned)
    assert json.loads((tmp_path / "stats.json").read_text())["rows"] == truth.num_rows
    for name in ("stats.json", "drives_per_day.png", "failures_per_day.png"):
        assert s3.head(f"{prefix}reports/stats/{name}") is not None


def _without_state(figures: dict) -> dict:
    return {k: v for k, v in figures.items() if k not in ("state", "size_bytes", "na_rate")}


def test_stats_fold_only_new_days_and_read_the_whole_lake_when_a_day_changes(scratch, tmp_path):
    """The state in ``lake/_stats/`` holds the days it folded: the next run reads only the
    day landed since, a re-run writes nothing, and a re-landed day (new bytes) sends the run
    back to the whole lake. Each time the figures equal those of the whole lake read at once."""
    import pyarrow.dataset as pads

    folder = tmp_path / "days"
    folder.mkdir()
    days = sorted(DATA.glob("*.csv"))[:4]
    for p in days[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    lake.process(folder, prefix=scratch)

    def run_and_check(expected_state: dict) -> dict:
        figures = stats.run(tmp_path / "out", prefix=scratch)
        assert figures["state"] == expected_state
        whole = stats.compute(lake.connect(scratch))  # no state: the lake read at once
        assert _without_state(figures) == pytest.approx(_without_state(whole))
        assert figures["na_rate"] == pytest.approx(whole["na_rate"])
        return figures

    assert run_and_check({"days_folded": 3, "whole_lake": True})["days"] == 3
    (folder / days[3].name).write_bytes(days[3].read_bytes())
    lake.process(folder, prefix=scratch)
    assert run_and_check({"days_folded": 1, "whole_lake": False})["days"] == 4

    state = f"{scratch}lake/_stats/"
    before = {(v["Key"], v["VersionId"]) for v in versions(state)}
    assert {key for key, _ in before} == {f"{state}drives.parquet", f"{state}days.parquet"}
    run_and_check({"days_folded": 0, "whole_lake": False})
    assert {(v["Key"], v["VersionId"]) for v in versions(state)} == before

    changed = folder / days[1].name  # its last row dropped: new bytes, a new Parquet digest
    changed.write_bytes(b"\n".join(changed.read_bytes().rstrip(b"\n").split(b"\n")[:-1]) + b"\n")
    lake.process(folder, prefix=scratch)
    rows = sum(d["rows"] for d in lake.read_manifest(scratch)["days"].values())
    assert run_and_check({"days_folded": 4, "whole_lake": True})["rows"] == rows

    # other engines reading lake/ Hive-style still find the day partitions alone
    found = pads.dataset(f"{BUCKET}/{scratch}lake/", filesystem=s3.arrow_fs(), format="parquet")
    assert len(found.files) == 4 and all("/lake/date=" in f for f in found.files)


def test_survival_events_match_independent_count(real_lake, truth):
    prefix, _ = real_lake
    s = "2013-04-20"
    df = survival.survival_dataset(s, 10, prefix=prefix)
    t = truth.to_pandas()
    pop = set(t.loc[t.date == s, "serial_number"])
    failed_before = set(t.loc[(t.date <= s) & (t.failure == 1), "serial_number"])
    after = t[t.date > s]
    at_risk = (pop - failed_before) & set(after.serial_number)
    events = set(after.loc[after.failure == 1, "serial_number"]) & at_risk
    assert set(df["serial_number"]) == at_risk
    assert set(df.loc[df.event, "serial_number"]) == events
    assert (df["duration_days"] >= 1).all()


def _from_local_copies(query, prefix: str, cache: Path, monkeypatch, *args):
    """``query(*args)`` from local copies under ``cache`` equals the same query on the lake in S3."""
    import pandas as pd

    monkeypatch.setenv("DISKRISK_LAKE_CACHE_DIR", str(cache))
    in_s3 = query(*args, con=lake.connect(prefix))
    local = query(*args, prefix=prefix)
    assert len(local) > 20_000
    pd.testing.assert_frame_equal(local, in_s3)


def test_survival_queries_read_local_copies_fetched_once_per_digest(
    real_lake, tmp_path, monkeypatch
):
    """The landmark queries read each day once per landmark, so they read local copies of the
    columns they need: the same table as the lake in S3 gives, fetched once per day and Parquet
    digest, a re-landed day fetched again, copies unused for a week removed."""
    import pyarrow.parquet as pq

    prefix, _ = real_lake
    _from_local_copies(survival.survival_dataset, prefix, tmp_path, monkeypatch, "2013-04-20", 10)

    wanted = survival.source_columns()
    files = lake.mirror(prefix, wanted)
    assert len(files) == 30 and all(tmp_path in f.parents for f in files)
    in_lake = pq.read_schema(lake.lake_paths(prefix)[0], filesystem=s3.arrow_fs()).names
    assert pq.read_schema(files[0]).names == [c for c in in_lake if c in wanted]
    assert len(wanted) < len(in_lake) / 4
    inodes = [f.stat().st_ino for f in files]

    class NoFetch:
        def open_input_file(self, path: str):
            raise AssertionError(f"{path} fetched again")

    store = lake.s3.arrow_fs
    monkeypatch.setattr(lake.s3, "arrow_fs", NoFetch)
    assert lake.mirror(prefix, wanted) == files
    assert [f.stat().st_ino for f in files] == inodes

    monkeypatch.setattr(lake.s3, "arrow_fs", store)
    relanded = lake.read_manifest(prefix)
    relanded["days"]["2013-04-12"]["parquet_sha256"] = "f" * 64
    monkeypatch.setattr(lake, "read_manifest", lambda p: relanded)
    again = lake.mirror(prefix, wanted)
    changed = [(a, b) for a, b in zip(files, again, strict=True) if a != b]
    assert len(changed) == 1 and "2013-04-12-ffff" in changed[0][1].name
    assert changed[0][0].exists()  # the old copy stays until unused for a week
    week_ago = time.time() - 8 * 86400
    partial = changed[0][0].with_name(f".{changed[0][0].name}.1234.5678")  # a crashed fetch
    partial.write_bytes(b"PAR1")
    for stale in (changed[0][0], partial):
        os.utime(stale, (week_ago, week_ago))
    lake.mirror(prefix, wanted)
    assert not changed[0][0].exists() and not partial.exists()
    assert all(f.exists() for f in again)


def test_snapshot_features_copy_only_the_days_they_read(real_lake, tmp_path, monkeypatch):
    """Scoring one day on a new worker fetches its 30-day window, not the whole history."""
    prefix, _ = real_lake
    _from_local_copies(survival.snapshot_features, prefix, tmp_path, monkeypatch, "2013-04-25", 7)
    copied = sorted(p.name[:10] for p in tmp_path.rglob("*.parquet"))
    assert copied == [f"2013-04-{d}" for d in range(10, 26)]  # the lake starts on the 10th
    with pytest.raises(FileNotFoundError, match="no landed day from 2013-01-30 to 2013-03-01"):
        survival.snapshot_features("2013-03-01", 7, prefix=prefix)


def _lines(path: Path, n: int, day: str) -> list[bytes]:
    src_day = path.stem.encode()
    lines = path.read_bytes().split(b"\n")[: n + 1]
    return [lines[0]] + [ln.replace(src_day, day.encode()) for ln in lines[1:]]


def test_malformed_inputs_are_reported_and_valid_rows_land(scratch, tmp_path):
    prefix = scratch
    src = sorted(DATA.glob("*.csv"))[0]
    header = src.read_bytes().split(b"\n", 1)[0]
    folder = tmp_path / "in"
    folder.mkdir()
    files = {
        "2013-06-01": b"",
        "2013-06-02": header + b"\n",
        "2013-06-03": header.replace(b"capacity_bytes,", b"") + b"\n2013-06-03,x,y,0\n",
        "2013-06-04": b"\n".join(_lines(src, 50, "2013-06-04")).replace(b"Hitachi", b"Hit\xe4chi"),
    }
    bom_lines = _lines(src, 300, "2013-06-05")
    files["2013-06-05"] = b"\xef\xbb\xbf" + b"\n".join(bom_lines) + b"\n"
    bad = _lines(src, 400, "2013-06-06")
    bad[10] = bad[10].replace(b"2013-06-06", b"2013-06-07")  # wrong date
    bad[20] = bad[20].replace(b",0,", b",7,", 1)  # failure not 0/1
    bad[30] = bad[5]  # duplicate serial
    bad[40] = b"2013-06-06,broken"  # wrong number of fields
    files["2013-06-06"] = b"\n".join(bad) + b"\n"
    for d, body in files.items():
        (folder / f"{d}.csv").write_bytes(body)

    summary = lake.process(folder, prefix=prefix)
    by_day = {o.day.isoformat(): o for o in summary.days}
    expected_errors = {
        "2013-06-01": "empty",
        "2013-06-02": "header only",
        "2013-06-03": "missing required column(s) capacity_bytes",
        "2013-06-04": "not valid UTF-8 at line",
    }
    for d, text in expected_errors.items():
        assert by_day[d].status == "rejected"
        assert text in str(by_day[d].error) and f"{d}.csv" in str(by_day[d].error)
        rec = json.loads(
            s3.client()
            .get_object(Bucket=BUCKET, Key=f"{prefix}quarantine/_files/{d}.csv.json")["Body"]
            .read()
        )
        assert text in rec["reason"]
        assert s3.head(layout.lake_day(date.fromisoformat(d), prefix)) is None

    assert by_day["2013-06-05"].status == "written"
    assert any("byte-order mark" in w for w in by_day["2013-06-05"].warnings)
    assert by_day["2013-06-05"].entry["rows"] == 300

    entry = by_day["2013-06-06"].entry
    assert entry["rows"] == 400 - 4 and entry["quarantined"] == 4
    q = pacsv.read_csv(
        io.BytesIO(
            s3.client()
            .get_object(Bucket=BUCKET, Key=f"{prefix}quarantine/date=2013-06-06/2013-06-06.csv")[
                "Body"
            ]
            .read()
        )
    )
    reasons = dict(zip(q["_row"].to_pylist(), q["_reason"].to_pylist(), strict=True))
    assert set(reasons) == {11, 21, 31, 41}
    assert "not the file's day" in reasons[11]
    assert "failure" in reasons[21]
    assert "duplicate" in reasons[31]
    assert "fields" in reasons[41]

    con = lake.connect(prefix)
    sql = "SELECT CAST(date AS VARCHAR), count(*) FROM lake GROUP BY 1"
    got = dict(con.execute(sql).fetchall())
    assert got == {"2013-06-05": 300, "2013-06-06": 396}

    # re-running on the same bad input writes nothing new (no new object versions)
    before = {(v["Key"], v["VersionId"]) for v in versions(prefix)}
    lake.process(folder, prefix=prefix)
    assert {(v["Key"], v["VersionId"]) for v in versions(prefix)} == before


def test_zip_source_and_truncated_zip(scratch, tmp_path):
    prefix = scratch
    days = sorted(DATA.glob("*.csv"))[:2]
    z = tmp_path / "data_Q2_2013.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in days:
            zf.write(p, f"data_Q2_2013/{p.name}")
    summary = lake.process(z, prefix=prefix, chunk_size=5 * ingest.MIB)
    assert summary.collected.count("new") == 2 and not summary.errors
    expected = sum(p.read_bytes().count(b"\n") - 1 for p in days)
    assert sum(d.entry["rows"] for d in summary.days) == expected

    broken = tmp_path / "broken.zip"
    broken.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    with pytest.raises(CorruptZipError, match=r"broken\.zip"):
        lake.process(broken, prefix=prefix)
    rec = json.loads(
        s3.client()
        .get_object(Bucket=BUCKET, Key=f"{prefix}quarantine/_files/broken.zip.json")["Body"]
        .read()
    )
    assert rec["kind"] == "corrupt_zip"


def test_replaced_bytes_keep_old_version(scratch, tmp_path):
    prefix = scratch
    src = sorted(DATA.glob("*.csv"))[0]
    one = tmp_path / src.name
    one.write_bytes(src.read_bytes())
    first = lake.process(one, prefix=prefix)
    assert first.collected.days[0].status == "new"
    old_sha = first.collected.days[0].sha256
    lines = src.read_bytes().split(b"\n")
    one.write_bytes(b"\n".join(lines[:-101]) + b"\n")  # drop the last 100 rows
    second = lake.process(one, prefix=prefix)
    res = second.collected.days[0]
    assert res.status == "replaced" and res.previous_sha256 == old_sha
    key = layout.raw(date.fromisoformat(src.stem), prefix)
    vs = [v for v in versions(key) if v["Key"] == key]
    assert len(vs) == 2
    old = next(v for v in vs if not v["IsLatest"])
    meta = s3.client().head_object(Bucket=BUCKET, Key=key, VersionId=old["VersionId"])
    assert meta["Metadata"]["sha256"] == old_sha
    entry = lake.read_manifest(prefix)["days"][src.stem]
    assert entry["sha256"] == res.sha256
    assert entry["rows"] == first.days[0].entry["rows"] - 100


def test_corrupt_zip_member_is_reported_and_other_days_land(scratch, tmp_path):
    prefix = scratch
    days = sorted(DATA.glob("*.csv"))[:2]
    z = tmp_path / "q.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in days:
            zf.write(p, p.name)
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo(days[0].name)
    raw = bytearray(z.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    mid = start + info.compress_size // 2
    raw[mid : mid + 64] = bytes(64)  # damage the first member's compressed data
    z.write_bytes(bytes(raw))
    summary = lake.process(z, prefix=prefix)
    assert [e.file for e in summary.errors] == [days[0].name]
    assert "q.zip!" in str(summary.errors[0])
    assert [d.day.isoformat() for d in summary.collected.days] == [days[1].stem]
    assert s3.head(layout.raw(date.fromisoformat(days[0].stem), prefix)) is None
    assert s3.head(f"{prefix}quarantine/_files/{days[0].name}.json") is not None


def test_cli_collect(scratch, tmp_path):
    from typer.testing import CliRunner

    from diskrisk.cli_data import app

    src = sorted(DATA.glob("*.csv"))[0]
    res = CliRunner().invoke(app, ["collect", str(src), "--prefix", scratch, "--chunk-mb", "5"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{") :])
    assert out["raw"] == {src.stem: "new"} and out["lake"] == {src.stem: "written"}
    assert (
        lake.read_manifest(scratch)["days"][src.stem]["rows"] == src.read_bytes().count(b"\n") - 1
    )


def test_zip_over_http(scratch, tmp_path):
    import functools
    import http.server
    import threading

    days = sorted(DATA.glob("*.csv"))[2:3]
    z = tmp_path / "data_Q2_2013.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in days:
            zf.write(p, f"data_Q2_2013/{p.name}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{z.name}"
        summary = lake.process(url, prefix=scratch)
    finally:
        server.shutdown()
    assert [d.status for d in summary.days] == ["written"]
    assert summary.days[0].entry["rows"] == days[0].read_bytes().count(b"\n") - 1


def test_one_pass_upload_is_verified_by_the_store_against_its_sha256(scratch):
    """The raw day's sha256 (metadata, manifest) is also the object's checksum, which the
    store checked on the PUT; a body that does not match its digest is refused, not stored."""
    from botocore.exceptions import ClientError

    src = sorted(DATA.glob("*.csv"))[0]
    lake.process(src, prefix=scratch)
    day = date.fromisoformat(src.stem)
    head = s3.client().head_object(
        Bucket=BUCKET, Key=layout.raw(day, scratch), ChecksumMode="ENABLED"
    )
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert head["Metadata"]["sha256"] == sha
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == sha
    key = f"{scratch}tampered.csv"
    with pytest.raises(ClientError):
        s3.put(key, b"a,b\n1,2\n", hashlib.sha256(b"a,b\n1,3\n").hexdigest(), "text/csv")
    assert s3.head(key) is None


def test_large_day_is_uploaded_in_multipart_chunks(scratch, tmp_path):
    from diskrisk import synth

    (path,) = synth.write_days(tmp_path, "modern", 12_000, 1, date(2024, 5, 1), seed=9)
    size = path.stat().st_size
    chunk = 5 * ingest.MIB
    assert size > chunk
    summary = ingest.collect(path, prefix=scratch, chunk_size=chunk)
    assert summary.days[0].status == "new"
    head = s3.head(layout.raw(date(2024, 5, 1), scratch))
    parts = -(-size // chunk)
    assert head["ETag"].strip('"').endswith(f"-{parts}")  # S3 multipart ETag
    assert head["ContentLength"] == size
    assert head["Metadata"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_and_dag_tasks_use_the_lake_prefix_of_the_env_file(scratch, monkeypatch, tmp_path):
    """DISKRISK_LAKE_PREFIX given only in `.env`: `diskrisk collect` writes where the DAG's
    tasks read, `diskrisk stats` reads what the DAG's tasks wrote, and an explicit --prefix
    still wins."""
    from typer.testing import CliRunner

    from diskrisk import config, pipeline
    from diskrisk.cli import app
    from diskrisk.cli_data import _prefix

    env_file = tmp_path / "prefixed.env"
    base = Path(os.environ["DISKRISK_ENV_FILE"]).read_text()
    env_file.write_text(f"{base}\nDISKRISK_LAKE_PREFIX={scratch}\n")
    monkeypatch.setenv("DISKRISK_ENV_FILE", str(env_file))
    monkeypatch.delenv("DISKRISK_LAKE_PREFIX", raising=False)
    config.cached.cache_clear()
    days = sorted(DATA.glob("*.csv"))[:3]
    first_two = tmp_path / "first-two"
    first_two.mkdir()
    for path in days[:2]:
        (first_two / path.name).symlink_to(path)
    cli = CliRunner()
    assert _prefix(None) == scratch  # else the collect below would write outside the scratch
    res = cli.invoke(app, ["collect", str(first_two), "--chunk-mb", "5"])
    assert res.exit_code == 0, res.output
    assert set(lake.read_manifest(scratch)["days"]) == {p.stem for p in days[:2]}
    assert pipeline.lake_days() == [p.stem for p in days[:2]]  # what window/build_lake read

    third = days[2].stem
    built = pipeline.build_lake(pipeline.collect(str(DATA), third, third))
    assert built["changed"] == [third] and built["lake_days"] == 3
    res = cli.invoke(app, ["stats", "--out", str(tmp_path / "stats")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "stats" / "stats.json").read_text())["days"] == 3
    assert s3.head(f"{scratch}reports/stats/stats.json") is not None

    explicit = f"{scratch}explicit/"
    res = cli.invoke(app, ["collect", str(days[0]), "--prefix", explicit, "--chunk-mb", "5"])
    assert res.exit_code == 0, res.output
    assert set(lake.read_manifest(explicit)["days"]) == {days[0].stem}
    assert pipeline.lake_days() == [p.stem for p in days]
