"""HBase sink for failure-risk scores (happybase over the Thrift1 gateway).

Layout (all names prefixed ``<DISKRISK_HBASE_NAMESPACE>_``):

``scores_latest``  row ``serial_number``; one row per drive, what dashboards read.
    ``s:risk``  the risk alone, so ``top(k)`` scans one small cell per drive;
    ``s:rec``   JSON of the other score fields (model, p_fail_30d, p_fail_90d, rank_pct,
                data_date, scored_at);
    ``m:rec``   JSON of the model metadata (model_name, model_version, run_id).
``scores_history`` row ``serial_number#YYYY-MM-DD``; ``s:rec`` = JSON of the whole score row.
    ISO dates sort lexicographically = chronologically, so one drive's history is one
    contiguous prefix scan (``serial#``), already in date order. TTL (default 400 days: a
    year of trend plus a month of slack for late re-scoring) counts from the write time, not
    from ``data_date``: cells dated by their day would vanish on arrival when old days are
    backfilled (the 2013 sample), and HBase TTL always compares cell timestamps.
``runs``          row ``YYYY-MM-DD``; ``r:rows``, ``r:model_name``, ``r:model_version``,
    ``r:run_id``, ``r:finished_at``: the completion marker of a scored day.
``scores_rank``   row ``YYYY-MM-DD#<model version>#<position, 7 digits>``; ``s:rec`` = JSON of the
    score row with its serial. Position 0 is the day's riskiest drive (ties by serial), so the
    top K of a day is one scan of K rows from ``day#version#`` (the version and row count come
    from the day's marker: rows of an older version or beyond the count are never read).
    TTL as history.

Why these choices:

* **Table prefix, not a namespace.** The Thrift1 API (the one happybase speaks) has no call to
  create namespaces, and the pipeline's identity should not need HBase admin rights to make
  one; happybase's ``table_prefix`` with separator ``_`` gives the same grouping.
* **Packed JSON cells.** HBase cost on this path is per cell (a Thrift Mutation, a KeyValue,
  a memstore entry): ten separate columns per row wrote ~8k rows/s on 2 cores, three packed
  cells ~25k rows/s. ``s:risk`` stays its own column because ``top`` scans only it.
* **Encoding.** Row keys are the UTF-8 serial (plus ``#YYYY-MM-DD``). Every value is UTF-8
  text: floats as ``repr`` (shortest exact round trip, so a rewrite of the same input gives
  byte-identical cells), dates as ``YYYY-MM-DD``, JSON with sorted keys, no spaces and
  non-ASCII escaped (``\\u00e8``). Readable from the HBase shell and from any language; no
  binary longs/doubles, whose byte order would tie readers to Java's ``Bytes``.
* **Latest never goes back in time without a read.** Cells of ``scores_latest`` carry the HBase
  timestamp of their ``data_date`` (ms since epoch, UTC midnight). HBase returns the cell
  with the highest timestamp, so an older day written later stays hidden (and is dropped at
  compaction with ``max_versions=1``), while re-scoring the *same* day with a newer model
  overwrites (same timestamp: the last write wins). No read-before-write (a 5k-row
  multi-get costs seconds through Thrift) and no race between concurrent writers.
  Consequence: never *delete* latest rows with a current-time tombstone; it would mask
  later writes of older-dated scores until a major compaction.
* **Completion marker.** ``write`` first removes the day's marker, then writes every batch,
  and writes the marker only after all of them landed: a marker therefore means "this run's
  rows are all there", never a half-rewritten day.
* **Retries.** Every batch is a set of idempotent puts, so a batch that failed (or may have
  half landed) is simply sent again, on a fresh connection, with exponential backoff; after
  ``attempts`` tries the write stops with :class:`SinkError`.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from typing import Any, NamedTuple, TypeVar

import happybase
import numpy as np
import pandas as pd
from thriftpy2.thrift import TApplicationException
from thriftpy2.transport import TTransportException

from diskrisk import schema
from diskrisk.config import HBaseSettings, load

log = logging.getLogger(__name__)

LATEST, HISTORY, RUNS, RANK = "scores_latest", "scores_history", "runs", "scores_rank"
KEY_SEP = schema.SERIAL_KEY_SEP
DEFAULT_HISTORY_TTL_DAYS = 400

STR_FIELDS = ("serial_number", "model", "model_name", "model_version", "run_id", "scored_at")
FLOAT_FIELDS = ("risk", "p_fail_30d", "p_fail_90d", "rank_pct")
# A horizon the model cannot support is published as missing (JSON null), never made up.
OPTIONAL_FIELDS = ("p_fail_30d", "p_fail_90d")
COLUMNS = (
    "serial_number",
    "model",
    "risk",
    "p_fail_30d",
    "p_fail_90d",
    "rank_pct",
    "model_name",
    "model_version",
    "run_id",
    "data_date",
    "scored_at",
)
SCORE_FIELDS = ("model", "p_fail_30d", "p_fail_90d", "rank_pct", "data_date", "scored_at")
META_FIELDS = ("model_name", "model_version", "run_id")

C_RISK, C_SREC, C_MREC = b"s:risk", b"s:rec", b"m:rec"


T = TypeVar("T")


class SinkError(RuntimeError):
    """A write gave up after its retries; the message names the day and what landed."""


# --- pure helpers -----------------------------------------------------------------------------
def latest_key(serial: str) -> bytes:
    return _check_serial(serial).encode()


def history_key(serial: str, date: str | dt.date) -> bytes:
    """``serial#YYYY-MM-DD``: sorts by drive, then chronologically."""
    return f"{_check_serial(serial)}{KEY_SEP}{iso_date(date)}".encode()


def history_prefix(serial: str) -> bytes:
    return f"{_check_serial(serial)}{KEY_SEP}".encode()


def _check_serial(serial: str) -> str:
    # '#' in a serial would make one drive's prefix match another's keys.
    if problem := schema.serial_problem(serial):
        raise ValueError(f"{problem}: {serial!r}")
    return serial


def iso_date(value: str | dt.date | pd.Timestamp) -> str:
    """Normalise a day to ``YYYY-MM-DD`` (rejects anything that is not a calendar day)."""
    if isinstance(value, str):
        return dt.date.fromisoformat(value).isoformat()
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.date().isoformat()
    return value.isoformat()


def date_ts_ms(date: str | dt.date) -> int:
    """HBase timestamp of a data day (UTC midnight in ms): orders latest-table writes."""
    day = dt.date.fromisoformat(iso_date(date))
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def encode_json(obj: dict[str, Any]) -> str:
    """The reference encoding of a record; ``encode_cells`` builds the same bytes faster.
    A missing optional probability (NaN) is written as ``null``."""
    obj = {k: None if k in OPTIONAL_FIELDS and _is_nan(v) else v for k, v in obj.items()}
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and v != v


def partition(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows the store can hold, with canonical types; the rows it cannot, with ``_reason``).

    One bad row never costs the day its other rows. Strings stay strings, floats must be finite
    (a NaN score is an upstream bug, not something to store) except a ``p_fail_*`` the model
    marks unsupported (NaN, stored as null); a serial must be usable as a row key
    (:func:`diskrisk.schema.serial_problem`); days become ``YYYY-MM-DD``; a duplicated
    (serial, day) keeps its last row, as HBase would. Missing columns are a contract breach of
    the whole frame: ``ValueError``.
    """
    missing = [c for c in COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack column(s) {missing}")
    df = scores.loc[:, list(COLUMNS)].copy().reset_index(drop=True)
    reasons = pd.Series("", index=df.index, dtype=object)

    def flag(mask: pd.Series, text: str) -> None:
        reasons[mask & (reasons == "")] = text

    for col in ("serial_number", "data_date", "run_id", "model_version", "model_name"):
        flag(df[col].isna(), f"empty {col}")
    for col in STR_FIELDS:
        df[col] = df[col].astype(str)
    for col in FLOAT_FIELDS:
        values = pd.to_numeric(df[col], errors="coerce").astype("float64")
        given = df[col].notna() if col in OPTIONAL_FIELDS else pd.Series(True, index=df.index)
        flag(given & ~np.isfinite(values), f"non-finite {col}")
        df[col] = values
    flag(~df["rank_pct"].between(0, 100), "rank_pct must lie in 0..100")
    problems = df["serial_number"].map(schema.serial_problem)
    reasons[problems.notna() & (reasons == "")] = problems
    bad = df[reasons != ""].assign(_reason=reasons[reasons != ""])
    df = df[reasons == ""].copy()
    if pd.api.types.is_datetime64_any_dtype(df["data_date"]):
        df["data_date"] = df["data_date"].dt.strftime("%Y-%m-%d")
    else:  # a run holds few distinct days: normalise each once
        days = {d: iso_date(d) for d in df["data_date"].unique()}
        df["data_date"] = df["data_date"].map(days)
    good = df.drop_duplicates(["serial_number", "data_date"], keep="last").reset_index(drop=True)
    return good, bad.reset_index(drop=True)


def normalise(scores: pd.DataFrame) -> pd.DataFrame:
    """:func:`partition`'s good rows; ``ValueError`` naming the first bad row otherwise (for
    callers that want the whole frame or nothing)."""
    good, bad = partition(scores)
    if not bad.empty:
        first = bad.iloc[0]
        raise ValueError(
            f"{len(bad)} score row(s) cannot be stored, e.g. serial "
            f"{first['serial_number']!r}: {first['_reason']}"
        )
    return good


class Encoded(NamedTuple):
    """A normalised frame as UTF-8 cell values, column-wise (one entry per row)."""

    latest_keys: list[bytes]
    risk: list[bytes]  # s:risk of latest
    score: list[bytes]  # s:rec of latest
    meta: list[bytes]  # m:rec of latest
    history_keys: list[bytes]
    history: list[bytes]  # s:rec of history

    def latest_cells(self, i: int) -> dict[bytes, bytes]:
        return {C_RISK: self.risk[i], C_SREC: self.score[i], C_MREC: self.meta[i]}

    def history_cells(self, i: int) -> dict[bytes, bytes]:
        return {C_SREC: self.history[i]}

    def rank_cell(self, i: int) -> bytes:
        """The history record with its serial (the rank key does not hold it)."""
        serial = json.dumps(self.latest_keys[i].decode()).encode()
        return b'{"serial_number":' + serial + b"," + self.history[i][1:]


def encode_cells(df: pd.DataFrame) -> Encoded:
    """Encode a normalised frame.

    Built column-wise with string formatting rather than ``json.dumps`` per row (3x faster
    at 300k rows, the client's main cost besides Thrift objects); the bytes equal
    ``encode_json`` of the record. Strings go through ``json.dumps`` once per distinct value
    (models, run ids and timestamps repeat), floats through ``repr``.
    """

    def js(col: str) -> list[str]:
        values = df[col].tolist()
        cache = {v: json.dumps(v) for v in set(values)}
        return [cache[v] for v in values]

    def fl(col: str) -> list[str]:
        if col in OPTIONAL_FIELDS:
            return ["null" if v != v else repr(v) for v in df[col].tolist()]
        return [repr(v) for v in df[col].tolist()]

    serial = df["serial_number"].tolist()
    date = df["data_date"].tolist()
    model, scored, mname, mver, run = (
        js(c) for c in ("model", "scored_at", "model_name", "model_version", "run_id")
    )
    risk, p30, p90, rank = (fl(c) for c in FLOAT_FIELDS)
    # Keys in sorted order, as encode_json writes them.
    score = [
        f'{{"data_date":"{d}","model":{m},"p_fail_30d":{a},"p_fail_90d":{b},'
        f'"rank_pct":{r},"scored_at":{s}}}'.encode()
        for d, m, a, b, r, s in zip(date, model, p30, p90, rank, scored, strict=True)
    ]
    metas: dict[tuple[str, str, str], bytes] = {}
    meta = [
        metas.get(t)
        or metas.setdefault(
            t, f'{{"model_name":{t[0]},"model_version":{t[1]},"run_id":{t[2]}}}'.encode()
        )
        for t in zip(mname, mver, run, strict=True)
    ]
    hist = [
        f'{{"data_date":"{d}","model":{m},"model_name":{n},"model_version":{v},'
        f'"p_fail_30d":{a},"p_fail_90d":{b},"rank_pct":{r},"risk":{k},"run_id":{u},'
        f'"scored_at":{s}}}'.encode()
        for d, m, n, v, a, b, r, k, u, s in zip(
            date, model, mname, mver, p30, p90, rank, risk, run, scored, strict=True
        )
    ]
    return Encoded(
        latest_keys=[s.encode() for s in serial],
        risk=[k.encode() for k in risk],
        score=score,
        meta=meta,
        history_keys=[f"{s}{KEY_SEP}{d}".encode() for s, d in zip(serial, date, strict=True)],
        history=hist,
    )


def to_mutations(enc: Encoded, rows: slice) -> tuple[list[Any], list[Any]]:
    """Thrift BatchMutations (latest, history) of a slice of rows.

    Creating thriftpy2 objects costs ~1us each, so identical ``m:rec`` cells (one model per
    run) share one Mutation object; the protocol only reads them.
    """
    from Hbase_thrift import BatchMutation, Mutation

    shared: dict[bytes, Any] = {}

    def meta(v: bytes) -> Any:
        m = shared.get(v)
        if m is None:
            m = shared[v] = Mutation(isDelete=False, column=C_MREC, value=v)
        return m

    latest = [
        BatchMutation(
            k,
            [
                Mutation(isDelete=False, column=C_RISK, value=r),
                Mutation(isDelete=False, column=C_SREC, value=s),
                meta(m),
            ],
        )
        for k, r, s, m in zip(
            enc.latest_keys[rows], enc.risk[rows], enc.score[rows], enc.meta[rows], strict=True
        )
    ]
    history = [
        BatchMutation(k, [Mutation(isDelete=False, column=C_SREC, value=h)])
        for k, h in zip(enc.history_keys[rows], enc.history[rows], strict=True)
    ]
    return latest, history


def rank_mutations(enc: Encoded, ranks: list[bytes], rows: slice) -> list[Any]:
    """Thrift BatchMutations of the ranking rows of a slice of rows."""
    from Hbase_thrift import BatchMutation, Mutation

    return [
        BatchMutation(ranks[i], [Mutation(isDelete=False, column=C_SREC, value=enc.rank_cell(i))])
        for i in range(*rows.indices(len(ranks)))
    ]


def decode_latest(key: bytes, cells: dict[bytes, bytes]) -> dict[str, Any]:
    """A latest-table row back to a score record (risk as float, the rest from JSON)."""
    row: dict[str, Any] = {"serial_number": key.decode(), "risk": float(cells[C_RISK])}
    row.update(json.loads(cells[C_SREC]))
    row.update(json.loads(cells[C_MREC]))
    return _missing_as_nan(row)


def decode_history(key: bytes, cells: dict[bytes, bytes]) -> dict[str, Any]:
    row: dict[str, Any] = {"serial_number": key.decode().split(KEY_SEP, 1)[0]}
    row.update(json.loads(cells[C_SREC]))
    return _missing_as_nan(row)


def _missing_as_nan(row: dict[str, Any]) -> dict[str, Any]:
    for k in OPTIONAL_FIELDS:
        if k in row and row[k] is None:
            row[k] = float("nan")
    return row


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def backoff_delays(attempts: int, base_s: float, cap_s: float) -> list[float]:
    """Sleeps between ``attempts`` tries: base, 2*base, 4*base ... capped."""
    return [min(cap_s, base_s * 2**i) for i in range(max(attempts - 1, 0))]


# --- the sink ---------------------------------------------------------------------------------
# Transport failures, a gateway that died mid-call, and HBase-side IOErrors (region moving,
# table still enabling) are worth retrying; IllegalArgument (bad request) is not.
RETRYABLE: tuple[type[BaseException], ...] = (
    TTransportException,
    TApplicationException,
    OSError,
    socket.timeout,
    BrokenPipeError,
    EOFError,
)


def _hbase_errors() -> tuple[type[BaseException], ...]:
    import Hbase_thrift  # thriftpy2 registers it when happybase is imported

    return (Hbase_thrift.IOError,)


class HBaseSink:
    """Writes and reads diskrisk scores; one instance per process is enough.

    The instance holds no open connection between calls (a Thrift socket left idle is
    closed by the gateway), so it is safe to keep around and to use from several processes.
    """

    def __init__(
        self,
        settings: HBaseSettings | None = None,
        *,
        history_ttl_days: int = DEFAULT_HISTORY_TTL_DAYS,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        timeout_ms: int | None = None,
        workers: int = 2,
        on_batch: Callable[[str, int], None] | None = None,
        read_pool: int = 0,
        on_read_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.settings = settings or load(HBaseSettings)
        self.history_ttl_days = history_ttl_days
        self.attempts = attempts
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.timeout_ms = timeout_ms or int(self.settings.timeout_s * 1000)
        self.workers = max(1, workers)  # concurrent batches; 2 keeps both cores busy
        self.on_batch = on_batch  # called as on_batch(day, batches_landed): progress, tests
        self.on_read_error = on_read_error  # called with every failed read attempt: metrics
        self._tables_ready = False
        self.set_aside = pd.DataFrame()  # rows the last write() could not store, with _reason
        self.retryable = RETRYABLE + _hbase_errors()  # errors worth another try
        # Readers that answer many small requests (the risk service) keep ``read_pool`` open
        # connections instead of connecting per call; 0 = connect per call (batch jobs). Made
        # on first use: HBase may be down when the reader starts.
        self.read_pool = read_pool
        self._pool: happybase.ConnectionPool | None = None
        self._pool_lock = threading.Lock()

    # connections -------------------------------------------------------------------------------
    def _connect(self) -> happybase.Connection:
        return happybase.Connection(
            self.settings.thrift_host,
            self.settings.thrift_port,
            timeout=self.timeout_ms,
            table_prefix=self.settings.namespace,
            table_prefix_separator=b"_",
        )

    @contextmanager
    def connection(self) -> Iterator[happybase.Connection]:
        """A prefixed connection, closed on exit (use ``conn.table('scores_latest')``)."""
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _reading(self) -> Iterator[happybase.Connection]:
        if not self.read_pool:
            with self.connection() as conn:
                yield conn
            return
        with self._pool_lock:
            if self._pool is None:
                self._pool = happybase.ConnectionPool(
                    self.read_pool,
                    host=self.settings.thrift_host,
                    port=self.settings.thrift_port,
                    timeout=self.timeout_ms,
                    table_prefix=self.settings.namespace,
                    table_prefix_separator=b"_",
                )
        with self._pool.connection() as conn:
            yield conn

    def _read(self, op: Callable[[happybase.Connection], T]) -> T | None:
        """One read, tried once more after a transport error: a pooled connection the gateway
        dropped while it sat idle fails its next call (the pool then replaces it), and a
        fresh one is made per call otherwise. A namespace nobody wrote to yet reads as None."""
        for attempt in (1, 2):
            try:
                with self._reading() as conn, _absent_is_empty():
                    return op(conn)
                return None
            except self.retryable as exc:
                if self.on_read_error:
                    self.on_read_error(exc)
                if attempt == 2:
                    raise
                log.warning("HBase read failed (%r); trying once more", exc)
        raise AssertionError("unreachable")

    def table_name(self, table: str) -> str:
        return f"{self.settings.namespace}_{table}"

    def _retrying(
        self, what: str, op: Callable[[happybase.Connection], Any], state: dict[str, Any]
    ) -> Any:
        """Run ``op`` with retries; ``state['conn']`` is reused until an error spoils it."""
        delays = backoff_delays(self.attempts, self.backoff_s, self.max_backoff_s)
        for attempt in range(1, self.attempts + 1):
            try:
                if state.get("conn") is None:
                    state["conn"] = self._connect()
                return op(state["conn"])
            except self.retryable as exc:
                _close_quietly(state.pop("conn", None))
                if attempt == self.attempts:
                    raise
                log.warning(
                    "%s failed (attempt %d/%d: %r); retrying in %.1fs",
                    what,
                    attempt,
                    self.attempts,
                    exc,
                    delays[attempt - 1],
                )
                time.sleep(delays[attempt - 1])
        raise AssertionError("unreachable")

    # tables ------------------------------------------------------------------------------------
    def families(self) -> dict[str, dict[str, dict[str, Any]]]:
        ttl = int(self.history_ttl_days * 86_400)
        return {
            LATEST: {"s": {"max_versions": 1}, "m": {"max_versions": 1}},
            HISTORY: {"s": {"max_versions": 1, "time_to_live": ttl}},
            RUNS: {"r": {"max_versions": 1}},
            RANK: {"s": {"max_versions": 1, "time_to_live": ttl}},
        }

    def ensure_tables(self) -> None:
        """Create missing tables; another process creating the same one at once is fine.

        The TTL applies when a table is created; changing it later is an ``alter`` in the
        HBase shell, not a code path.
        """
        if self._tables_ready:
            return
        import Hbase_thrift

        def create(conn: happybase.Connection) -> None:
            existing = {t.decode() for t in conn.tables()}
            for table, fams in self.families().items():
                if table in existing:
                    continue
                with suppress(Hbase_thrift.AlreadyExists):  # a concurrent caller won the race
                    conn.create_table(table, fams)
            for table in self.families():
                _wait_enabled(conn, table)

        state: dict[str, Any] = {}
        try:
            self._retrying("create tables", create, state)
        finally:
            _close_quietly(state.get("conn"))
        self._tables_ready = True

    def drop_tables(self) -> None:
        """Delete this prefix's tables (tests and throwaway namespaces only)."""
        with self.connection() as conn:
            existing = {t.decode() for t in conn.tables()}
            for table in self.families():
                if table in existing:
                    conn.delete_table(table, disable=True)
        self._tables_ready = False

    # writing -----------------------------------------------------------------------------------
    def write(self, scores: pd.DataFrame) -> dict[str, int]:
        """Write scores day by day; returns rows written per day.

        Each day: drop its completion marker, send batches of ``batch_size`` rows to latest
        (timestamped with the day) and history, then write the marker. Raises
        :class:`SinkError` when a batch still fails after the retries.
        """
        df, self.set_aside = partition(scores)
        if not self.set_aside.empty:
            log.warning(
                "%d score row(s) set aside (not stored): %s",
                len(self.set_aside),
                self.set_aside["_reason"].value_counts().to_dict(),
            )
        aside_days = pd.to_datetime(self.set_aside["data_date"], errors="coerce")
        aside = aside_days.dt.strftime("%Y-%m-%d").value_counts().to_dict()
        self.ensure_tables()
        written: dict[str, int] = {}
        state: dict[str, Any] = {}
        try:
            for day, part in df.groupby("data_date", sort=True):
                written[str(day)] = self._write_day(
                    str(day), part, state, set_aside=int(aside.get(str(day), 0))
                )
        finally:
            _close_quietly(state.get("conn"))
        return written

    def _write_day(
        self, day: str, part: pd.DataFrame, state: dict[str, Any], set_aside: int = 0
    ) -> int:
        """Batches go to a small thread pool so the JVM stores batch i while Python encodes
        batch i+1 (encoding holds the GIL; a thread waiting on its socket does not)."""
        from Hbase_thrift import BatchMutation, Mutation

        lname, hname, rname, kname = (
            self.table_name(t).encode() for t in (LATEST, HISTORY, RUNS, RANK)
        )
        ts = date_ts_ms(day)
        enc = encode_cells(part)
        ranks = rank_keys(part, day)
        n, size = len(part), self.settings.batch_size
        total = -(-n // size)
        landed = 0
        local = threading.local()
        worker_states: list[dict[str, Any]] = []

        def send(lb: list[Any], hb: list[Any], kb: list[Any], i: int) -> None:
            if not hasattr(local, "state"):
                local.state = {}
                worker_states.append(local.state)

            def op(conn: happybase.Connection) -> None:
                conn.client.mutateRowsTs(lname, lb, ts, {})
                conn.client.mutateRows(hname, hb, {})
                conn.client.mutateRows(kname, kb, {})

            self._retrying(f"{day}: batch {i}/{total}", op, local.state)

        pending: deque[Future[None]] = deque()
        try:
            # Explicit timestamps: a put in the same millisecond as a delete would be masked.
            cleared_ms = _now_ms()
            self._retrying(
                f"{day}: clear marker",
                lambda c: c.client.deleteAllRowTs(rname, day.encode(), cleared_ms, {}),
                state,
            )
            with ThreadPoolExecutor(self.workers, thread_name_prefix="hbase-sink") as pool:
                try:
                    for i, rows in enumerate(batches(n, size), start=1):
                        batch = to_mutations(enc, rows)
                        pending.append(
                            pool.submit(send, *batch, rank_mutations(enc, ranks, rows), i)
                        )
                        while len(pending) > self.workers:  # bounds memory in flight
                            pending.popleft().result()
                            landed += 1
                            self._landed(day, landed)
                    while pending:
                        pending.popleft().result()
                        landed += 1
                        self._landed(day, landed)
                finally:
                    for fut in pending:
                        fut.cancel()
            marker = completion_cells(n, part, finished_at=_now_iso(), set_aside=set_aside).items()
            marker_ms = max(_now_ms(), cleared_ms + 1)
            row = [BatchMutation(day.encode(), [Mutation(column=k, value=v) for k, v in marker])]
            self._retrying(
                f"{day}: marker", lambda c: c.client.mutateRowsTs(rname, row, marker_ms, {}), state
            )
        except self.retryable as exc:
            raise SinkError(
                f"writing scores of {day} failed after {self.attempts} attempts: "
                f"{landed}/{total} batches of {size} rows landed, no completion marker "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        finally:
            for st in worker_states:
                _close_quietly(st.get("conn"))
        log.info("%s: %d rows in %d batches to %s", day, n, total, self.settings.namespace)
        return n

    def _landed(self, day: str, landed: int) -> None:
        if self.on_batch:
            self.on_batch(day, landed)

    # reading -----------------------------------------------------------------------------------
    def latest(self, serial: str) -> dict[str, Any] | None:
        key = latest_key(serial)
        cells = self._read(lambda conn: conn.table(LATEST).row(key))
        return decode_latest(key, cells) if cells else None

    def history(self, serial: str) -> pd.DataFrame:
        """One drive's scores, oldest first (one prefix scan: keys sort by date)."""
        return _frame(self.history_records(serial))

    def history_records(self, serial: str) -> list[dict[str, Any]]:
        prefix = history_prefix(serial)
        return (
            self._read(
                lambda conn: [
                    decode_history(k, c) for k, c in conn.table(HISTORY).scan(row_prefix=prefix)
                ]
            )
            or []
        )

    def top(self, k: int, day: str | dt.date | None = None) -> pd.DataFrame:
        """The ``k`` riskiest drives, riskiest first (ties by serial), among the drives scored
        on ``day`` (default: the newest completed day, i.e. "now"; ``"all"``: every drive's
        latest score, including drives that have since failed or left the fleet).

        A full scan of the one-cell ``s:risk`` column, filtered on the cell timestamp (which is
        the score's data date): ~300k small cells take a few seconds, fine for a daily report;
        a secondary index would be needed for interactive queries at larger fleets.
        """
        if k <= 0:
            return _frame([])
        if day is None:
            day = self.newest_completed()
        if day not in (None, "all"):
            _, ranked = self.ranked(day, limit=k)
            if not ranked.empty:
                return ranked
        wanted = None if day in (None, "all") else date_ts_ms(iso_date(day))  # type: ignore[arg-type]

        def riskiest(conn: happybase.Connection) -> list[tuple[bytes, dict[bytes, bytes]]]:
            table = conn.table(LATEST)
            scan = table.scan(columns=[C_RISK], batch_size=10_000, include_timestamp=True)
            best = heapq.nsmallest(
                k,
                (
                    (-float(c[C_RISK][0]), key)
                    for key, c in scan
                    if wanted is None or c[C_RISK][1] == wanted
                ),
            )
            keys = [key for _, key in best]
            rows = dict(table.rows(keys)) if keys else {}
            return [(key, rows[key]) for key in keys if key in rows]

        return _frame([decode_latest(key, cells) for key, cells in self._read(riskiest) or []])

    def ranked(
        self,
        day: str | dt.date | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
        keep: Callable[[dict[str, Any]], bool] | None = None,
        min_risk: float | None = None,
    ) -> tuple[str | None, pd.DataFrame]:
        """The riskiest drives of ``day`` (default: the newest completed one) in rank order,
        read from the day's ranking: ``limit`` rows after skipping ``offset`` rows that pass
        ``keep``; the scan stops at the first row below ``min_risk``. Returns (day, rows);
        an empty frame when the day has no ranking (written before rankings existed)."""
        day = iso_date(day) if day is not None else self.newest_completed()
        marker = self.completed(day) if day else None
        rows = self.ranked_records(marker, limit=limit, offset=offset, keep=keep, min_risk=min_risk)
        return day, _frame(rows)

    def ranked_records(
        self,
        marker: dict[str, Any] | None,
        *,
        limit: int = 100,
        offset: int = 0,
        keep: Callable[[dict[str, Any]], bool] | None = None,
        min_risk: float | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`ranked` for a day's completion marker (callers may cache it)."""
        if not marker or limit <= 0:
            return []
        start = f"{marker['data_date']}{KEY_SEP}{marker['model_version']}{KEY_SEP}"
        first = 0
        if keep is None:  # keys are positions: an unfiltered page starts at its own row
            first, offset = offset, 0

        def page(conn: happybase.Connection) -> list[dict[str, Any]]:
            scan = conn.table(RANK).scan(
                row_start=f"{start}{first:07d}".encode(),
                row_stop=f"{start}{marker['rows']:07d}".encode(),
                batch_size=min(max(limit + offset, 100), 5000),
            )
            with closing(scan):  # close the scanner while the connection is still open
                return _take(scan, limit, offset, keep, min_risk)

        return self._read(page) or []

    def newest_completed(self) -> str | None:
        """The newest day whose scores were all written (from the completion markers)."""
        days = self._read(
            lambda conn: [k.decode() for k, _ in conn.table(RUNS).scan(filter=b"KeyOnlyFilter()")]
        )
        return max(days) if days else None

    def completed(self, date: str | dt.date) -> dict[str, Any] | None:
        """The completion marker of a day, or None when no write of it has finished."""
        key = iso_date(date).encode()
        cells = self._read(lambda conn: conn.table(RUNS).row(key))
        if not cells:
            return None
        out: dict[str, Any] = {k.decode().split(":", 1)[1]: v.decode() for k, v in cells.items()}
        out["rows"] = int(out["rows"])
        out["set_aside"] = int(out.get("set_aside", 0))
        out["data_date"] = iso_date(date)
        return out


def _take(
    scan: Iterator[tuple[bytes, dict[bytes, bytes]]],
    limit: int,
    offset: int,
    keep: Callable[[dict[str, Any]], bool] | None,
    min_risk: float | None,
) -> list[dict[str, Any]]:
    """Rows of a ranking scan: skip ``offset`` kept rows, take ``limit``, stop below
    ``min_risk`` (the scan is in risk order)."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    for _, cells in scan:
        row = _missing_as_nan(json.loads(cells[C_SREC]))
        if min_risk is not None and row["risk"] < min_risk:
            break
        if keep is not None and not keep(row):
            continue
        if skipped < offset:
            skipped += 1
            continue
        rows.append(row)
        if len(rows) >= limit:
            break
    return rows


def rank_keys(part: pd.DataFrame, day: str) -> list[bytes]:
    """Ranking row key of each row of ``part`` (one day, one model version): its position by
    risk, riskiest first, ties by serial."""
    order = np.lexsort((part["serial_number"].to_numpy(), -part["risk"].to_numpy(float)))
    position = np.empty(len(part), dtype=np.int64)
    position[order] = np.arange(len(part))
    versions = part["model_version"].astype(str).to_numpy()
    return [
        f"{day}{KEY_SEP}{v}{KEY_SEP}{p:07d}".encode()
        for v, p in zip(versions, position.tolist(), strict=True)
    ]


def completion_cells(
    rows: int, part: pd.DataFrame, finished_at: str, set_aside: int = 0
) -> dict[bytes, bytes]:
    """Marker columns; model/run come from the day's rows (the last row if they differ);
    ``set_aside``: the day's rows the store could not hold (see :func:`partition`)."""
    last = part.iloc[-1]
    return {
        b"r:rows": str(rows).encode(),
        b"r:set_aside": str(set_aside).encode(),
        b"r:model_name": str(last["model_name"]).encode(),
        b"r:model_version": str(last["model_version"]).encode(),
        b"r:run_id": str(last["run_id"]).encode(),
        b"r:finished_at": finished_at.encode(),
    }


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COLUMNS))


@contextmanager
def _absent_is_empty() -> Iterator[None]:
    """Readers see a namespace nobody wrote to yet as empty rather than as an error."""
    import Hbase_thrift

    try:
        yield
    except Hbase_thrift.IOError as exc:
        if b"TableNotFoundException" not in (exc.message or b""):
            raise


def _close_quietly(conn: happybase.Connection | None) -> None:
    if conn is not None:
        with suppress(Exception):  # the socket is already broken
            conn.close()


def _wait_enabled(conn: happybase.Connection, table: str, timeout_s: float = 60.0) -> None:
    """A concurrent creator may still be enabling the table when we see it exist."""
    deadline = time.monotonic() + timeout_s
    while not conn.is_table_enabled(table):
        if time.monotonic() > deadline:
            raise SinkError(f"table {table} exists but is not enabled after {timeout_s:.0f}s")
        time.sleep(0.5)
