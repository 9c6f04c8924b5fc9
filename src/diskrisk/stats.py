"""``diskrisk stats``: descriptive statistics of the lake, computed by duckdb SQL.

Why SQL: the lake can hold hundreds of millions of rows; every figure here is an aggregate, so
duckdb scans the Parquet partitions (projection + streaming) and only small results reach
Python. Nothing loads the lake into pandas.

Why a state: every figure is computed from two small tables (per drive, and per day and
model) that merge by sums, minima and maxima (:func:`fold`). They are kept beside the
partitions (``lake/_stats/``) with the digests of the days they hold, so a daily run reads its
new day, not the whole lake (:func:`incremental`).

Definitions (all over the whole lake):

* ``observed_lifetime_days`` of a drive = last day seen - first day seen + 1 (mean/max);
* ``age_at_first_seen_days`` = ``smart_9_raw / 24`` on the drive's first day with a known age;
* **left-truncated drive**: a drive whose power-on age at its first observation is more than
  one day (``smart_9_raw > 24``), i.e. its life began before we could observe it, so survival
  analyses must use delayed entry. Reported as ``left_truncated_share`` (over drives with a
  known age) together with ``late_entry_share``: drives first seen after the first lake day;
* ``failure_rate`` = failed drives / drives; ``survival_rate`` = 1 - failure_rate;
  ``annualized_failure_rate`` = failures / drive-days * 365 (Backblaze's AFR, as a fraction);
* ``drives_failed_more_than_once`` = serials with more than one ``failure = 1`` row;
* ``mean_days_between_observations`` = mean over drives with 2+ rows of
  (last - first) / (rows - 1) (1.0 when every drive reports daily);
* ``na_rate`` per column = share of null cells (from the Parquet footers' null counts, so
  only the handful of columns above are scanned).

Per-day dynamics (drives, failures, new and vanished drives, mean age) are plotted as PNGs.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from diskrisk import lake, layout, s3


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    row = cur.fetchone()
    return dict(zip(names, row, strict=True)) if row else {}


def _jsonable(v: Any) -> Any:
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float) and v != v:  # NaN
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


DRIVES, DAYS = "drives", "days"  # the state's tables: per (serial, model) and per (date, model)


def _create_state(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {DRIVES} (serial_number VARCHAR, model VARCHAR,
            n_obs BIGINT, first_seen DATE, last_seen DATE, failures BIGINT,
            age_first DOUBLE, age_date DATE)"""
    )
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {DAYS} (date DATE, model VARCHAR, rows BIGINT,
            failures BIGINT, age_hours DOUBLE, aged BIGINT)"""
    )


def fold(con: duckdb.DuckDBPyConnection, days: Sequence[str] | None = None) -> None:
    """Add the ``lake`` view's rows (of ``days`` only, when given) to the state tables.

    The state is what every figure here is computed from: per drive (serial and model) its
    count of rows, first and last day, failures and age on the first day with a known age (and
    that day, so two states merge exactly); per day and model its rows, failures and summed
    age. Both merge by min/max/sum, so days fold in any order and a daily run reads one day."""
    _create_state(con)
    cols = set(lake.lake_columns(con))
    hours = "smart_9_raw" if "smart_9_raw" in cols else "CAST(NULL AS DOUBLE)"
    model = "model" if "model" in cols else "CAST(NULL AS VARCHAR)"
    where = "TRUE"
    if days is not None:
        where = "date IN (" + ", ".join(f"DATE '{d}'" for d in days) + ")" if days else "FALSE"
    con.execute(
        f"""
        INSERT INTO {DAYS}
        SELECT date, {model}, count(*), sum(failure), sum({hours}), count({hours})
        FROM lake WHERE {where} GROUP BY ALL
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE {DRIVES} AS
        SELECT serial_number, model, sum(n_obs)::BIGINT AS n_obs, min(first_seen) AS first_seen,
               max(last_seen) AS last_seen, sum(failures)::BIGINT AS failures,
               arg_min(age_first, age_date) AS age_first, min(age_date) AS age_date
        FROM (
            SELECT * FROM {DRIVES}
            UNION ALL
            SELECT serial_number, {model}, count(*), min(date), max(date), sum(failure),
                   arg_min({hours} / 24.0, date), min(date) FILTER (WHERE {hours} IS NOT NULL)
            FROM lake WHERE {where} GROUP BY ALL
        ) GROUP BY serial_number, model
        """
    )


def _per_drive(con: duckdb.DuckDBPyConnection) -> None:
    """The view ``per_drive`` (one row per serial) over the state, folding the whole ``lake``
    view first when the connection holds no state."""
    if not con.execute("SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [DRIVES]).fetchone():
        fold(con)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW per_drive AS
        SELECT serial_number, sum(n_obs) AS n_obs, min(first_seen) AS first_seen,
               max(last_seen) AS last_seen, sum(failures) AS failures,
               arg_min(age_first, age_date) AS age_first
        FROM {DRIVES} GROUP BY serial_number
        """
    )


def compute(
    con: duckdb.DuckDBPyConnection,
    size_bytes: int | None = None,
    nulls: tuple[int, dict[str, int | None]] | None = None,
    scan: Callable[[], duckdb.DuckDBPyConnection] | None = None,
) -> dict[str, Any]:
    """Static statistics of the state (see the module docstring for definitions).

    ``nulls``: (rows, null cells per column) from the Parquet footers
    (:func:`diskrisk.lake.null_counts`); the columns it does not know are counted by a scan of
    the ``lake`` view (of ``scan()``'s connection, when given). Without it every column of
    ``con``'s ``lake`` view is scanned, which at a modern width is most of the lake's bytes.
    """
    _per_drive(con)
    out = _one(
        con,
        f"""
        SELECT (SELECT sum(rows) FROM {DAYS}) AS rows,
               count(*) AS drives,
               min(first_seen) AS first_date,
               max(last_seen) AS last_date,
               avg(last_seen - first_seen + 1) AS mean_observed_lifetime_days,
               max(last_seen - first_seen + 1) AS max_observed_lifetime_days,
               sum(failures) AS failures,
               count(*) FILTER (WHERE failures > 0) AS failed_drives,
               count(*) FILTER (WHERE failures > 1) AS drives_failed_more_than_once,
               avg(CASE WHEN age_first IS NOT NULL THEN (age_first > 1)::INT END)
                   AS left_truncated_share,
               avg((first_seen > (SELECT min(first_seen) FROM per_drive))::INT)
                   AS late_entry_share,
               avg(age_first) AS mean_age_at_first_seen_days,
               avg(CASE WHEN n_obs > 1 THEN (last_seen - first_seen) / (n_obs - 1) END)
                   AS mean_days_between_observations,
               sum(n_obs) AS drive_days
        FROM per_drive
        """,
    )
    days = _one(
        con,
        "SELECT count(*) AS days, avg(n) AS mean_obs_per_day, min(n) AS min_obs_per_day, "
        f"max(n) AS max_obs_per_day FROM (SELECT date, sum(rows) n FROM {DAYS} GROUP BY date)",
    )
    out |= days
    drives = out["drives"] or 0
    out["failure_rate"] = (out["failed_drives"] / drives) if drives else None
    out["survival_rate"] = (1 - out["failure_rate"]) if drives else None
    out["annualized_failure_rate"] = (
        out["failures"] / out["drive_days"] * 365 if out["drive_days"] else None
    )
    out = {k: _jsonable(v) for k, v in out.items()}
    out["na_rate"] = na_rates(nulls, scan or (lambda: con))
    out["size_bytes"] = size_bytes
    return out


def na_rates(
    nulls: tuple[int, dict[str, int | None]] | None,
    scan: Callable[[], duckdb.DuckDBPyConnection],
) -> dict[str, float | None]:
    """Share of null cells per column: from the footers' counts where known, else by scanning
    the ``lake`` view of ``scan()`` (opened only when some count is unknown)."""
    rows, known = nulls or (0, {})
    con = None if known and all(v is not None for v in known.values()) else scan()
    cols = list(known) if con is None else lake.lake_columns(con)
    unknown = [c for c in cols if known.get(c) is None]
    na = ", ".join(f'1 - count("{c}") / count(*) AS "{c}"' for c in unknown)
    scanned = _one(con, f"SELECT {na} FROM lake") if con is not None and unknown else {}
    return {
        c: _jsonable(scanned[c]) if c in scanned else (known[c] / rows if rows else None)  # type: ignore[operator]
        for c in cols
    }


def daily(con: duckdb.DuckDBPyConnection):
    """Per-day dynamics as a small DataFrame (one row per day)."""
    _per_drive(con)
    return con.execute(
        f"""
        WITH d AS (
            SELECT date, sum(rows) AS drives, sum(failures) AS failures,
                   sum(age_hours) / nullif(sum(aged), 0) / 24.0 AS mean_age_days
            FROM {DAYS} GROUP BY date
        ),
        new AS (SELECT first_seen AS date, count(*) AS new_drives FROM per_drive GROUP BY 1),
        gone AS (SELECT last_seen AS date, count(*) AS last_seen_drives FROM per_drive GROUP BY 1)
        SELECT d.*, coalesce(new_drives, 0) AS new_drives,
               coalesce(last_seen_drives, 0) AS last_seen_drives
        FROM d LEFT JOIN new USING (date) LEFT JOIN gone USING (date)
        ORDER BY date
        """
    ).df()


def plot(df, out_dir: Path) -> list[Path]:
    """PNG plots of the per-day dynamics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    panels = [
        ("drives_per_day.png", ["drives"], "drives observed"),
        ("failures_per_day.png", ["failures"], "failures"),
        ("churn_per_day.png", ["new_drives", "last_seen_drives"], "drives first / last seen"),
        ("mean_age_per_day.png", ["mean_age_days"], "mean age (days)"),
    ]
    for name, ys, title in panels:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for y in ys:
            ax.plot(df["date"], df[y].astype(float), marker=".", label=y)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(ys) > 1:
            ax.legend()
        fig.autofmt_xdate()
        fig.tight_layout()
        p = out_dir / name
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths


def lake_size(prefix: str = "") -> int:
    """Total bytes of the Parquet partitions in S3."""
    total = 0
    for page in (
        s3.client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=s3.bucket(), Prefix=layout.lake_partitions(prefix))
    ):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total


def failure_curves(con: duckdb.DuckDBPyConnection, models: int = 8) -> dict[str, Any]:
    """Cumulative failures per 100 drives by day for the ``models`` largest drive models: the
    fleet's failure curves the operator page draws (denominator: the model's mean daily
    population over the window)."""
    _per_drive(con)
    rows = con.execute(
        f"""
        WITH top AS (
            SELECT model FROM {DRIVES} GROUP BY model
            ORDER BY count(DISTINCT serial_number) DESC, model LIMIT {int(models)}
        ),
        d AS (
            SELECT model, date, sum(rows) AS drives, sum(failures) AS failures
            FROM {DAYS} WHERE model IN (SELECT model FROM top) GROUP BY model, date
        )
        SELECT model, date,
               100.0 * sum(failures) OVER (PARTITION BY model ORDER BY date)
                     / avg(drives) OVER (PARTITION BY model) AS per_100
        FROM d ORDER BY model, date
        """
    ).fetchall()
    curves: dict[str, list[dict[str, Any]]] = {}
    for model, day, per_100 in rows:
        curves.setdefault(str(model), []).append(
            {"date": str(day)[:10], "failures_per_100": round(float(per_100), 6)}
        )
    return {"curves": curves}


# --- the state in S3 ----------------------------------------------------------------------------
_FOLDED = b"diskrisk.folded"  # Parquet metadata of each state table: {day: its Parquet sha256}


def _load_state(prefix: str) -> tuple[dict[str, str], dict[str, pa.Table]] | None:
    """The stored state, or None when absent or torn (its two tables fold different days)."""
    tables, folded = {}, []
    for name in (DRIVES, DAYS):
        body = s3.get_bytes(layout.stats_state(name, prefix))
        if body is None:
            return None
        tables[name] = pq.read_table(io.BytesIO(body))
        folded.append(json.loads((tables[name].schema.metadata or {}).get(_FOLDED, b"null")))
    return (folded[0], tables) if folded[0] is not None and folded[0] == folded[1] else None


def _save_state(con: duckdb.DuckDBPyConnection, folded: dict[str, str], prefix: str) -> None:
    meta = {_FOLDED: json.dumps(folded, sort_keys=True).encode()}
    for name in (DRIVES, DAYS):
        table = con.sql(f"SELECT * FROM {name} ORDER BY ALL").to_arrow_table()
        s3.put_if_changed(
            layout.stats_state(name, prefix),
            lake.parquet_bytes(table.replace_schema_metadata(meta)),
            "application/vnd.apache.parquet",
        )


def incremental(prefix: str = "") -> tuple[duckdb.DuckDBPyConnection, dict[str, Any]]:
    """A connection holding the state of every landed day: the stored state plus the days
    landed since (read from local copies of their columns, :func:`diskrisk.lake.mirror`),
    stored again. A day re-landed with new bytes, or removed, rebuilds the state from the
    whole lake, since a minimum cannot be taken back."""
    from diskrisk import survival

    landed = {
        d: e.get("parquet_sha256") or "" for d, e in lake.read_manifest(prefix)["days"].items()
    }
    stored = _load_state(prefix)
    if stored is not None and any(landed.get(d) != sha for d, sha in stored[0].items()):
        stored = None  # a folded day was re-landed or removed
    folded = stored[0] if stored is not None else {}
    new = sorted(set(landed) - set(folded))
    if new:  # the columns the dataset stage copies too, so they are fetched once per worker
        con = lake.connect(
            prefix,
            columns=survival.source_columns(),
            since=date.fromisoformat(new[0]),
            until=date.fromisoformat(new[-1]),
        )
    else:
        con = lake.bounded_duckdb()
    _create_state(con)
    if stored is not None:
        for name, table in stored[1].items():
            con.register("_stored", table)
            con.execute(f"INSERT INTO {name} SELECT * FROM _stored")
            con.unregister("_stored")
    if new:
        fold(con, new if folded else None)
    _save_state(con, landed, prefix)
    return con, {"days_folded": len(new), "whole_lake": stored is None}


def run(
    out_dir: str | Path = "reports/stats",
    *,
    prefix: str = "",
    root: str | Path | None = None,
    upload: bool = True,
) -> dict[str, Any]:
    """Compute stats + plots, write them to ``out_dir`` and (S3 lake) to ``reports/stats/``.
    An S3 lake's state is kept (:func:`incremental`); a local lake is read whole."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if root is not None:
        con = lake.connect(prefix, root)
        size = sum(p.stat().st_size for p in Path(root).glob("date=*/*.parquet"))
        stats = compute(con, size, lake.null_counts(prefix, root))
    else:
        con, folding = incremental(prefix)
        stats = compute(
            con, lake_size(prefix), lake.null_counts(prefix), lambda: lake.connect(prefix)
        )
        stats["state"] = folding
    pngs = plot(daily(con), out)
    jpath = out / "stats.json"
    jpath.write_text(json.dumps(stats, indent=1))
    curves = out / "failure_curves.json"
    curves.write_text(json.dumps(failure_curves(con), indent=1))
    if upload and root is None:
        for p in [jpath, curves, *pngs]:
            ctype = "application/json" if p.suffix == ".json" else "image/png"
            s3.put_if_changed(layout.stats_report(p.name, prefix), p.read_bytes(), ctype)
    return stats
