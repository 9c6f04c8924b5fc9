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
one-row-per-drive result becomes pandas.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


def _features_window(s: date, lookback: int) -> tuple[date, date]:
    """(first day covered by ``lookback``, first day read: 30 days back at least, for the deltas)."""
    if lookback < 1:
        raise ValueError("lookback must be at least 1 day")
    lo = s - timedelta(days=lookback - 1)
    return lo, min(lo, s - timedelta(days=30))


def _features_sql(s: date, lookback: int, ids: Sequence[int], present: set[str]) -> str:
    lo, read_from = _features_window(s, lookback)
    d7, d30 = s - timedelta(days=7), s - timedelta(days=30)
    proj, agg, out = [], [], []
    for i in sorted(set(ids) | {9}):
        c = f"smart_{i}_raw"
        src = c if c in present else "NULL"
        proj.append(f"CAST({src} AS DOUBLE) AS {c}")
        nn = f"{c} IS NOT NULL"
        agg += [
            f"arg_max({c}, date) FILTER (WHERE {nn} AND date >= DATE '{lo}') AS {c}",
            f"arg_min({c}, date) FILTER (WHERE {nn} AND date >= DATE '{d7}') AS {c}__b7",
            f"arg_min({c}, date) FILTER (WHERE {nn} AND date >= DATE '{d30}') AS {c}__b30",
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
    WITH win AS (
        SELECT serial_number, date, model, capacity_bytes, failure, {", ".join(proj)}
        FROM lake WHERE date BETWEEN DATE '{read_from}' AND DATE '{s}'
    ),
    pop AS (SELECT DISTINCT serial_number FROM win WHERE date = DATE '{s}'),
    agg AS (
        SELECT w.serial_number,
               arg_max(model, date) FILTER (WHERE date >= DATE '{lo}') AS model,
               arg_max(capacity_bytes, date) FILTER (WHERE date >= DATE '{lo}') AS capacity_bytes,
               {", ".join(agg)}
        FROM win w SEMI JOIN pop USING (serial_number)
        GROUP BY w.serial_number
    )
    SELECT serial_number, model, {vendor_sql("model")} AS vendor, capacity_bytes,
           DATE '{s}' AS snapshot_date,
           coalesce(smart_9_raw / 24.0, 'NaN'::DOUBLE) AS age_days,
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
    con = _con(con, prefix, root, smart_ids, _features_window(s, lookback)[1], s)
    present = set(lake.lake_columns(con))
    sql = _features_sql(s, lookback, smart_ids, present) + " ORDER BY serial_number"
    df = con.execute(sql).df()
    return _types(df)[feature_columns(smart_ids)]


def survival_sql(
    cutoff: date | str,
    lookback: int,
    present: set[str],
    *,
    end: date | str | None = None,
    smart_ids: Sequence[int] = DEFAULT_SMART_IDS,
) -> str:
    """The query behind :func:`survival_dataset` (columns in contract order, ``snapshot_date``
    a TIMESTAMP), for callers that keep the result in DuckDB or write it straight to Parquet."""
    s = _as_date(cutoff)
    end_sql = f"AND date <= DATE '{_as_date(end)}'" if end is not None else ""
    covariates = ", ".join(
        "CAST(snapshot_date AS TIMESTAMP) AS snapshot_date" if c == "snapshot_date" else c
        for c in feature_columns(smart_ids)
    )
    return f"""
    WITH feats AS ({_features_sql(s, lookback, smart_ids, present)}),
    failed_before AS (
        SELECT DISTINCT serial_number FROM lake WHERE failure = 1 AND date <= DATE '{s}'
    ),
    after AS (
        SELECT serial_number,
               min(date) FILTER (WHERE failure = 1) AS first_failure,
               max(date) AS last_seen
        FROM lake WHERE date > DATE '{s}' {end_sql}
        GROUP BY serial_number
    ),
    outcome AS (
        SELECT f.*,
               CAST(coalesce(a.first_failure, a.last_seen) - DATE '{s}' AS BIGINT) AS duration_days,
               a.first_failure IS NOT NULL AS event
        FROM feats f
        JOIN after a USING (serial_number)
        ANTI JOIN failed_before b USING (serial_number)
    )
    SELECT {covariates}, duration_days, event,
           age_days AS entry_age_days, age_days + duration_days AS exit_age_days
    FROM outcome
    """


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
    sql = survival_sql(cutoff, lookback, present, end=end, smart_ids=smart_ids)
    return _types(con.execute(sql + " ORDER BY serial_number").df()).reset_index(drop=True)


def _types(df: pd.DataFrame) -> pd.DataFrame:
    df["snapshot_date"] = pd.to_datetime(df["snapshot_date"])
    for c in df.columns:
        if c.startswith("smart_") or c == "age_days":
            df[c] = df[c].astype("float64")
    if "duration_days" in df:
        df["duration_days"] = df["duration_days"].astype("int64")
        df["event"] = df["event"].astype(bool)
    return df
