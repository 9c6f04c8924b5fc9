"""Validate one Backblaze day: split its rows into typed good rows and quarantined bad rows.

Why this shape: a single bad row (a garbled counter, a duplicated serial, a row of another day)
must never cost the day its good rows, while a file that cannot be read at all (empty, only a
header, a required column missing, not UTF-8, a broken zip) must stop loudly with a message that
names the file. So:

* whole-file problems raise a :class:`DataError` (a ``ValueError``) subclass whose message names
  the file, and the line/column where that applies; the caller records them under
  ``quarantine/_files/``;
* row problems never raise: the row goes to :attr:`Validated.rejected` with its original text,
  ``_row`` (1-based line number in the file, the header is line 1) and ``_reason``;
* a UTF-8 byte-order mark is stripped and reported in :attr:`Validated.warnings`.

Parsing uses ``pyarrow.csv`` with the explicit types of :mod:`diskrisk.schema` (fast path, no
Python per row). Only when that typed parse fails, the file is re-read as strings and each
column is checked with vectorised ``pyarrow.compute`` masks to find the offending cells.
Rows with a wrong number of fields are skipped by the parser and quarantined; CSV values with
embedded newlines are not supported (Backblaze never quotes).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from diskrisk import schema

BOM = b"\xef\xbb\xbf"
_DAY_RE = re.compile(r"(\d{4}-\d{2}-\d{2})\.csv$")
_INT_RE = r"^[+-]?[0-9]+$"
_FLOAT_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_TRUE = ["true", "True", "TRUE", "1"]
_FALSE = ["false", "False", "FALSE", "0"]
_BLOCK = 16 << 20


class DataError(ValueError):
    """A file (or zip) that cannot be ingested; the message names the file."""

    kind = "data_error"

    def __init__(
        self, message: str, *, file: str, row: int | None = None, column: str | None = None
    ):
        super().__init__(message)
        self.file = file
        self.row = row
        self.column = column

    def record(self) -> dict[str, object]:
        """JSON-able description for ``quarantine/_files/<file>.json``."""
        return {
            "file": self.file,
            "kind": self.kind,
            "reason": str(self),
            "row": self.row,
            "column": self.column,
        }


class EmptyFileError(DataError):
    kind = "empty_file"


class HeaderOnlyError(DataError):
    kind = "header_only"


class MissingColumnError(DataError):
    kind = "missing_column"


class BadHeaderError(DataError):
    kind = "bad_header"


class EncodingError(DataError):
    kind = "not_utf8"


class CorruptZipError(DataError):
    kind = "corrupt_zip"


class UnknownDayError(DataError):
    kind = "unknown_day"


class FutureDayError(DataError):
    kind = "future_day"


class DuplicateDayError(DataError):
    kind = "duplicate_day"


@dataclass(frozen=True)
class Validated:
    """Outcome of validating one day's file."""

    day: date
    source: str
    table: pa.Table  # good rows, typed per diskrisk.schema
    rejected: pa.Table | None  # original text columns + _row + _reason; None when all good
    rows_in: int  # data rows seen in the file (good + rejected)
    warnings: tuple[str, ...] = field(default=())

    @property
    def failures(self) -> int:
        return int(pc.sum(self.table["failure"]).as_py() or 0)

    @property
    def n_rejected(self) -> int:
        return 0 if self.rejected is None else self.rejected.num_rows


def day_from_name(name: str) -> date:
    """The day a Backblaze file covers, from its ``YYYY-MM-DD.csv`` name."""
    m = _DAY_RE.search(Path(name).name)
    if not m:
        raise UnknownDayError(f"{name}: file name does not carry a day (YYYY-MM-DD.csv)", file=name)
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        raise UnknownDayError(f"{name}: {m.group(1)} is not a valid day", file=name) from None


def validate_file(path: str | Path, day: date | None = None) -> Validated:
    """Validate a local CSV file (reads it whole: one day fits in memory by design)."""
    p = Path(path)
    return validate_bytes(p.read_bytes(), p.name, day)


def refuse_future(name: str, day: date, latest_day: date | None) -> None:
    """:class:`FutureDayError` for a day after ``latest_day`` (today plus a tolerance)."""
    if latest_day is not None and day > latest_day:
        raise FutureDayError(
            f"{name}: day {day.isoformat()} is in the future (latest accepted: "
            f"{latest_day.isoformat()}; DISKRISK_FUTURE_DAYS_TOLERANCE)",
            file=name,
        )


def validate_bytes(
    data: bytes, name: str, day: date | None = None, *, latest_day: date | None = None
) -> Validated:
    """Validate the bytes of one day's CSV named ``name`` (the day defaults to the name's).
    A day after ``latest_day`` (today plus a tolerance, given by the caller) cannot have been
    observed yet: :class:`FutureDayError`."""
    name = Path(name).name
    day = day or day_from_name(name)
    refuse_future(name, day, latest_day)
    warnings: list[str] = []
    if not data or data.isspace():
        raise EmptyFileError(f"{name}: file is empty", file=name)
    if data.startswith(BOM):
        data = data[len(BOM) :]
        warnings.append(f"{name}: UTF-8 byte-order mark stripped")
    if b"\r" in data and b"\n" not in data:  # classic Mac line endings: one "line" otherwise
        data = data.replace(b"\r", b"\n")
        warnings.append(f"{name}: carriage-return line endings read as newlines")
    _check_utf8(data, name)
    columns = _header(data, name)

    skipped: list[str] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        skipped.append(row.text)
        return "skip"

    try:
        table = _read(data, columns, typed=True, on_invalid=on_invalid)
        cell_bad: dict[str, pa.Array] = {}
    except pa.ArrowInvalid:
        skipped.clear()
        try:
            strings = _read(data, columns, typed=False, on_invalid=on_invalid)
        except pa.ArrowInvalid as exc:  # not CSV at all (e.g. an over-long unterminated row)
            raise DataError(f"{name}: cannot be parsed as CSV ({exc})", file=name) from None
        table, cell_bad = _cast_checked(strings, columns)

    if table.num_rows == 0 and not skipped:
        raise HeaderOnlyError(f"{name}: header only, no data rows", file=name)
    reasons = _row_reasons(table, day, cell_bad)
    bad_mask = pc.is_valid(reasons)
    good_idx = np.flatnonzero(~np.asarray(bad_mask.to_numpy(zero_copy_only=False)))
    dup_idx = _duplicates(table["serial_number"].take(pa.array(good_idx)), good_idx)
    if len(dup_idx):
        reasons = _set_reason(reasons, dup_idx, "duplicate serial_number for this date")
        good_idx = np.setdiff1d(good_idx, dup_idx, assume_unique=True)

    n_parsed = table.num_rows
    bad_idx = np.setdiff1d(np.arange(n_parsed), good_idx, assume_unique=True)
    good = table.take(pa.array(good_idx, pa.int64())) if len(bad_idx) else table
    good = good.cast(schema.schema_for(columns))
    rejected = None
    if len(bad_idx) or skipped:
        rejected = _rejected(data, columns, n_parsed, bad_idx, reasons, skipped, name)
    if skipped:
        warnings.append(f"{name}: {len(skipped)} row(s) with a wrong number of fields")
    return Validated(day, name, good, rejected, n_parsed + len(skipped), tuple(warnings))


# --- parsing ------------------------------------------------------------------------------


def _check_utf8(data: bytes, name: str) -> None:
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise EncodingError(
            f"{name}: not valid UTF-8 at line {line} (byte offset {exc.start})", file=name, row=line
        ) from None


def _header(data: bytes, name: str) -> list[str]:
    end = data.find(b"\n")
    first = (data if end < 0 else data[:end]).rstrip(b"\r").decode("utf-8")
    columns = [c.strip().strip('"').strip() for c in first.split(",")]
    if any(not c for c in columns):
        raise BadHeaderError(f"{name}: header has an empty column name", file=name, row=1)
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise BadHeaderError(f"{name}: duplicate column(s) {', '.join(dup)}", file=name, row=1)
    missing = schema.missing_required(columns)
    if missing:
        raise MissingColumnError(
            f"{name}: missing required column(s) {', '.join(missing)}",
            file=name,
            row=1,
            column=",".join(missing),
        )
    return columns


def _read(data: bytes, columns: list[str], *, typed: bool, on_invalid) -> pa.Table:
    types = {c: (schema.type_of(c) if typed else pa.string()) for c in columns}
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(block_size=_BLOCK, column_names=columns, skip_rows=1),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            true_values=_TRUE,
            false_values=_FALSE,
        ),
    )


def _cast_checked(strings: pa.Table, columns: list[str]) -> tuple[pa.Table, dict[str, pa.Array]]:
    """Cast string columns to their types; invalid cells become null and are reported."""
    out, bad = [], {}
    for c in columns:
        col = strings[c].combine_chunks() if strings.num_rows else pa.array([], pa.string())
        target = schema.type_of(c)
        if target == pa.string():
            out.append(col)
            continue
        try:
            out.append(_cast(col, target))
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        ok = _valid_text(col, target)
        invalid = pc.and_(pc.is_valid(col), pc.invert(ok))
        bad[c] = invalid
        out.append(_cast(pc.if_else(invalid, pa.scalar(None, pa.string()), col), target))
    return pa.table(out, names=columns), bad


def _cast(col: pa.Array, target: pa.DataType) -> pa.Array:
    if target == pa.date32():
        return pc.strptime(col, format="%Y-%m-%d", unit="s").cast(pa.date32())
    if target == pa.bool_():
        t, f = pc.is_in(col, pa.array(_TRUE)), pc.is_in(col, pa.array(_FALSE))
        if pc.any(pc.and_(pc.is_valid(col), pc.invert(pc.or_(t, f)))).as_py():
            raise pa.ArrowInvalid("not a boolean")
        return pc.if_else(pc.is_valid(col), t, pa.scalar(None, pa.bool_()))
    return pc.cast(col, target)


def _valid_text(col: pa.Array, target: pa.DataType) -> pa.Array:
    if target == pa.date32():
        return pc.is_valid(pc.strptime(col, format="%Y-%m-%d", unit="s", error_is_null=True))
    if target == pa.bool_():
        return pc.is_in(col, pa.array(_TRUE + _FALSE))
    pattern = _FLOAT_RE if pa.types.is_floating(target) else _INT_RE
    ok = pc.match_substring_regex(col, pattern)
    if pa.types.is_integer(target):  # in range for the integer type
        ints = pc.if_else(ok, col, pa.scalar(None, pa.string()))
        as_f = pc.cast(ints, pa.float64())
        info = np.iinfo(target.to_pandas_dtype())
        lo, hi = pa.scalar(float(info.min)), pa.scalar(float(info.max))
        ok = pc.and_(ok, pc.and_(pc.greater_equal(as_f, lo), pc.less_equal(as_f, hi)))
    return pc.fill_null(ok, False)


# --- row checks ---------------------------------------------------------------------------


def _row_reasons(table: pa.Table, day: date, cell_bad: dict[str, pa.Array]) -> pa.Array:
    """One reason string per row (null = row is fine), all vectorised."""
    checks: list[tuple[pa.Array, str]] = [
        (cell_bad[c], f"{c}: not a valid {schema.type_of(c)}") for c in cell_bad
    ]

    def missing(c: str) -> pa.Array:
        col = table[c]
        empty = pc.equal(pc.utf8_trim_whitespace(col), "") if pa.types.is_string(col.type) else None
        if empty is None:
            return pc.is_null(col)
        return pc.or_(pc.is_null(col), pc.fill_null(empty, True))

    for c in schema.REQUIRED:
        if c not in cell_bad:
            checks.append((missing(c), f"{c}: empty"))
    checks.append(
        (
            pc.fill_null(pc.not_equal(table["date"], pa.scalar(day, pa.date32())), False),
            f"date: not the file's day {day.isoformat()}",
        )
    )
    checks.append(
        (
            pc.fill_null(pc.invert(pc.is_in(table["failure"], pa.array([0, 1], pa.int8()))), False),
            "failure: not 0 or 1",
        )
    )
    if "serial_number" not in cell_bad:
        sep = pc.match_substring(table["serial_number"], schema.SERIAL_KEY_SEP)
        checks.append((pc.fill_null(sep, False), schema.SERIAL_SEP_REASON))
    n = table.num_rows
    reasons = pa.nulls(n, pa.string())
    for mask, text in checks:
        mask = _flat(pc.fill_null(mask, False))
        if not pc.any(mask).as_py():
            continue
        # (binary_join_element_wise's null_handling="skip" drops rows: avoid it)
        joined = pc.binary_join_element_wise(pc.fill_null(reasons, ""), text, "; ")
        joined = pc.if_else(pc.is_null(reasons), pa.scalar(text), joined)
        reasons = pc.if_else(mask, joined, reasons)
    return reasons.combine_chunks() if isinstance(reasons, pa.ChunkedArray) else reasons


def _flat(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def _duplicates(serials: pa.ChunkedArray | pa.Array, idx: np.ndarray) -> np.ndarray:
    """Row indices (from ``idx``) repeating a serial already seen earlier in the file."""
    if len(idx) == 0:
        return np.array([], dtype=np.int64)
    t = pa.table({"s": serials, "i": pa.array(idx, pa.int64())})
    first = t.group_by("s", use_threads=False).aggregate([("i", "min")])["i_min"]
    if len(first) == len(idx):
        return np.array([], dtype=np.int64)
    return np.setdiff1d(idx, first.to_numpy(), assume_unique=True)


def _set_reason(reasons: pa.Array, idx: np.ndarray, text: str) -> pa.Array:
    mask = np.zeros(len(reasons), dtype=bool)
    mask[idx] = True
    return pc.if_else(pa.array(mask), pa.scalar(text), reasons)


# --- quarantine ---------------------------------------------------------------------------


def _line_spans(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start/end byte offsets of every line (end excludes the newline and a trailing CR)."""
    nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    starts = np.concatenate([[0], nl + 1])
    ends = np.concatenate([nl, [len(data)]])
    if len(starts) and starts[-1] == len(data):  # trailing newline: no last line
        starts, ends = starts[:-1], ends[:-1]
    buf = np.frombuffer(data, dtype=np.uint8)
    has_cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13)
    return starts, ends - has_cr


def _rejected(
    data: bytes,
    columns: list[str],
    n_parsed: int,
    bad_idx: np.ndarray,
    reasons: pa.Array,
    skipped: list[str],
    name: str,
) -> pa.Table:
    """Original text of bad rows + ``_row`` + ``_reason`` (slow path: only with bad rows)."""
    starts, ends = _line_spans(data)
    body = np.arange(1, len(starts))  # line index 0 is the header
    blank = (ends[body] - starts[body]) == 0
    skipped_lines = _locate(data, starts, ends, skipped)
    keep = ~blank & ~np.isin(body, skipped_lines)
    parsed_lines = body[keep]
    if len(parsed_lines) != n_parsed:  # pragma: no cover - guards the line mapping
        raise DataError(f"{name}: cannot map parsed rows to lines", file=name)
    lines = parsed_lines[bad_idx]
    header = data[starts[0] : ends[0]]
    text = b"\n".join([header] + [data[starts[i] : ends[i]] for i in lines]) + b"\n"
    parts = []
    if len(lines):
        t = _read(text, columns, typed=False, on_invalid=lambda r: "error")
        t = t.append_column("_row", pa.array(lines + 1, pa.int64()))
        t = t.append_column("_reason", reasons.take(pa.array(bad_idx, pa.int64())))
        parts.append(t)
    if len(skipped_lines):
        n = len(columns)
        cols = [pa.nulls(len(skipped_lines), pa.string()) for _ in columns]
        why = [f"expected {n} fields, found {len(s.split(','))}: {s[:200]}" for s in skipped]
        parts.append(
            pa.table(
                [*cols, pa.array(skipped_lines + 1, pa.int64()), pa.array(why, pa.string())],
                names=[*columns, "_row", "_reason"],
            )
        )
    out = pa.concat_tables(parts)
    return out.take(pc.sort_indices(out["_row"]))


def _locate(data: bytes, starts: np.ndarray, ends: np.ndarray, texts: list[str]) -> np.ndarray:
    """Line indices of rows the parser skipped (it reports their text, not their number)."""
    found: list[int] = []
    for t in texts:
        needle = t.encode("utf-8")
        candidates = np.flatnonzero(ends - starts == len(needle))
        for i in candidates:
            if i not in found and data[starts[i] : ends[i]] == needle:
                found.append(int(i))
                break
    return np.array(sorted(found), dtype=np.int64)


def rejected_csv(rejected: pa.Table) -> bytes:
    """Quarantine CSV bytes (all columns are text; empty cells stay empty)."""
    buf = io.BytesIO()
    pacsv.write_csv(rejected, buf)
    return buf.getvalue()
