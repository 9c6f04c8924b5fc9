"""Fleet-scale benchmark (not a test): a modern fleet through the real pipeline on the local stack.

    .venv/bin/python bench/fleet.py [--drives 300000] [--history 90] [--rsf] [--json out.json]

1. **history / backfill**: ``--history`` seeded synthetic days (``diskrisk.synth``, modern
   layout, 191 columns, failures and drive churn, wear onsets at the stationary rate so a year
   keeps its failure rate) are generated one at a time and landed with
   ``lake.process`` (one pass: raw upload, validation, zstd Parquet, manifest), then the first
   training: dataset → every default family → promote → score. With ``--history 365`` this is
   the year's backfill (b).
2. **the daily run** (a): the next day, through the same calls the DAG's tasks make, in the
   DAG's order: collect → build_lake → stats → drift → dataset → train (each default single
   family, ``--parallel`` at a time, then the ensemble from their stored fits) → promote →
   score (HBase).
3. **references, measured in the same run**: a bare ``pyarrow.csv`` parse of the new day (for
   ingest), the stats stage's figures from a scan of the whole lake (for its kept state), one
   DuckDB query with DuckDB's defaults for the survival table of one landmark over the same
   Parquet in S3 (for the dataset stage), one put per row to HBase on a subset, extrapolated
   (for scoring), and the survival table alone under the memory limit.
4. ``--rsf``: a random survival forest trained on the same tables (censored rows capped,
   ``--rsf-censored``) and its 300k-drive scoring (model call + HBase), the slowest family.

Every stage runs in its own spawned process, as an Airflow task does, so its peak RSS (VmHWM)
is its own; "io" is the bytes it read and wrote through read/write system calls (files,
pipes; /proc/self/io), "net" the bytes that crossed the loopback interface meanwhile (S3,
MLflow, HBase, PostgreSQL of the local stack, both directions counted once). Everything lives under throwaway names (lake prefix ``fleet-<id>/``, model
and experiment ``fleet-<id>``, HBase tables ``<namespace>_fleet<id>_*``), the lake and tables
removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from diskrisk.families import training_phases  # noqa: E402  (standard library only)
from ingest import _peak_rss_mib  # noqa: E402  (bench/ingest.py)
from scoring import one_put_per_row as naive_writer  # noqa: E402  (bench/scoring.py)
from scoring import synthetic_scores  # noqa: E402

START = date(2025, 1, 1)


# --- one stage = one process --------------------------------------------------------------------
def _proc_io() -> tuple[int, int]:
    fields = dict(
        line.split(": ") for line in Path("/proc/self/io").read_text().splitlines() if ": " in line
    )
    return int(fields["rchar"]), int(fields["wchar"])


def _child(target: Callable[..., Any], args: tuple[Any, ...], env: dict[str, str], q: Any) -> None:
    os.environ.update(env)
    r0, w0 = _proc_io()
    t0 = time.perf_counter()
    try:
        out, err = target(*args), None
    except Exception:  # reported in the table, the run goes on
        out, err = None, traceback.format_exc(limit=3)
    secs = time.perf_counter() - t0
    r1, w1 = _proc_io()
    q.put(
        {
            "secs": secs,
            "rss_mib": _peak_rss_mib(),
            "read_mb": (r1 - r0) / 1e6,
            "written_mb": (w1 - w0) / 1e6,
            "result": out,
            "error": err,
        }
    )


def _loopback_bytes() -> int:
    """Bytes received on the loopback interface: every S3, MLflow, HBase and PostgreSQL call of
    the local stack crosses it (socket traffic that /proc/self/io does not count)."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[0])
    return 0


class Bench:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.rows: list[dict[str, Any]] = []
        self.ctx = mp.get_context("spawn")

    def stage(self, part: str, name: str, target: Callable[..., Any], *args: Any) -> Any:
        return self.stages(part, [(name, target, *args)])[0]

    def stages(self, part: str, jobs: list[tuple[Any, ...]], parallel: int = 1) -> list[Any]:
        """``jobs`` of (name, target, *args), at most ``parallel`` at a time, as the executor
        runs the DAG's mapped tasks. Each keeps its own time and peak RSS; with more than one
        job the loopback bytes and the wall time go to a row for the whole batch."""
        lo, t0 = _loopback_bytes(), time.perf_counter()
        waiting, running, reports = list(enumerate(jobs)), [], {}
        while waiting or running:
            while waiting and len(running) < parallel:
                k, (_, target, *args) = waiting.pop(0)
                q = self.ctx.Queue()
                p = self.ctx.Process(target=_child, args=(target, tuple(args), self.env, q))
                p.start()
                running.append((k, p, q))
            for k, p, q in list(running):
                try:
                    reports[k] = q.get(timeout=0.2 if p.is_alive() else 2.0)
                except queue.Empty:
                    if p.is_alive():
                        continue
                    reports[k] = {  # killed before it could report (the OOM killer, say)
                        "secs": time.perf_counter() - t0, "rss_mib": float("nan"),
                        "read_mb": 0.0, "written_mb": 0.0, "result": None,
                        "error": f"the stage's process exited with code {p.exitcode}",
                    }  # fmt: skip
                p.join()
                running.remove((k, p, q))
        net = (_loopback_bytes() - lo) / 1e6
        for k, (name, *_) in enumerate(jobs):
            alone = {"net_mb": net} if len(jobs) == 1 else {"net_mb": float("nan"), "batched": True}
            self._row(part, name, reports[k] | alone)
        if len(jobs) > 1:
            wall = {"secs": time.perf_counter() - t0, "net_mb": net, "error": None}
            rss = max((r["rss_mib"] for r in reports.values() if r["rss_mib"] > 0), default=0.0)
            io = sum(r["read_mb"] + r["written_mb"] for r in reports.values())
            name = f"{len(jobs)} stages, {parallel} at a time (wall; max RSS, summed io)"
            self._row(part, name, wall | {"rss_mib": rss, "read_mb": io, "written_mb": 0.0})
        return [reports[k]["result"] for k in range(len(jobs))]

    def _row(self, part: str, name: str, rep: dict[str, Any]) -> None:
        row = {"part": part, "stage": name, **{k: v for k, v in rep.items() if k != "result"}}
        self.rows.append(row)
        status = "FAILED" if rep["error"] else ""
        print(
            f"  {part:<10} {name:<42} {rep['secs']:8.1f}s {rep['rss_mib']:8.0f} MiB "
            f"{rep['read_mb'] + rep['written_mb']:9.0f} MB io {rep['net_mb']:9.0f} MB net {status}",
            flush=True,
        )
        if rep["error"]:
            print(rep["error"], file=sys.stderr, flush=True)


# --- what the stages call (module-level: a spawned child imports them) -------------------------
def history(src: str, drives: int, days: int, seed: int, drop_raw: bool) -> dict[str, Any]:
    """Generate and land ``days`` days one at a time; writes day ``days + 1`` into ``src``.
    ``drop_raw``: once a day has landed, its raw object (every version) is deleted again."""
    from diskrisk import lake, layout, s3, synth
    from diskrisk.config import lake_prefix

    gen = synth.Generator("modern", drives, seed, wear_onset=synth.STATIONARY_WEAR_ONSET)
    t_gen = t_land = 0.0
    csv_mb = 0.0
    work = Path(src) / "history"
    for k, (day, table) in enumerate(gen.days(START, days + 1)):
        t = time.perf_counter()
        folder = work if k < days else Path(src)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{day.isoformat()}.csv"
        with path.open("wb") as fh:
            synth._write_csv(table, fh)
        t_gen += time.perf_counter() - t
        if k == days:
            break
        csv_mb += path.stat().st_size / 1e6
        t = time.perf_counter()
        summary = lake.process(path, prefix=lake_prefix())
        t_land += time.perf_counter() - t
        if summary.errors:
            raise RuntimeError(f"{day}: {summary.errors[0]}")
        if drop_raw:
            s3.purge(layout.raw(day, lake_prefix()))
        path.unlink()
        if (k + 1) % 10 == 0:
            print(f"    {k + 1}/{days} days landed ({t_land:.0f}s)", flush=True)
    return {"generate_s": t_gen, "land_s": t_land, "csv_mb": csv_mb}


def bare_parse(path: str) -> int:
    import pyarrow.csv as pacsv

    return pacsv.read_csv(path).num_rows


def whole_lake_stats() -> int:
    """The stats stage as it was before its state: every figure from a scan of the S3 lake."""
    from diskrisk import lake, stats
    from diskrisk.config import lake_prefix

    prefix = lake_prefix()
    figures = stats.compute(lake.connect(prefix), None, lake.null_counts(prefix))
    return int(figures["rows"])


def one_duckdb_query(cutoff: str, lookback: int) -> int:
    """The survival table of one landmark: the same single query over the same lake reader,
    with DuckDB's own defaults (no memory limit, no spilling, insertion order kept)."""
    from diskrisk import lake, survival
    from diskrisk.config import lake_prefix

    con = lake.connect(lake_prefix())
    for setting in ("memory_limit", "temp_directory", "preserve_insertion_order"):
        con.execute(f"RESET {setting}")
    return len(survival.survival_dataset(cutoff, lookback, con=con))


def survival_table(cutoff: str, lookback: int) -> dict[str, int]:
    from diskrisk import survival
    from diskrisk.config import lake_prefix

    df = survival.survival_dataset(cutoff, lookback, prefix=lake_prefix())
    return {"drives": len(df), "events": int(df["event"].sum())}


def train_family(family: str, ref: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One challenger, and the size of the model its run logged (what MLflow keeps, and every
    scorer loads, each time it is trained)."""
    from mlflow import MlflowClient

    from diskrisk import pipeline

    out = pipeline.train(family, ref, params)
    if out.get("run_id"):
        client, folders, size = MlflowClient(), ["model"], 0
        while folders:
            for f in client.list_artifacts(out["run_id"], folders.pop()):
                folders += [f.path] if f.is_dir else []
                size += f.file_size or 0
        out["model_mb"] = size / 1e6
    return out


def score_with(version: str, day: str) -> dict[str, Any]:
    """Score ``day`` with one registered version (not the champion): model call + HBase."""
    from diskrisk.config import TrainSettings, lake_prefix
    from diskrisk.registry import Registry
    from diskrisk.scoring import score_frame
    from diskrisk.sinks import HBaseSink
    from diskrisk.survival import snapshot_features

    reg = Registry.connect()
    predictor = reg.load(reg.client.get_model_version(reg.name, version))
    features = snapshot_features(day, TrainSettings().lookback_days, prefix=lake_prefix())
    t = time.perf_counter()
    scores = score_frame(features, predictor, day)
    t_model = time.perf_counter() - t
    t = time.perf_counter()
    HBaseSink().write(scores)
    return {"model_s": t_model, "hbase_s": time.perf_counter() - t, "rows": len(scores)}


def one_put_per_row(rows: int, day: str) -> dict[str, Any]:
    from diskrisk.sinks import HBaseSink

    sink = HBaseSink()
    sink.ensure_tables()
    t = time.perf_counter()
    naive_writer(sink, synthetic_scores(rows, day, prefix="P", seed=1))
    return {"rows": rows, "secs": time.perf_counter() - t}


def cleanup(keep_hbase: bool) -> None:
    """The lake prefix and the HBase tables; the registered model stays (the pipeline's
    identity may not delete models), under its throwaway name."""
    from diskrisk import s3
    from diskrisk.config import lake_prefix
    from diskrisk.sinks import HBaseSink

    s3.purge(lake_prefix())
    if not keep_hbase:
        HBaseSink().drop_tables()


# --- the run ---------------------------------------------------------------------------------------
def pipeline_call(name: str, *args: Any) -> Any:
    from diskrisk import pipeline

    return getattr(pipeline, name)(*args)


def training(
    b: Bench, part: str, families: list[str], parallel: int
) -> tuple[str | None, list[dict[str, Any]]]:
    ref = b.stage(part, "dataset (landmarks + out-of-time splits)", pipeline_call, "dataset")
    if ref is None:
        return None, []
    results = []
    for phase in training_phases(families).values():  # as the DAG: the ensemble last
        if phase:
            results += b.stages(
                part, [(f"train {f}", train_family, f, ref) for f in phase], parallel
            )
    ok = [r for r in results if r and "error" not in r]
    sizes = [r.pop("model_mb", float("nan")) for r in ok]  # promote takes Challenger fields only
    for r, mb in zip(ok, sizes, strict=True):
        print(f"    {r['family']}: version {r['version']}, model {mb:.1f} MB")
    if ok:
        b.stage(part, "promote", pipeline_call, "promote", ok, ref)
    return ref, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=300_000)
    ap.add_argument("--history", type=int, default=90, help="days landed before the daily run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--families", help="comma-separated challengers (default: DISKRISK_TRAIN_FAMILIES)"
    )
    ap.add_argument(
        "--parallel",
        type=int,
        default=4,
        help="families trained at a time (the deployments' AIRFLOW__CORE__PARALLELISM: 4)",
    )
    ap.add_argument("--rsf", action="store_true", help="also train and score a forest (slow)")
    ap.add_argument("--rsf-censored", type=int, default=20_000)
    ap.add_argument("--baseline-rows", type=int, default=10_000)
    ap.add_argument("--json", type=Path, help="write the stage rows here")
    ap.add_argument("--keep", action="store_true", help="keep the lake, model and tables")
    ap.add_argument(
        "--reuse",
        metavar="TAG",
        help="the names of a kept run (fleet-TAG): its lake is the history, not landed again",
    )
    ap.add_argument("--src", help="with --reuse: the folder holding the new day's CSV")
    ap.add_argument(
        "--drop-raw",
        action="store_true",
        help="delete each history day's raw CSV once landed (a year of raw is ~75 GB)",
    )
    ap.add_argument(
        "--backfill-only", action="store_true", help="stop after the history's training (b)"
    )
    args = ap.parse_args()
    if args.reuse and not args.src:
        ap.error("--reuse needs --src, the folder with the new day's CSV (kept by --keep)")

    from diskrisk.config import HBaseSettings, TrainSettings, load

    tag = args.reuse or uuid.uuid4().hex[:6]
    env = {
        "DISKRISK_LAKE_PREFIX": f"fleet-{tag}/",
        "DISKRISK_MODEL_NAME": f"fleet-{tag}",
        "DISKRISK_EXPERIMENT": f"fleet-{tag}",
        "DISKRISK_HBASE_NAMESPACE": f"{load(HBaseSettings).namespace}_fleet{tag}",
    }
    families = args.families.split(",") if args.families else list(TrainSettings().families)
    lookback = TrainSettings().lookback_days
    b = Bench(env)
    src = args.src or tempfile.mkdtemp(prefix="diskrisk-fleet-")
    new_day = (START + timedelta(days=args.history)).isoformat()
    print(
        f"fleet {args.drives:,} drives, {args.history} days of history, then {new_day}; "
        f"families {families}; {os.cpu_count()} CPUs; names fleet-{tag}",
        flush=True,
    )
    t_all = time.perf_counter()
    try:
        hist = None if args.reuse else b.stage(
            "history", f"generate + land {args.history} days", history, src, args.drives,
            args.history, args.seed, args.drop_raw,
        )  # fmt: skip
        if hist:
            print(f"    generate {hist['generate_s']:.0f}s, land {hist['land_s']:.0f}s "
                  f"({hist['csv_mb'] / 1e3:.1f} GB CSV)", flush=True)  # fmt: skip
        b.stage("history", "stats (state of every day)", pipeline_call, "stats")
        training(b, "history", families, args.parallel)
        b.stage("history", "score (champion, HBase)", pipeline_call, "score")
        daily = float("nan")
        if not args.backfill_only:
            daily = daily_run(b, args, src, new_day, families, lookback)
        report(b.rows, args, daily, time.perf_counter() - t_all)
        if args.json:
            args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                             "daily_s": daily, "rows": b.rows}, indent=1))  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(src, ignore_errors=True)
            b.stage("cleanup", "drop lake prefix and HBase tables", cleanup, False)
    return 0


def daily_run(
    b: Bench, args: argparse.Namespace, src: str, new_day: str, families: list[str], lookback: int
) -> float:
    """(a): the next day through the DAG's calls, then the references; its seconds."""
    part = "daily"
    day_csv = str(Path(src) / f"{new_day}.csv")
    t_day = time.perf_counter()
    collected = b.stage(part, "collect (raw upload)", pipeline_call, "collect", src, new_day,
                        new_day)  # fmt: skip
    b.stage(part, "build_lake (validate, Parquet)", pipeline_call, "build_lake", collected)
    b.stage(part, "stats", pipeline_call, "stats")
    b.stage(part, "drift", pipeline_call, "drift")
    training(b, part, families, args.parallel)
    b.stage(part, "score (champion, HBase)", pipeline_call, "score")
    daily = time.perf_counter() - t_day

    ref = "reference"
    b.stage(ref, "bare pyarrow.csv parse of the day", bare_parse, day_csv)
    b.stage(ref, "stats, the whole lake at once (no state)", whole_lake_stats)
    cutoff = (START + timedelta(days=args.history - 30)).isoformat()
    b.stage(ref, f"survival table at {cutoff}, memory limit", survival_table, cutoff, lookback)
    b.stage(ref, "same, one DuckDB query, defaults", one_duckdb_query, cutoff, lookback)
    b.stage(ref, f"one put per row x{args.baseline_rows:,}", one_put_per_row,
            args.baseline_rows, new_day)  # fmt: skip
    if args.rsf:
        ref_json = b.stage("rsf", "dataset (again: same key)", pipeline_call, "dataset")
        rsf = b.stage("rsf", "train rsf", train_family, "rsf", ref_json,
                      {"max_censored_rows": args.rsf_censored})  # fmt: skip
        if rsf and rsf.get("version"):
            split = b.stage("rsf", "score rsf (model + HBase)", score_with,
                            str(rsf["version"]), new_day)  # fmt: skip
            print(f"    rsf scoring: {split}", flush=True)
    return daily


def report(
    rows: list[dict[str, Any]], args: argparse.Namespace, daily: float, total: float
) -> None:
    def secs(part: str, prefix: str) -> float:
        return sum(r["secs"] for r in rows if r["part"] == part and r["stage"].startswith(prefix))

    print("\n| part | stage | s | peak RSS MiB | io MB | net MB |\n|---|---|---:|---:|---:|---:|")
    for r in rows:
        flag = " (failed)" if r["error"] else ""
        print(
            f"| {r['part']} | {r['stage']}{flag} | {r['secs']:.1f} | {r['rss_mib']:.0f} | "
            f"{r['read_mb'] + r['written_mb']:.0f} | {r.get('net_mb', float('nan')):.0f} |"
        )
    ingest = secs("daily", "collect") + secs("daily", "build_lake")
    parse = secs("reference", "bare")
    table, one_query = secs("reference", "survival"), secs("reference", "same")
    naive = secs("reference", "one put") * args.drives / args.baseline_rows
    score = secs("daily", "score")
    no_training = sum(
        secs("daily", s) for s in ("collect", "build_lake", "stats", "drift", "score")
    )
    print(
        f"\ndaily run without drift (the DAG scores, no training): {no_training:.0f}s; "
        f"with retraining: {daily:.0f}s end to end; backfill part: "
        f"{sum(r['secs'] for r in rows if r['part'] == 'history' and not r.get('batched')):.0f}s; bench total {total:.0f}s"
    )
    if args.backfill_only:
        return
    print(f"ingest (collect + build_lake) / bare parse: {ingest / parse:.1f}x")
    print(f"stats from a scan of the whole lake / the daily stats: "
          f"{secs('reference', 'stats') / secs('daily', 'stats'):.1f}x")  # fmt: skip
    print(f"survival table / one DuckDB query (defaults): {table / one_query:.2f}x")
    print(
        f"dataset stage / one DuckDB query: {secs('daily', 'dataset') / one_query:.1f}x "
        f"(it runs one query per landmark and split)"
    )
    print(f"one put per row (extrapolated {naive:.0f}s) / score stage: {naive / score:.1f}x")


if __name__ == "__main__":
    raise SystemExit(main())
