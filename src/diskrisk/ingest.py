"""Collect Backblaze days into ``raw/YYYY/YYYY-MM-DD.csv``, byte for byte.

Why: raw/ is the system of record. Everything downstream (validation, the lake) can be rebuilt
from it, so it keeps the *original* bytes of each day with their sha256 in the object metadata.

* Sources: a folder of daily CSVs, one CSV, or a quarterly zip (local path or http(s) URL; a URL
  is streamed to a temporary file first). Zip members are read as streams.
* ``collect`` alone holds no day whole: each day is read twice as a stream (once to hash and
  count rows, once to upload in multipart chunks of ``chunk_size`` bytes), since S3 metadata
  (the digest) is fixed when the upload is created. ``lake.process`` reads each day once
  instead (``overlap``): the day's bytes are hashed in memory and uploaded from there, in one
  PUT whose checksum is that sha256 (the store verifies it; botocore hashes nothing more),
  while the lake encodes the same bytes (:class:`RawUpload`).
* Same bytes again → no-op (sha256 compared with the object's metadata via HEAD). Different
  bytes → overwrite; the bucket is versioned so the old bytes stay retrievable, and a warning
  names the day and both digests.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

from boto3.s3.transfer import TransferConfig

from diskrisk import layout, s3
from diskrisk.validate import (
    CorruptZipError,
    DataError,
    DuplicateDayError,
    day_from_name,
    refuse_future,
)

log = logging.getLogger(__name__)

MIB = 1 << 20
_DAY_NAME = re.compile(r"\d{4}-\d{2}-\d{2}\.csv$")
DEFAULT_CHUNK = 16 * MIB
_MIN_PART = 5 * MIB  # S3's smallest multipart part


@dataclass(frozen=True)
class DayFile:
    """One day inside a source; ``open()`` returns a fresh binary stream each time."""

    day: date
    name: str  # file name, e.g. 2013-04-10.csv
    source: str  # where it came from (path, zip!member, URL)
    open: Callable[[], contextlib.AbstractContextManager[IO[bytes]]]


@dataclass(frozen=True)
class DayResult:
    day: date
    name: str
    status: str  # new | unchanged | replaced
    sha256: str
    rows: int
    key: str
    previous_sha256: str | None = None


@dataclass
class CollectSummary:
    days: list[DayResult] = field(default_factory=list)
    errors: list[DataError] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(d.status == status for d in self.days)

    def as_dict(self) -> dict[str, Any]:
        return {
            "days": {d.day.isoformat(): d.status for d in self.days},
            "errors": [e.record() for e in self.errors],
        }


def record_file_error(err: DataError, prefix: str = "") -> str:
    """Write ``quarantine/_files/<file>.json`` for a whole-file problem; returns the key."""
    key = layout.file_record(err.file, prefix)
    s3.put_json(key, err.record())
    return key


# --- sources ------------------------------------------------------------------------------


@contextlib.contextmanager
def _local_or_download(source: str) -> Iterator[Path]:
    """A local path for the source; http(s) URLs are streamed to a temporary file."""
    if source.startswith(("http://", "https://")):
        name = Path(source.split("?", 1)[0]).name or "download"
        with tempfile.TemporaryDirectory(prefix="diskrisk-") as tmp:
            path = Path(tmp) / name
            download(source, path)
            yield path
    else:
        yield Path(source)


class SourceError(DataError):
    """A URL source that cannot be fetched (not found, refused, empty, stalled, truncated)."""

    kind = "source"


def download(url: str, dest: Path) -> Path:
    """``url`` to ``dest``, whole or not at all: into ``dest.part`` (renamed when complete and
    as long as the server said), with connect/read timeouts (``DISKRISK_DOWNLOAD_TIMEOUT_S``) and
    ``DISKRISK_DOWNLOAD_ATTEMPTS`` tries with growing pauses on transient failures. 401/403/404
    and an empty body fail at once: trying again would not help."""
    import http.client
    import time

    from diskrisk.config import PipelineSettings, load

    cfg = load(PipelineSettings)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, cfg.download_attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=cfg.download_timeout_s) as resp:
                expected = int(resp.headers.get("Content-Length") or -1)
                with part.open("wb") as out:
                    shutil.copyfileobj(resp, out, length=MIB)
            size = part.stat().st_size
            if size == 0:
                part.unlink()
                raise SourceError(f"{url}: the server sent an empty file", file=dest.name)
            if expected >= 0 and size != expected:
                raise OSError(f"truncated: {size} of {expected} bytes")
            part.replace(dest)
            return dest
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise SourceError(f"{url}: HTTP {exc.code} {exc.reason}", file=dest.name) from None
            why = f"HTTP {exc.code}"
        except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors
            why = f"{type(exc).__name__}: {exc}"
        part.unlink(missing_ok=True)
        if attempt == cfg.download_attempts:
            raise SourceError(
                f"{url}: download failed after {attempt} attempt(s) ({why})", file=dest.name
            )
        log.warning("%s: %s; trying again (attempt %d)", url, why, attempt + 1)
        time.sleep(min(2.0**attempt, 30.0))
    raise AssertionError("unreachable")


def _file_day(path: Path, source: str) -> DayFile:
    return DayFile(day_from_name(path.name), path.name, source, lambda: path.open("rb"))


def _zip_days(path: Path) -> list[DayFile]:
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
        zf.close()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CorruptZipError(f"{path.name}: not a readable zip ({exc})", file=path.name) from None
    out = []
    for info in infos:
        base = Path(info.filename).name
        if info.is_dir() or info.filename.startswith("__MACOSX") or not base.endswith(".csv"):
            continue
        if not _DAY_NAME.search(base):  # e.g. a README.csv beside the days: not a day
            log.warning("%s!%s: not a day file (YYYY-MM-DD.csv), skipped", path.name, base)
            continue

        def opener(info: zipfile.ZipInfo = info) -> contextlib.AbstractContextManager[IO[bytes]]:
            @contextlib.contextmanager
            def cm() -> Iterator[IO[bytes]]:
                with zipfile.ZipFile(path) as z, z.open(info) as member:
                    yield member

            return cm()

        out.append(DayFile(day_from_name(base), base, f"{path.name}!{info.filename}", opener))
    return sorted(out, key=lambda d: d.day)


@contextlib.contextmanager
def days_of(source: str | Path) -> Iterator[list[DayFile]]:
    """The days a source holds, sorted; temporary downloads live as long as the context."""
    with _local_or_download(str(source)) as path:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix == ".csv" and p.is_file())
            for p in files:
                if not _DAY_NAME.search(p.name):
                    log.warning("%s: not a day file (YYYY-MM-DD.csv), skipped", p)
            files = [p for p in files if _DAY_NAME.search(p.name)]
            yield sorted((_file_day(p, str(p)) for p in files), key=lambda d: d.day)
        elif path.suffix.lower() == ".zip":
            yield _zip_days(path)
        elif path.is_file():
            yield [_file_day(path, str(path))]
        else:
            raise FileNotFoundError(f"{source}: no such file, folder or zip")


# --- upload -------------------------------------------------------------------------------


def digest(day: DayFile, chunk_size: int = DEFAULT_CHUNK) -> tuple[str, int, int]:
    """sha256, data rows (lines after the header) and size of a day, streamed."""
    h = hashlib.sha256()
    lines = size = 0
    last = b"\n"
    try:
        with day.open() as f:
            while chunk := f.read(chunk_size):
                h.update(chunk)
                lines += chunk.count(b"\n")
                size += len(chunk)
                last = chunk[-1:]
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise CorruptZipError(
            f"{day.source}: zip member cannot be read ({exc})", file=day.name
        ) from None
    return h.hexdigest(), _data_rows(lines, size, last), size


def read_day(day: DayFile) -> bytes:
    """A day's bytes, whole: for the single-pass path (:func:`collect` with ``overlap``)."""
    try:
        with day.open() as f:
            return f.read()
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise CorruptZipError(
            f"{day.source}: zip member cannot be read ({exc})", file=day.name
        ) from None


def digest_bytes(data: bytes) -> tuple[str, int, int]:
    """:func:`digest` of bytes already in memory (hashlib releases the GIL on big buffers)."""
    rows = _data_rows(data.count(b"\n"), len(data), data[-1:])
    return hashlib.sha256(data).hexdigest(), rows, len(data)


def _data_rows(newlines: int, size: int, last: bytes) -> int:
    """Lines after the header; a last line without its newline counts."""
    lines = newlines + (1 if size and last != b"\n" else 0)
    return max(lines - 1, 0)


def upload_day(
    day: DayFile,
    *,
    prefix: str = "",
    chunk_size: int = DEFAULT_CHUNK,
    data: bytes | None = None,
    sha_rows: tuple[str, int] | None = None,
) -> DayResult:
    """Store one day's bytes under raw/ unless identical bytes are already there. With ``data``
    (and its ``sha_rows``) the bytes come from memory instead of a second read of the source."""
    if chunk_size < _MIN_PART:
        raise ValueError(f"chunk_size must be at least {_MIN_PART} bytes (S3 part minimum)")
    if sha_rows is None:
        sha, rows, _size = digest_bytes(data) if data is not None else digest(day, chunk_size)
    else:
        sha, rows = sha_rows
    key = layout.raw(day.day, prefix)
    head = s3.head(key)
    old = (head or {}).get("Metadata", {}).get("sha256")
    if old == sha:
        return DayResult(day.day, day.name, "unchanged", sha, rows, key)
    status = "new" if head is None else "replaced"
    if status == "replaced":
        log.warning(
            "raw day %s replaced: old sha256 %s, new sha256 %s (previous version kept)",
            day.day,
            old,
            sha,
        )
    meta = {"source": day.source[-1000:], "rows": str(rows)}
    if data is not None:  # one PUT, checked by the store against the sha256 it keeps
        s3.put(key, data, sha, "text/csv", meta)
    else:
        cfg = TransferConfig(
            multipart_threshold=chunk_size, multipart_chunksize=chunk_size, max_concurrency=2
        )
        with day.open() as f:
            s3.client().upload_fileobj(
                f,
                s3.bucket(),
                key,
                ExtraArgs={"Metadata": {"sha256": sha, **meta}, "ContentType": "text/csv"},
                Config=cfg,
            )
    return DayResult(day.day, day.name, status, sha, rows, key, old)


class RawUpload:
    """The raw upload of one day's bytes held in memory, started when its caller chooses (or
    when :func:`collect` needs its result), in a worker thread that hashes the bytes first.

    Why a handle: the lake validates a new day without waiting for its digest, and starts the
    upload once the parse is done, so that the store's work (its own hashing and writing)
    shares the cores with the single-threaded Parquet encode instead of with the parse."""

    def __init__(
        self, pool: ThreadPoolExecutor, day: DayFile, data: bytes, prefix: str, chunk_size: int
    ):
        self._pool, self.day, self._data = pool, day, data
        self._prefix, self._chunk_size = prefix, chunk_size
        self._digest: tuple[str, int] | None = None
        self._future: Future[DayResult] | None = None

    def digest(self) -> tuple[str, int]:
        """(sha256, data rows) of the bytes, computed once."""
        if self._digest is None:
            sha, rows, _ = digest_bytes(self._data)
            self._digest = sha, rows
        return self._digest

    def start(self) -> Future[DayResult]:
        if self._future is None:
            self._future = self._pool.submit(self._upload)
        return self._future

    def _upload(self) -> DayResult:
        return upload_day(
            self.day,
            prefix=self._prefix,
            chunk_size=self._chunk_size,
            data=self._data,
            sha_rows=self.digest(),
        )


def collect(
    source: str | Path,
    *,
    prefix: str = "",
    chunk_size: int = DEFAULT_CHUNK,
    on_day: Callable[[DayResult | DataError], None] | None = None,
    keep: Callable[[date], bool] | None = None,
    latest: date | None = None,
    overlap: Callable[[bytes, RawUpload], None] | None = None,
) -> CollectSummary:
    """Copy every day of ``source`` (those ``keep`` accepts, none after ``latest``) to raw/;
    per-day problems are recorded, not fatal.

    ``overlap(data, upload)``: one pass over each day's bytes. The day is read once into
    memory and ``overlap`` works on it (the lake validates it: :func:`diskrisk.lake.process`),
    starting the raw upload of the same bytes (:class:`RawUpload`) when it likes; it is started
    afterwards if not, and ``on_day`` follows once it is done.
    """
    summary = CollectSummary()
    pool = ThreadPoolExecutor(1, thread_name_prefix="raw-upload") if overlap else None
    try:
        with days_of(source) as days:
            for same_day in _by_day(days):
                if keep is not None and not keep(same_day[0].day):
                    continue
                res: DayResult | DataError
                try:
                    d = _the_one(same_day)
                    refuse_future(d.name, d.day, latest)
                    if pool is None or overlap is None:
                        uploaded = upload_day(d, prefix=prefix, chunk_size=chunk_size)
                    else:
                        data = read_day(d)
                        upload = RawUpload(pool, d, data, prefix, chunk_size)
                        try:
                            overlap(data, upload)
                        finally:  # raw/ stays the system of record, whatever the lake did
                            uploaded = upload.start().result()
                        del data, upload
                    summary.days.append(uploaded)
                    res = uploaded
                except DataError as err:
                    record_file_error(err, prefix)
                    summary.errors.append(err)
                    res = err
                if on_day:
                    on_day(res)
    except DataError as err:  # the whole source (e.g. a corrupt zip)
        record_file_error(err, prefix)
        summary.errors.append(err)
        raise
    finally:
        if pool is not None:
            pool.shutdown()
    return summary


def _by_day(days: list[DayFile]) -> list[list[DayFile]]:
    groups: dict[date, list[DayFile]] = {}
    for d in days:
        groups.setdefault(d.day, []).append(d)
    return list(groups.values())


def _the_one(same_day: list[DayFile]) -> DayFile:
    """A source that holds a day twice (a zip with the day in two folders, say): identical
    bytes are one day; different bytes are refused, since neither can be told to be right."""
    if len(same_day) == 1:
        return same_day[0]
    digests = {d.source: digest(d)[0] for d in same_day}
    first = same_day[0]
    if len(set(digests.values())) == 1:
        log.warning("%s: the same bytes %d times; collected once", first.name, len(same_day))
        return first
    raise DuplicateDayError(
        f"{first.day.isoformat()}: {len(same_day)} different files for this day in one source "
        f"({', '.join(digests)}); none collected",
        file=first.name,
    )
