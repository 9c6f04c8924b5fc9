"""The lake: validated days as zstd Parquet, one partition per day, plus a manifest.

Layout (keys from :mod:`diskrisk.layout`; see docs/contracts.md)::

    lake/date=YYYY-MM-DD/part-0.parquet   validated rows, diskrisk.schema types
    lake/_manifest.json                   {"days": {day: {rows, sha256, parquet_sha256,
                                                          failures, quarantined}}}
    lake/_stats/{drives,days}.parquet     the stats stage's aggregates (diskrisk.stats)
    quarantine/date=YYYY-MM-DD/<file>.csv bad rows (+ _row, _reason)
    quarantine/_files/<file>.json         whole-file problems

Why it is idempotent: a day is re-validated only when its raw sha256 differs from the manifest
(or it is missing there), and an object is written only when its bytes differ from what is
stored (the Parquet object carries its own sha256 in metadata). Re-running on the same input
therefore creates no new object versions. The manifest assumes one writer at a time.
Validation works on one day at a time in memory (a modern 300k-drive day is ~200 MB of CSV);
collecting (:mod:`diskrisk.ingest`) streams and never holds more than a chunk.

Reading: :func:`connect` returns a duckdb connection with a ``lake`` view. On S3 it uses
duckdb's httpfs (``read_parquet('s3://…/lake/date=*/*.parquet', hive_partitioning=true,
union_by_name=true)``) when that extension can be loaded, and otherwise registers a
``pyarrow.dataset`` over :func:`diskrisk.s3.arrow_fs` (duckdb streams it with projection and
filter push-down, so nothing is materialised in pandas). ``root=`` points at a local lake
directory instead (tests, offline work). ``columns=`` reads local copies of just those columns
of each landed day instead (:func:`mirror`): what the survival queries use, since they read the
same days once per landmark.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from diskrisk import layout, s3, schema
from diskrisk.ingest import (
    DEFAULT_CHUNK,
    CollectSummary,
    DayResult,
    RawUpload,
    collect,
    record_file_error,
)
from diskrisk.validate import DataError, Validated, rejected_csv, validate_bytes

log = logging.getLogger(__name__)


# --- manifest -----------------------------------------------------------------------------


def read_manifest(prefix: str = "") -> dict[str, Any]:
    """The lake manifest, or an empty one."""
    return s3.get_json(layout.manifest(prefix)) or {"days": {}}


def write_manifest(manifest: dict[str, Any], prefix: str = "") -> bool:
    """Store the manifest when it changed (days sorted); True when written."""
    manifest = {"days": dict(sorted(manifest["days"].items()))}
    if read_manifest(prefix) == manifest:
        return False
    return s3.put_json(layout.manifest(prefix), manifest)


# --- writing ------------------------------------------------------------------------------


def parquet_bytes(table: pa.Table) -> bytes:
    """zstd Parquet of one day (deterministic for the same table)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=128 * 1024)
    return buf.getvalue()


def write_day(
    v: Validated, raw_sha256: str, *, prefix: str = "", parquet: bytes | None = None
) -> dict[str, Any]:
    """Write a validated day (Parquet, encoded already when given, + quarantine) and return
    its manifest entry."""
    psha, _ = s3.put_if_changed(
        layout.lake_day(v.day, prefix),
        parquet if parquet is not None else parquet_bytes(v.table),
        "application/vnd.apache.parquet",
    )
    qkey = layout.quarantine(v.day, v.source, prefix)
    if v.rejected is not None:
        s3.put_if_changed(qkey, rejected_csv(v.rejected), "text/csv")
    else:
        s3.delete_if_exists(qkey)
    return {
        "rows": v.table.num_rows,
        "sha256": raw_sha256,
        "parquet_sha256": psha,
        "failures": v.failures,
        "quarantined": v.n_rejected,
    }


@dataclass(frozen=True)
class DayOutcome:
    day: date
    status: str  # written | unchanged | rejected
    entry: dict[str, Any] | None = None
    error: DataError | None = None
    warnings: tuple[str, ...] = ()


def latest_day() -> date:
    """The newest day a source can hold: today (UTC) plus DISKRISK_FUTURE_DAYS_TOLERANCE."""
    from datetime import UTC, datetime, timedelta

    from diskrisk.config import PipelineSettings, load

    tolerance = load(PipelineSettings).future_days_tolerance
    return datetime.now(UTC).date() + timedelta(days=tolerance)


def ingest_day(
    day: date,
    manifest: dict[str, Any],
    *,
    prefix: str = "",
    force: bool = False,
    latest: date | None = None,
) -> DayOutcome:
    """raw/ → validate → lake for one day, updating ``manifest`` in place."""
    obj = s3.client().get_object(Bucket=s3.bucket(), Key=layout.raw(day, prefix))
    sha = obj.get("Metadata", {}).get("sha256")
    entry = manifest["days"].get(day.isoformat())
    if not force and entry and entry.get("sha256") == sha and sha:
        obj["Body"].close()
        return DayOutcome(day, "unchanged", entry)
    data = obj["Body"].read()
    sha = sha or hashlib.sha256(data).hexdigest()
    checked = check(data, day, latest)
    del data
    return land(checked, day, sha, manifest, prefix=prefix)


@dataclass(frozen=True)
class Checked:
    """A day validated and encoded, not yet stored (or the reason it cannot be)."""

    validated: Validated | None
    parquet: bytes | None = None
    error: DataError | None = None


def check(
    data: bytes, day: date, latest: date | None, then: Callable[[], Any] | None = None
) -> Checked:
    """Validate a day's CSV bytes and encode its Parquet: the CPU half of landing a day.
    ``then`` is called between the two (the raw upload starts there: see :func:`process`)."""
    try:
        v = validate_bytes(data, f"{day.isoformat()}.csv", day, latest_day=latest)
    except DataError as err:
        return Checked(None, error=err)
    finally:
        if then is not None:
            then()
    return Checked(v, parquet_bytes(v.table))


def land(
    checked: Checked, day: date, raw_sha256: str, manifest: dict[str, Any], *, prefix: str = ""
) -> DayOutcome:
    """Store a checked day in the lake (or record why not), updating ``manifest`` in place."""
    v = checked.validated
    if v is None:
        err = checked.error
        assert err is not None
        record_file_error(err, prefix)
        s3.delete_if_exists(layout.lake_day(day, prefix))  # the lake mirrors raw: no stale day
        manifest["days"].pop(day.isoformat(), None)
        return DayOutcome(day, "rejected", None, err)
    for w in v.warnings:
        log.warning(w)
    entry = write_day(v, raw_sha256, prefix=prefix, parquet=checked.parquet)
    manifest["days"][day.isoformat()] = entry
    return DayOutcome(day, "written", entry, None, v.warnings)


@dataclass
class ProcessSummary:
    collected: CollectSummary
    days: list[DayOutcome] = field(default_factory=list)

    @property
    def errors(self) -> list[DataError]:
        return self.collected.errors + [d.error for d in self.days if d.error is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "raw": self.collected.as_dict()["days"],
            "lake": {d.day.isoformat(): d.status for d in self.days},
            "errors": [e.record() for e in self.errors],
            "warnings": [w for d in self.days for w in d.warnings],
        }


def process(
    source: str | Path,
    *,
    prefix: str = "",
    chunk_size: int = DEFAULT_CHUNK,
    force: bool = False,
    on_step: Callable[[str, Any], None] | None = None,
) -> ProcessSummary:
    """Collect → validate → lake for every day of a source; one bad day never stops the rest.

    One pass over each day's bytes: they are read once, validated, and encoded while the raw
    upload of the same bytes runs (:func:`diskrisk.ingest.collect` ``overlap``). A day new to
    the manifest is validated at once; the upload hashes it meanwhile. A day the manifest
    knows is hashed first, and skipped when its bytes are the landed ones. A day reaches the
    lake only after its raw upload succeeded, so raw/ stays the system of record.
    """
    manifest = read_manifest(prefix)
    latest = latest_day()
    checked: dict[date, Checked] = {}
    summary = ProcessSummary(CollectSummary())

    def validate_while_uploading(data: bytes, upload: RawUpload) -> None:
        day = upload.day.day
        entry = manifest["days"].get(day.isoformat())
        if force or not entry or entry.get("sha256") != upload.digest()[0]:
            checked[day] = check(data, day, latest, then=upload.start)

    def land_uploaded(r: DayResult | DataError) -> None:
        if on_step:
            on_step("collect", r)
        if isinstance(r, DataError):
            return
        c = checked.pop(r.day, None)  # held one day at a time
        if c is None:  # raw and lake already hold these bytes
            out = DayOutcome(r.day, "unchanged", manifest["days"].get(r.day.isoformat()))
        else:
            out = land(c, r.day, r.sha256, manifest, prefix=prefix)
        summary.days.append(out)
        if on_step:
            on_step("lake", out)

    try:
        summary.collected = collect(
            source,
            prefix=prefix,
            chunk_size=chunk_size,
            on_day=land_uploaded,
            latest=latest,
            overlap=validate_while_uploading,
        )
    finally:
        write_manifest(manifest, prefix)  # what landed before a failure stays recorded
    summary.days.sort(key=lambda o: o.day)
    return summary


def build(
    days: list[date],
    *,
    prefix: str = "",
    force: bool = False,
    on_day: Callable[[DayOutcome], None] | None = None,
) -> list[DayOutcome]:
    """raw/ → validate → lake for collected days, then one manifest write for all of them."""
    manifest = read_manifest(prefix)
    outcomes = []
    latest = latest_day()
    for day in sorted(days):
        out = ingest_day(day, manifest, prefix=prefix, force=force, latest=latest)
        outcomes.append(out)
        if on_day:
            on_day(out)
    write_manifest(manifest, prefix)
    return outcomes


# --- reading ------------------------------------------------------------------------------


def lake_uri(prefix: str = "") -> str:
    return s3.uri(layout.lake_root(prefix))


def lake_paths(prefix: str = "") -> list[str]:
    """``bucket/…/part-0.parquet`` paths of every day partition (arrow_fs style)."""
    paginator = s3.client().get_paginator("list_objects_v2")
    out = []
    for page in paginator.paginate(Bucket=s3.bucket(), Prefix=layout.lake_partitions(prefix)):
        keys = [o["Key"] for o in page.get("Contents", [])]
        out += [f"{s3.bucket()}/{k}" for k in keys if k.endswith(".parquet")]
    return sorted(out)


def _partition_files(
    prefix: str = "", root: str | Path | None = None
) -> tuple[list[str], Any, str]:
    """(paths, filesystem, base dir) of every day partition, local or in S3."""
    if root is not None:
        paths = sorted(str(p) for p in Path(root).glob("date=*/*.parquet"))
        fs, base = None, str(root)
    else:
        paths = lake_paths(prefix)
        fs, base = s3.arrow_fs(), f"{s3.bucket()}/{layout.lake_root(prefix)}"
    if not paths:
        raise FileNotFoundError(f"the lake at {root or lake_uri(prefix)} has no partitions")
    return paths, fs, base


def dataset(prefix: str = "", root: str | Path | None = None) -> ds.Dataset:
    """A pyarrow dataset over the lake with the union of all day schemas."""
    part = ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive")
    paths, fs, base = _partition_files(prefix, root)
    with ThreadPoolExecutor(8) as pool:
        schemas = list(pool.map(lambda p: pq.read_schema(p, filesystem=fs), paths))
    unified = schema.unify(schemas)
    return ds.dataset(
        paths,
        schema=unified,
        format="parquet",
        filesystem=fs,
        partitioning=part,
        partition_base_dir=base,
    )


def null_counts(
    prefix: str = "", root: str | Path | None = None
) -> tuple[int, dict[str, int | None]]:
    """(rows, null cells per column) of the whole lake from the Parquet footers alone: every
    row group's statistics carry its null count, so no data page is read (the stats stage's
    null rates cost a footer per day instead of a scan of every column). A column a day's
    file lacks (the schema grew later) is null on all of that day's rows; a column whose
    count some file did not record is None (count it by scanning)."""
    paths, fs, _ = _partition_files(prefix, root)
    with ThreadPoolExecutor(8) as pool:
        metas = list(pool.map(lambda p: pq.read_metadata(p, filesystem=fs), paths))
    files = [_null_counts(m) for m in metas]
    nulls: dict[str, int | None] = {}
    for name in dict.fromkeys(n for counts in files for n in counts):  # in schema order
        total: int | None = 0
        for m, counts in zip(metas, files, strict=True):
            n = counts.get(name, m.num_rows)  # a column this day's file lacks
            total = None if n is None or total is None else total + n
        nulls[name] = total
    return sum(m.num_rows for m in metas), nulls


def _null_counts(meta: pq.FileMetaData) -> dict[str, int | None]:
    counts: dict[str, int | None] = {}
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        for j in range(rg.num_columns):
            col = rg.column(j)
            st = col.statistics
            n = st.null_count if st is not None and st.has_null_count else None
            before = counts.get(col.path_in_schema, 0)
            counts[col.path_in_schema] = None if n is None or before is None else before + n
    return counts


_HTTPFS: bool | None = None  # cached per process: INSTALL may need the network


def _httpfs(con: duckdb.DuckDBPyConnection) -> bool:
    """Load duckdb's httpfs extension if this duckdb build has (or can fetch) it."""
    global _HTTPFS
    if _HTTPFS is False:
        return False
    for stmt in ("LOAD httpfs", "INSTALL httpfs"):
        try:
            con.execute(stmt)
            if stmt.startswith("INSTALL"):
                con.execute("LOAD httpfs")
            _HTTPFS = True
            return True
        except duckdb.Error:
            continue
    _HTTPFS = False
    return False


def bounded_duckdb() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB held to ``DISKRISK_DUCKDB_MEMORY_LIMIT`` that spills to
    ``DISKRISK_DUCKDB_TEMP_DIR`` (default: the system's temporary directory): a year of a big
    fleet then runs out of core instead of out of memory (DuckDB's own default is 80 % of RAM,
    which a worker shares with pandas and the models)."""
    from diskrisk.config import PipelineSettings, load

    cfg = load(PipelineSettings)
    spill = cfg.duckdb_temp_dir or str(Path(tempfile.gettempdir()) / "diskrisk-duckdb")
    con = duckdb.connect(
        config={
            "memory_limit": cfg.duckdb_memory_limit,
            "temp_directory": spill,
            "preserve_insertion_order": False,  # lets big aggregations stream and spill
        }
    )
    con.execute("SET enable_progress_bar = false")
    return con


MIRROR_KEEP_DAYS = 7  # a local copy no lake of this worker has used for that long is removed


def mirror(
    prefix: str, columns: Sequence[str], since: date | None = None, until: date | None = None
) -> list[Path]:
    """Local copies of the landed days from ``since`` to ``until`` (default: all) holding only
    ``columns`` (those the day has), one file per day named by its Parquet digest, under
    ``DISKRISK_LAKE_CACHE_DIR``.

    Why: the dataset stage reads the same days once per landmark (each up to 90 days back and
    ahead), which over S3 fetched the same bytes again for each (3.7 GB from S3 for a 90-day
    lake of 300k drives, against 0.5 GB once and nothing on the next run). A day is fetched
    once per worker and digest (a re-landed day has a new digest, so a stale copy is
    never read), so a daily run fetches one day. S3 stays the system of record: the cache can
    be deleted at any time."""
    from diskrisk.config import PipelineSettings, load

    lo, hi = str(since or date.min), str(until or date.max)
    days = {d: v for d, v in read_manifest(prefix).get("days", {}).items() if lo <= d <= hi}
    if not days:
        window = "" if since is until is None else f" from {since or '…'} to {until or '…'}"
        raise FileNotFoundError(f"the lake at {lake_uri(prefix)} has no landed day{window}")
    wanted = sorted(set(columns))
    root = Path(
        load(PipelineSettings).lake_cache_dir or Path(tempfile.gettempdir()) / "diskrisk-lake"
    )
    folder = root / hashlib.sha256("\0".join(wanted).encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    fs = s3.arrow_fs()

    def local(day: str) -> Path:
        digest = days[day].get("parquet_sha256") or ""
        path = folder / f"{day}-{digest[:16] or 'undigested'}.parquet"
        if digest and path.exists():
            os.utime(path)  # in use: not pruned
            return path
        key = f"{s3.bucket()}/{layout.lake_day(date.fromisoformat(day), prefix)}"
        with fs.open_input_file(key) as fh:
            pf = pq.ParquetFile(fh)
            table = pf.read(columns=[c for c in pf.schema_arrow.names if c in wanted])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        pq.write_table(table, tmp, compression="zstd", row_group_size=128 * 1024)
        os.replace(tmp, path)  # whole or absent: concurrent tasks may share the folder
        return path

    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(local, sorted(days)))
    stale = time.time() - MIRROR_KEEP_DAYS * 86400
    for old in set(folder.iterdir()) - set(paths):  # and a crashed task's partial copy
        if old.stat().st_mtime < stale:
            old.unlink(missing_ok=True)
    return paths


def connect(
    prefix: str = "",
    root: str | Path | None = None,
    *,
    use_httpfs: bool | None = None,
    columns: Sequence[str] | None = None,
    since: date | None = None,
    until: date | None = None,
) -> duckdb.DuckDBPyConnection:
    """A duckdb connection with a ``lake`` view over all day partitions; with ``columns``
    (an S3 lake), over local copies of those columns of the days from ``since`` to ``until``
    (:func:`mirror`)."""
    con = bounded_duckdb()

    def view(files: str, hive: bool = True) -> duckdb.DuckDBPyConnection:
        con.execute(
            f"CREATE VIEW lake AS SELECT * FROM read_parquet({files}, "
            f"hive_partitioning={str(hive).lower()}, union_by_name=true)"
        )
        return con

    if root is not None:
        return view(f"'{Path(root).as_posix()}/date=*/*.parquet'")
    if columns is not None:  # the files hold their date column; their names are digests
        files = ", ".join(f"'{p.as_posix()}'" for p in mirror(prefix, columns, since, until))
        return view(f"[{files}]", hive=False)
    if use_httpfs is not False and _httpfs(con):
        con.execute(s3.duckdb_secret_sql())
        return view(f"'{lake_uri(prefix)}/date=*/*.parquet'")
    con.register("lake", dataset(prefix))
    return con


def lake_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Column names of the ``lake`` view."""
    return [r[0] for r in con.execute("DESCRIBE SELECT * FROM lake").fetchall()]


def write_local(v: Validated, root: str | Path) -> Path:
    """Write a validated day under a local lake directory (tests, offline work)."""
    path = Path(root) / f"date={v.day.isoformat()}" / "part-0.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(parquet_bytes(v.table))
    return path
