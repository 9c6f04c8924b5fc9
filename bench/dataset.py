"""Benchmark of the dataset stage's tables (not a test): a long history of a big fleet.

    .venv/bin/python bench/dataset.py [--drives 300000] [--days 365] [--lake DIR] [--reference]
        [--fit coxph ...] [--score]

1. **the lake**: ``--days`` seeded modern days (``diskrisk.synth``, wear onset at the
   stationary rate, as ``bench/fleet.py`` lands them) holding the columns the survival queries
   read (``survival.source_columns``), one Parquet file per day: what the dataset stage reads,
   since it reads local copies of those columns (``lake.mirror``), not the S3 lake. Written
   once into ``--lake`` and reused by the next run with the same size.
2. **the stage**: ``oot.write_tables`` with the dataset stage's settings (``TrainSettings``:
   landmarks every 7 days, two rolling origins, 30-day look-back, follow-up up to 90 days,
   the censored-row cap) under ``DISKRISK_DUCKDB_MEMORY_LIMIT``, in its own process: time,
   peak RSS (VmHWM), bytes read and written (DuckDB's spilling included).
3. **references in the same run**: one landmark's survival table as one DuckDB query with
   DuckDB's defaults; with ``--reference``, the tables built the way ``write_tables`` did
   before outcomes came first (every landmark's whole survival table stacked, then sampled),
   and a check that both hold the same training rows and weights.
4. ``--fit``: each family fitted on the training table, in its own process (the training
   stage's memory grows with the table's rows); with ``--score``, the newest day's drives
   scored by it (features and model call, no HBase: how scoring's memory grows with drives).
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fleet import START, Bench  # noqa: E402  (bench/fleet.py)


def write_lake(root: str, drives: int, days: int, seed: int) -> dict[str, Any]:
    """The survival columns of ``days`` seeded days, ``root/date=YYYY-MM-DD/part-0.parquet``."""
    import pyarrow.parquet as pq

    from diskrisk import survival, synth

    gen = synth.Generator("modern", drives, seed, wear_onset=synth.STATIONARY_WEAR_ONSET)
    cols = survival.source_columns()
    rows = failures = 0
    for k, (day, table) in enumerate(gen.days(START, days)):
        folder = Path(root) / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.select(cols), folder / "part-0.parquet", compression="zstd")
        rows += table.num_rows
        failures += int(table["failure"].to_numpy().sum())
        if (k + 1) % 30 == 0:
            print(f"    {k + 1}/{days} days written", flush=True)
    (Path(root) / "_complete").write_text(f"{drives} {days} {seed}\n")
    return {"rows": rows, "failures": failures}


def _inputs(root: str) -> tuple[Any, Any, str]:
    from diskrisk import dataset, lake

    con = lake.connect(root=root)
    days = sorted(str(r[0]) for r in con.execute("SELECT DISTINCT date FROM lake").fetchall())
    return con, dataset.training_plan(days), days[-1]


def _settings() -> dict[str, Any]:
    from diskrisk.config import TrainSettings
    from diskrisk.models import HORIZONS

    t = TrainSettings()
    return {
        "lookback": t.lookback_days,
        "followup_days": int(max(HORIZONS)),
        "sampling": t.sampling(),
    }


def tables(root: str, out: str) -> dict[str, Any]:
    """The dataset stage's call: ``oot.write_tables`` as ``dataset.prepare_dataset`` makes it."""
    from diskrisk import oot

    con, p, end = _inputs(root)
    s = _settings()
    t = oot.write_tables(
        con, p, end, s["lookback"], Path(out), followup_days=s["followup_days"], **s["sampling"]
    )
    return {
        "landmarks": len(oot.training_landmarks(p, end)),
        "rows": t.rows,
        "events": t.events,
        "population_rows": t.population_rows,
        "weight": t.censored_weight,
        "failure_weight": t.failure_weight,
        "test_events": t.holdout_events,
    }


def stacked_then_sampled(root: str, out: str) -> dict[str, Any]:
    """The training table built as before: every landmark's whole survival table (covariates
    of every drive at risk), stacked, then sampled."""
    from diskrisk import lake, oot, survival

    con, p, end = _inputs(root)
    s = _settings()
    present = set(lake.lake_columns(con))
    marks = oot.training_landmarks(p, end, s["followup_days"])
    con.execute(f"CREATE TEMP TABLE first_failure AS {survival.first_failure_sql(end)}")
    sqls = []
    for k, mark in enumerate(marks):
        survival.outcome_table(con, f"outcome_{k}", [mark], failures="first_failure")
        sqls.append(survival.rows_sql(f"outcome_{k}", mark[0], mark[0], s["lookback"], present))
    oot.stack(con, "stacked", sqls)
    counts = oot.event_counts(con, "stacked")
    kept = oot.sample("stacked", counts, **s["sampling"])
    con.execute(f"COPY ({kept.sql}) TO '{out}/train.parquet' (FORMAT parquet)")
    return {
        "population_rows": sum(counts),
        "events": kept.failures,
        "weight": kept.censored_weight,
        "failure_weight": kept.failure_weight,
    }


def fit(train: str, family: str, save: str) -> int:
    """One family fitted on the stage's training table, as the training stage fits it."""
    import pandas as pd

    from diskrisk.models import make_model

    df = pd.read_parquet(train)
    Path(save).write_bytes(pickle.dumps(make_model(family).fit(df)))
    return len(df)


def score(root: str, model: str) -> int:
    """The score stage's work in its process, but the HBase write: the newest day's features
    of every drive seen (one DuckDB query) and the model's risk and survival at the horizons."""
    from diskrisk import lake, survival
    from diskrisk.config import TrainSettings

    con = lake.connect(root=root)
    day = con.execute("SELECT max(date) FROM lake").fetchone()[0]
    features = survival.snapshot_features(day, TrainSettings().lookback_days, con=con)
    pickle.loads(Path(model).read_bytes()).predict_risk_and_survival(features)
    return len(features)


def one_query(root: str, cutoff: str, lookback: int) -> int:
    """One landmark's survival table, one query, DuckDB's defaults (no limit, no spilling)."""
    from diskrisk import lake, survival

    con = lake.connect(root=root)
    for setting in ("memory_limit", "temp_directory", "preserve_insertion_order"):
        con.execute(f"RESET {setting}")
    return len(survival.survival_dataset(cutoff, lookback, con=con))


def same_rows(a: Path, b: Path) -> int:
    """Rows in one training table and not in the other (both ways; 0 = the same table)."""
    import duckdb

    q = "SELECT count(*) FROM (SELECT * FROM '{}' EXCEPT ALL SELECT * FROM '{}')"
    con = duckdb.connect()
    return sum(con.execute(q.format(x, y)).fetchone()[0] for x, y in ((a, b), (b, a)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=300_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lake", type=Path, help="the lake's folder (kept; default: a temp folder)")
    ap.add_argument("--reference", action="store_true", help="also build the tables as before")
    ap.add_argument("--fit", nargs="*", default=[], help="families fitted on the training table")
    ap.add_argument("--score", action="store_true", help="with --fit: score the newest day")
    args = ap.parse_args()

    root = args.lake or Path(tempfile.mkdtemp(prefix="diskrisk-dataset-lake-"))
    stamp = f"{args.drives} {args.days} {args.seed}\n"
    env = {k: v for k, v in os.environ.items() if k.startswith("DISKRISK_")}
    b = Bench(env)
    print(f"dataset stage: {args.drives:,} drives x {args.days} days, {os.cpu_count()} CPUs; "
          f"lake {root}", flush=True)  # fmt: skip
    marker = root / "_complete"
    if not (marker.exists() and marker.read_text() == stamp):
        b.stage("lake", f"generate + write {args.days} days", write_lake, str(root),
                args.drives, args.days, args.seed)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="diskrisk-dataset-out-") as out:
        new, old = Path(out) / "new", Path(out) / "old"
        new.mkdir(), old.mkdir()
        got = b.stage("stage", "oot.write_tables (outcomes first)", tables, str(root), str(new))
        print(f"    {got}", flush=True)
        for family in args.fit:
            model = str(Path(out) / f"{family}.pkl")
            b.stage("train", f"fit {family}", fit, str(new / "train.parquet"), family, model)
            if args.score:
                n = b.stage("score", f"features + {family} (no HBase)", score, str(root), model)
                print(f"    {n:,} drives scored", flush=True)
        cutoff = (START + timedelta(days=args.days - 31)).isoformat()
        lookback = _settings()["lookback"]
        b.stage("reference", f"one landmark ({cutoff}), one query, defaults", one_query,
                str(root), cutoff, lookback)  # fmt: skip
        if args.reference:
            ref = b.stage("reference", "stacked whole landmarks, then sampled",
                          stacked_then_sampled, str(root), str(old))  # fmt: skip
            print(f"    {ref}", flush=True)
            if got and ref:
                diff = same_rows(new / "train.parquet", old / "train.parquet")
                print(f"    training tables differ in {diff} rows", flush=True)
    print("\n| part | stage | s | peak RSS MiB | io MB |\n|---|---|---:|---:|---:|")
    for r in b.rows:
        flag = " (failed)" if r["error"] else ""
        print(f"| {r['part']} | {r['stage']}{flag} | {r['secs']:.1f} | {r['rss_mib']:.0f} | "
              f"{r['read_mb'] + r['written_mb']:.0f} |")  # fmt: skip

    def secs(prefix: str) -> float:
        return sum(r["secs"] for r in b.rows if r["stage"].startswith(prefix))

    stage = secs("oot.write_tables")
    print(f"\nstage / one landmark's query: {stage / secs('one landmark'):.1f}x")
    if args.reference:
        print(f"stacked-then-sampled / stage: {secs('stacked') / stage:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
