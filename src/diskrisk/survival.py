"""Landmark survival datasets from the lake (contract: docs/contracts.md).

For a snapshot (cutoff) day ``s`` and a look-back of ``L`` days:

* **population**: drives observed on ``s`` (the scoring population: only those can be scored
  that day), minus drives with a failure on or before ``s`` anywhere in the lake (not at risk,
  including serials that "failed" and reappeared);
* **covariates** (:func:`snapshot_features`): for each SMART raw counter its latest non-null
  value in ``[s-L+1, s]``; ``_d7``/``_d30`` = that value minus the drive's earliest non-null value
  in ``[s-7, s]`` / ``[s-30, s]`` (the observed change over the trailing window; 0 when only one
  observation, NaN when none); ``age_days = smart_9_raw / 24``; ``model``/``capacity_bytes`` of
  the latest observation; ``vendor`` derived from the model string;
* **outcome** (:func:`survival_dataset`): the *first* failure after ``s`` ends follow-up
  (``event`` = True, ``duration_days`` = failure day - s). A serial that fails, reappears and
  fails again contributes only its first failure after the snapshot; later rows are ignored.
  Without a failure the drive is censored at its last observation after ``s``. Drives with no
  observation after ``s`` (up to ``end`` when given) have no follow-up and are excluded.
* ``entry_age_days`` = age at ``s`` (left truncation on the age scale) and ``exit_age_days`` =
  entry + duration.

All heavy lifting is duckdb SQL over the ``lake`` view (:func:`diskrisk.lake.connect`); only the
one-row-per-drive result becomes pandas. The outcome comes first, from three narrow columns:
each serial's runs of consecutive days (:func:`runs_sql`) and first failure
(:func:`first_failure_sql`) give every landmark's population and follow-up at once
(:func:`outcome_sql`); the covariates, a month of every SMART column, are then aggregated only
for the rows wanted (:func:`rows_sql`), which for a stack of sampled landmarks is a few percent.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from diskrisk import lake

DEFAULT_SMART_IDS: tuple[int, ...] = (1, 5, 9, 12, 187, 188, 194, 197, 198)

# (regex on the upper-cased model, vendor); first match wins. Order matters: "ST" is Seagate
# only after more specific prefixes were tried.
VENDOR_RULES: tuple[tuple[str, str], ...] = (
    (r"^(HITACHI|HGST|HDS|HUH|HUS|HMS)", "HGST"),
    (r"^(WDC|WD[0-9A-Z])", "WDC"),
    (r"^TOSHIBA|^(MG|MD|DT|HDWE|HDWF)[0-9]", "Toshiba"),
    (r"^SAMSUNG", "Samsung"),
    (r"^(SEAGATE|ST[0-9]|ZA[0-9])", "Seagate"),
    (r"^(CT[0-9]|CRUCIAL)", "Crucial"),
    (r"^(MICRON|MTFD)", "Micron"),
    (r"^(INTEL|SSDSC)", "Intel"),
    (r"^DELL", "Dell"),
)


def vendor_of(model: str | None) -> str:
    """Vendor of a Backblaze model string (same rules as the SQL used for datasets)."""
    m = (model or "").strip().upper()
    for pattern, vendor in VENDOR_RULES:
        if re.search(pattern, m):
            return vendor
    return "other"


def vendor_sql(column: str = "model") -> str:
    """SQL CASE expression implementing :data:`VENDOR_RULES`."""
    arms = " ".join(
        f"WHEN regexp_matches(upper(trim({column})), '{p}') THEN '{v}'" for p, v in VENDOR_RULES
    )
    return f"CASE {arms} ELSE 'other' END"


def _as_date(d: date | str) -> date:
    return d if isinstance(d, date) else date.fromisoformat(str(d))


def source_columns(smart_ids: Sequence[int] = DEFAULT_SMART_IDS) -> list[str]:
    """The lake columns the snapshot and survival queries read (age is SMART 9)."""
    smart = [f"smart_{i}_raw" for i in sorted(set(smart_ids) | {9})]
    return ["serial_number", "date", "model", "capacity_bytes", "failure", *smart]


def _con(
    con, prefix: str, root, smart_ids: Sequence[int], since: date | None, until: date | None
) -> duckdb.DuckDBPyConnection:
    """``since``/``until``: the days the query reads (an S3 lake's local copies hold just those)."""
    if con is not None:
        return con
    return lake.connect(prefix, root, columns=source_columns(smart_ids), since=since, until=until)


def feature_columns(smart_ids: Sequence[int] = DEFAULT_SMART_IDS) -> list[str]:
    """Covariate columns, in contract order."""
    cols = ["serial_number", "model", "vendor", "capacity_bytes", "snapshot_date", "age_days"]
    for i in smart_ids:
        cols += [f"smart_{i}_raw", f"smart_{i}_raw_d7", f"smart_{i}_raw_d30"]
    return cols


def _days_read(lookback: int) -> int:
    """Days a snapshot reads before its own: the look-back, and 30 at least (for the deltas)."""
    if lookback < 1:
        raise ValueError("lookback must be at least 1 day")
    return max(lookback - 1, 30)


# (drive, snapshot) rows whose covariates one statement aggregates. DuckDB sizes a hash
# aggregate's memory ahead of its groups: under the 3GiB default limit one day of 600k drives
# went out of core (106 s, 6.4 GB spilled; 22 s and 1.7 GiB with a 6GiB limit), while two
# statements of 300k took 16 s and 1.5 GiB. Consecutive landmarks share a statement up to the
# bound (their days are scanned once), a landmark above it is split by drive.
FEATURE_BATCH_ROWS = 300_000


def drive_parts(rows: int, bound: int | None = None) -> list[str]:
    """Predicates splitting ``rows`` (drive, snapshot) rows into parts of at most about
    ``bound`` (default :data:`FEATURE_BATCH_ROWS`) by a hash of the serial."""
    k = -(-rows // (bound or FEATURE_BATCH_ROWS))
    return [f"hash(serial_number) % {k} = {j}" for j in range(k)] if k > 1 else ["TRUE"]


def drive_parts_of(con: duckdb.DuckDBPyConnection, rows: str) -> list[str]:
    """:func:`drive_parts` of the relation ``rows`` (a table name or a parenthesized query)."""
    n = con.execute(f"SELECT count(*) FROM {rows}").fetchone()
    return drive_parts(n[0] if n else 0)


def _by_drive_parts(
    con: duckdb.DuckDBPyConnection, rows: str, sql_of: Callable[[str], str]
) -> pd.DataFrame:
    """``sql_of(part)`` for each of :func:`drive_parts_of` ``rows``, one statement each, as one
    frame sorted by serial."""
    frames = [con.execute(sql_of(part)).df() for part in drive_parts_of(con, rows)]
    return pd.concat(frames, ignore_index=True).sort_values("serial_number", ignore_index=True)


def _features_sql(
    keys: str, first: date, last: date, lookback: int, ids: Sequence[int], present: set[str]
) -> str:
    """Covariates of each ``(serial_number, snapshot_date DATE)`` of ``keys``, whose snapshot
    days lie in ``[first, last]``: one pass over the lake days they read, however many
    snapshots they hold, and aggregates only for the drives asked for."""
    back = _days_read(lookback)
    recent = f"date >= s - {lookback - 1}"
    proj, agg, out = [], [], []
    for i in sorted(set(ids) | {9}):
        c = f"smart_{i}_raw"
        src = f"l.{c}" if c in present else "NULL"
        proj.append(f"CAST({src} AS DOUBLE) AS {c}")
        nn = f"{c} IS NOT NULL"
        agg += [
            f"arg_max({c}, date) FILTER (WHERE {nn} AND {recent}) AS {c}",
            f"arg_min({c}, date) FILTER (WHERE {nn} AND date >= s - 7) AS {c}__b7",
            f"arg_min({c}, date) FILTER (WHERE {nn} AND date >= s - 30) AS {c}__b30",
            f"arg_max({c}, date) FILTER (WHERE {nn}) AS {c}__last",
        ]
    for i in ids:
        c = f"smart_{i}_raw"
        out += [
            f"coalesce({c}, 'NaN'::DOUBLE) AS {c}",
            f"coalesce({c}__last - {c}__b7, 'NaN'::DOUBLE) AS {c}_d7",
            f"coalesce({c}__last - {c}__b30, 'NaN'::DOUBLE) AS {c}_d30",
        ]
    return f"""
    WITH snapshot_keys AS ({keys}),
    win AS (
        SELECT k.snapshot_date AS s, l.serial_number, l.date, l.model, l.capacity_bytes,
               {", ".join(proj)}
        FROM lake l JOIN snapshot_keys k
          ON l.serial_number = k.serial_number
         AND l.date BETWEEN k.snapshot_date - {back} AND k.snapshot_date
        WHERE l.date BETWEEN DATE '{first - timedelta(days=back)}' AND DATE '{last}'
    ),
    agg AS (
        SELECT serial_number, s,
               arg_max(model, date) FILTER (WHERE {recent}) AS model,
               arg_max(capacity_bytes, date) FILTER (WHERE {recent}) AS capacity_bytes,
               {", ".join(agg)}
        FROM win GROUP BY serial_number, s
    )
    SELECT serial_number, model, {vendor_sql("model")} AS vendor, capacity_bytes,
           s AS snapshot_date, coalesce(smart_9_raw / 24.0, 'NaN'::DOUBLE) AS age_days,
           {", ".join(out)}
    FROM agg
    """


def snapshot_features(
    date_: date | str,
    lookback: int = 30,
    *,
    smart_ids: Sequence[int] = DEFAULT_SMART_IDS,
    prefix: str = "",
    root: str | Path | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pd.DataFrame:
    """Covariates known on ``date_`` for every drive observed that day (sorted by serial)."""
    s = _as_date(date_)
    con = _con(con, prefix, root, smart_ids, s - timedelta(days=_days_read(lookback)), s)
    present = set(lake.lake_columns(con))
    keys = f"SELECT DISTINCT serial_number, date AS snapshot_date FROM lake WHERE date = DATE '{s}'"
    df = _by_drive_parts(
        con,
        f"({keys})",
        lambda part: _features_sql(f"{keys} AND {part}", s, s, lookback, smart_ids, present),
    )
    return _types(df)[feature_columns(smart_ids)]


def first_failure_sql(until: date | str | None = None) -> str:
    """Each serial's first failure day in the lake, up to ``until`` (``serial_number, day``).
    A drive is at risk on ``s`` when that day is after ``s``, and it is then also its first
    failure after ``s``: one small table answers both for every landmark, instead of a scan of
    the history before each."""
    hi = f"AND date <= DATE '{_as_date(until)}'" if until is not None else ""
    return f"SELECT serial_number, min(date) AS day FROM lake WHERE failure = 1 {hi} GROUP BY 1"


def runs_sql(first: date | str, last: date | str | None = None) -> str:
    """Each serial's runs of consecutive observed days from ``first`` to ``last``
    (``serial_number, lo, hi``). A drive seen every day of its span (nearly every drive) is one
    run, from one aggregation; only serials with gaps or repeated rows are read again, to
    split their days into runs. Every landmark's population and follow-up follow from the
    runs, so the lake's rows are grouped by serial once, not once per landmark."""
    hi = f"AND date <= DATE '{_as_date(last)}'" if last is not None else ""
    days = f"date >= DATE '{_as_date(first)}' {hi}"
    return f"""
    WITH span AS MATERIALIZED (
        SELECT serial_number, min(date) AS lo, max(date) AS hi, count(*) AS n
        FROM lake WHERE {days} GROUP BY serial_number
    )
    SELECT serial_number, lo, hi FROM span WHERE n = hi - lo + 1
    UNION ALL
    SELECT serial_number, min(date), max(date) FROM (
        SELECT serial_number, date,
               date - CAST(dense_rank() OVER (PARTITION BY serial_number ORDER BY date) AS INT) AS g
        FROM lake
        WHERE {days} AND serial_number IN (SELECT serial_number FROM span WHERE n <> hi - lo + 1)
    ) GROUP BY serial_number, g
    """


def outcome_sql(
    marks: Sequence[tuple[date | str, date | str | None]], runs: str, failures: str
) -> str:
    """``(serial_number, snapshot_date, duration_days, event)`` of every drive at risk on each
    landmark ``s`` of ``marks`` (``(s, end of follow-up or None)``) with follow-up: seen on
    ``s`` and after it (up to the end), no failure on or before it. ``runs``: a relation of
    :func:`runs_sql` covering those days; ``failures``: one of :func:`first_failure_sql`."""
    never = date.max.isoformat()
    values = ", ".join(
        f"(DATE '{_as_date(s)}', DATE '{never if e is None else _as_date(e)}')" for s, e in marks
    )
    return f"""
    WITH marks(s, stop) AS (VALUES {values}),
    at_risk AS (
        SELECT r.serial_number, m.s, m.stop
        FROM {runs} r JOIN marks m ON m.s BETWEEN r.lo AND r.hi
    ),
    followed AS (  -- the last day seen up to the end: in the last run that starts by then
        SELECT a.serial_number, a.s, a.stop, least(r.hi, a.stop) AS last_seen
        FROM at_risk a ASOF JOIN {runs} r
          ON a.serial_number = r.serial_number AND a.stop >= r.lo
    )
    SELECT o.serial_number, CAST(o.s AS TIMESTAMP) AS snapshot_date,
           CAST(CASE WHEN f.day <= o.stop THEN f.day ELSE o.last_seen END - o.s AS BIGINT)
               AS duration_days,
           coalesce(f.day <= o.stop, false) AS event
    FROM followed o LEFT JOIN {failures} f USING (serial_number)
    WHERE o.last_seen > o.s AND (f.day IS NULL OR f.day > o.s)
    """


def rows_sql(
    outcomes: str,
    first: date | str,
    last: date | str,
    lookback: int,
    present: set[str],
    *,
    smart_ids: Sequence[int] = DEFAULT_SMART_IDS,
    extra: Sequence[str] = (),
) -> str:
    """Survival rows of ``outcomes`` (a relation of ``serial_number``, ``snapshot_date``
    TIMESTAMP from ``first`` to ``last``, ``duration_days``, ``event`` and the ``extra``
    columns): each row's covariates on its snapshot day with its outcome, columns in contract
    order. Covariates are aggregated for those rows only, in one pass over the lake, so a
    sample of many landmarks costs a sample's work."""
    keys = f"SELECT serial_number, CAST(snapshot_date AS DATE) AS snapshot_date FROM {outcomes}"
    feats = _features_sql(keys, _as_date(first), _as_date(last), lookback, smart_ids, present)
    covariates = ", ".join(
        "o.snapshot_date" if c == "snapshot_date" else f"f.{c}" for c in feature_columns(smart_ids)
    )
    more = "".join(f", o.{c}" for c in extra)
    return f"""
    SELECT {covariates}, o.duration_days, o.event,
           f.age_days AS entry_age_days, f.age_days + o.duration_days AS exit_age_days{more}
    FROM ({feats}) f JOIN {outcomes} o
      ON f.serial_number = o.serial_number AND f.snapshot_date = CAST(o.snapshot_date AS DATE)
    """


def outcome_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    marks: Sequence[tuple[date | str, date | str | None]],
    *,
    failures: str | None = None,
    runs: str | None = None,
) -> None:
    """Temp table ``name`` of :func:`outcome_sql` for ``marks``; ``failures``/``runs``: tables
    of :func:`first_failure_sql`/:func:`runs_sql` already made (default: made here for the
    marks' days). A table, not a CTE: DuckDB then plans the covariates' join on its real row
    count (as a CTE it guessed 1 % of it and the whole query took 3x as long)."""
    ends = [e for _, e in marks]
    last = None if None in ends else max(_as_date(e) for e in ends if e is not None)
    ctes = []
    if failures is None:
        failures = "first_failure"
        ctes.append(f"first_failure AS MATERIALIZED ({first_failure_sql(last)})")
    if runs is None:
        runs = "runs"
        ctes.append(f"runs AS MATERIALIZED ({runs_sql(min(_as_date(s) for s, _ in marks), last)})")
    sql = outcome_sql(marks, runs, failures)
    if ctes:
        sql = f"WITH {', '.join(ctes)} SELECT * FROM ({sql})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")


def survival_dataset(
    cutoff: date | str,
    lookback: int = 30,
    *,
    end: date | str | None = None,
    smart_ids: Sequence[int] = DEFAULT_SMART_IDS,
    prefix: str = "",
    root: str | Path | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pd.DataFrame:
    """One row per at-risk drive at ``cutoff``: covariates + (duration_days, event).

    ``end`` truncates follow-up (observations after it are ignored), which is what a time-based
    split needs.
    """
    con = _con(con, prefix, root, smart_ids, None, _as_date(end) if end is not None else None)
    present = set(lake.lake_columns(con))
    name = f"outcome_{uuid.uuid4().hex[:12]}"
    outcome_table(con, name, [(cutoff, end)])
    try:
        df = _by_drive_parts(
            con,
            name,
            lambda part: rows_sql(
                f"(SELECT * FROM {name} WHERE {part})",
                cutoff,
                cutoff,
                lookback,
                present,
                smart_ids=smart_ids,
            ),
        )
    finally:
        con.execute(f"DROP TABLE {name}")
    return _types(df).reset_index(drop=True)


def _types(df: pd.DataFrame) -> pd.DataFrame:
    df["snapshot_date"] = pd.to_datetime(df["snapshot_date"])
    for c in df.columns:
        if c.startswith("smart_") or c == "age_days":
            df[c] = df[c].astype("float64")
    if "duration_days" in df:
        df["duration_days"] = df["duration_days"].astype("int64")
        df["event"] = df["event"].astype(bool)
    return df
