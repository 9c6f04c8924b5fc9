"""``diskrisk stats``: descriptive statistics of the lake, computed by duckdb SQL.

Why SQL: the lake can hold hundreds of millions of rows; every figure here is an aggregate, so
duckdb scans the Parquet partitions (projection + streaming) and only small results reach
Python. Nothing loads the lake into pandas.

Definitions (all over the whole lake):

* ``observed_lifetime_days`` of a drive = last day seen - first day seen + 1 (mean/max);
* ``age_at_first_seen_days`` = ``smart_9_raw / 24`` on the drive's first day;
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

import json
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

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


def _per_drive(con: duckdb.DuckDBPyConnection, cols: list[str]) -> None:
    """The temp table ``per_drive`` (one row per serial), made once per connection: both the
    statistics and the per-day churn aggregate it."""
    age = "smart_9_raw / 24.0" if "smart_9_raw" in cols else "CAST(NULL AS DOUBLE)"
    con.execute(
        f"""
        CREATE TEMP TABLE IF NOT EXISTS per_drive AS
        SELECT serial_number,
               count(*) AS n_obs,
               min(date) AS first_seen,
               max(date) AS last_seen,
               sum(failure) AS failures,
               arg_min({age}, date) AS age_first
        FROM lake GROUP BY serial_number
        """
    )


def compute(
    con: duckdb.DuckDBPyConnection,
    size_bytes: int | None = None,
    nulls: tuple[int, dict[str, int | None]] | None = None,
) -> dict[str, Any]:
    """Static statistics of the ``lake`` view (see the module docstring for definitions).

    ``nulls``: (rows, null cells per column) from the Parquet footers
    (:func:`diskrisk.lake.null_counts`); the columns it does not know are counted by a scan.
    Without it every column is scanned, which at a modern width is most of the lake's bytes.
    """
    cols = lake.lake_columns(con)
    _per_drive(con, cols)
    out = _one(
        con,
        """
        SELECT (SELECT count(*) FROM lake) AS rows,
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
        "max(n) AS max_obs_per_day FROM (SELECT date, count(*) n FROM lake GROUP BY date)",
    )
    out |= days
    drives = out["drives"] or 0
    out["failure_rate"] = (out["failed_drives"] / drives) if drives else None
    out["survival_rate"] = (1 - out["failure_rate"]) if drives else None
    out["annualized_failure_rate"] = (
        out["failures"] / out["drive_days"] * 365 if out["drive_days"] else None
    )
    rows, known = nulls or (0, {})
    scan = [c for c in cols if known.get(c) is None]
    na = ", ".join(f'1 - count("{c}") / count(*) AS "{c}"' for c in scan)
    scanned = _one(con, f"SELECT {na} FROM lake") if scan else {}
    out["na_rate"] = {
        c: _jsonable(scanned[c]) if c in scanned else (known[c] / rows if rows else None)  # type: ignore[operator]
        for c in cols
    }
    out["size_bytes"] = size_bytes
    return {k: (_jsonable(v) if k != "na_rate" else v) for k, v in out.items()}


def daily(con: duckdb.DuckDBPyConnection):
    """Per-day dynamics as a small DataFrame (one row per day)."""
    cols = lake.lake_columns(con)
    _per_drive(con, cols)
    age = "avg(smart_9_raw) / 24.0" if "smart_9_raw" in cols else "NULL"
    return con.execute(
        f"""
        WITH d AS (
            SELECT date, count(*) AS drives, sum(failure) AS failures, {age} AS mean_age_days
            FROM lake GROUP BY date
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
    rows = con.execute(
        f"""
        WITH top AS (
            SELECT model FROM lake GROUP BY model
            ORDER BY count(DISTINCT serial_number) DESC, model LIMIT {int(models)}
        ),
        d AS (
            SELECT model, date, count(*) AS drives, sum(failure) AS failures
            FROM lake WHERE model IN (SELECT model FROM top) GROUP BY model, date
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


def run(
    out_dir: str | Path = "reports/stats",
    *,
    prefix: str = "",
    root: str | Path | None = None,
    upload: bool = True,
) -> dict[str, Any]:
    """Compute stats + plots, write them to ``out_dir`` and (S3 lake) to ``reports/stats/``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    con = lake.connect(prefix, root)
    size = (
        sum(p.stat().st_size for p in Path(root).glob("date=*/*.parquet"))
        if root is not None
        else lake_size(prefix)
    )
    stats = compute(con, size, lake.null_counts(prefix, root))
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
