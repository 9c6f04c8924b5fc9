"""Benchmark of the data stage (not a test): ``python bench/ingest.py [--drives N --days D]``.

1. One modern-layout synthetic day (``--drives`` drives, 191 columns) → CSV on disk, then
   measured in the same run, best of ``--repeat`` (interleaved): bare ``pyarrow.csv`` parse,
   pandas ``read_csv`` + ``to_csv``, and diskrisk's path: ``lake.process``, one pass over the
   bytes (read once, validated, the raw upload with its sha256 running while the Parquet is
   encoded, then the Parquet upload); each step alone is timed too, for where the time goes,
   with the CPU seconds it costs us and the S3 server (when that runs here): their sum over
   the cores is the least wall time the one pass can take on this machine.
2. ``--days`` synthetic days (``--survival-drives`` drives) processed into the lake, then the
   survival table at the middle day, in a child process so its peak RSS is its own.

Needs the S3 server (scripts/stack up s3); everything goes under a ``bench-<uuid>/`` prefix
that is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import io
import math
import multiprocessing as mp
import os
import resource
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.csv as pacsv

from diskrisk import ingest, lake, s3, survival, synth, validate


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _survival_child(cutoff: date, lookback: int, prefix: str, q) -> None:
    t = time.perf_counter()
    df = survival.survival_dataset(cutoff, lookback, prefix=prefix)
    secs = time.perf_counter() - t
    q.put((secs, len(df), int(df["event"].sum()), _peak_rss_mib()))


def _peak_rss_mib() -> float:
    """Peak RSS of this process. VmHWM is reset by exec, unlike ru_maxrss, which a spawned
    child inherits from its (large) parent; so prefer it on Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _server_cpu() -> float | None:
    """CPU seconds used so far by the S3 server, when it is a ``minio`` process on this
    machine (the local stack); None elsewhere."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(minio)" in text:
            fields = text.rsplit(")", 1)[1].split()  # utime, stime: fields 14, 15 of stat
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def _cpu_timed(fn):
    """(wall s, this process's CPU s, the S3 server's CPU s or nan), result."""
    s0, c0 = _server_cpu(), time.process_time()
    wall, out = _timed(fn)
    c1, s1 = time.process_time(), _server_cpu()
    server = s1 - s0 if s0 is not None and s1 is not None else float("nan")
    return (wall, c1 - c0, server), out


def _steps_alone(path: Path, prefix: str) -> dict[str, tuple[float, float, float]]:
    """The one pass's work, one step at a time: what each costs on its own, in wall and CPU
    seconds (ours and the store's)."""
    out = {}
    day = ingest.DayFile(validate.day_from_name(path.name), path.name, str(path), path.open)
    out["read the CSV"], data = _cpu_timed(path.read_bytes)
    out["sha256 + line count"], (sha, n, _) = _cpu_timed(lambda: ingest.digest_bytes(data))
    out["validate: typed parse + checks"], v = _cpu_timed(
        lambda: validate.validate_bytes(data, path.name)
    )
    out["zstd Parquet encode"], parquet = _cpu_timed(lambda: lake.parquet_bytes(v.table))
    out["raw PUT (store checks sha256)"], _ = _cpu_timed(
        lambda: ingest.upload_day(day, prefix=prefix, data=data, sha_rows=(sha, n))
    )
    out["Parquet PUT"], _ = _cpu_timed(
        lambda: lake.write_day(v, sha, prefix=prefix, parquet=parquet)
    )
    return out


def _print_floor(steps: dict[str, tuple[float, float, float]], path: Path, t_pa: float) -> None:
    """The least wall time the one pass can take here: all its CPU seconds (ours and the
    store's; each the least of the runs) spread perfectly over the cores. Against the bare
    parse's wall time, this says whether "ingest <= 2x a bare parse" is reachable here at all."""
    cores = len(os.sched_getaffinity(0))
    pa_wall, pa_cpu = min(_cpu_timed(lambda: pacsv.read_csv(path))[0][:2] for _ in range(3))
    head = f"{'step alone, least of the runs':44} {'wall s':>7} {'our CPU s':>10}"
    print(f"\n{head} {'store CPU s':>12}")
    for name, (wall, cpu, server) in steps.items():
        print(f"{name:44} {wall:7.2f} {cpu:10.2f} {server:12.2f}")
    cpu = sum(c + (0.0 if math.isnan(s) else s) for _, c, s in steps.values())
    print(f"{'(a) bare parse, best of 3, for reference':44} {pa_wall:7.2f} {pa_cpu:10.2f}")
    print(
        f"CPU seconds of the one pass's steps: {cpu:.2f} ({cpu / pa_cpu:.2f}x the parse's); "
        f"on {cores} cores at least {cpu / cores:.2f} s of wall time even perfectly "
        f"overlapped, {cpu / cores / t_pa:.2f}x the best bare parse ({t_pa:.2f} s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=300_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--survival-drives", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the bench prefix in S3")
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the three paths")
    args = ap.parse_args()
    prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    rows: list[tuple[str, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            day = date(2024, 1, 1)
            t_syn, paths = _timed(
                lambda: synth.write_days(tmp, "modern", args.drives, 1, day, args.seed)
            )
            path = paths[0]
            size_mb = path.stat().st_size / 1e6
            rows.append(("synth: generate + write CSV", t_syn))
            table = pacsv.read_csv(path)
            n_rows, n_cols = table.num_rows, table.num_columns
            del table

            def pandas_roundtrip() -> None:
                df = pd.read_csv(path, low_memory=False)
                df.to_csv(io.StringIO(), index=False)

            def one_pass() -> None:  # a fresh prefix each time: the day is new to it
                lake.process(path, prefix=f"{prefix}pass{uuid.uuid4().hex[:6]}/")

            ways = {
                "(a) pyarrow.csv parse (bare)": lambda: pacsv.read_csv(path),
                "(b) pandas read_csv + to_csv": pandas_roundtrip,
                "diskrisk: lake.process, one pass": one_pass,
            }
            best: dict[str, float] = {}
            first: dict[str, float] = {}
            for _ in range(args.repeat):  # interleaved, so drift in the machine hits all three
                for name, fn in ways.items():
                    secs = _timed(fn)[0]
                    first.setdefault(name, secs)
                    best[name] = min(best.get(name, float("inf")), secs)
            t_pa, t_pd, ours = best.values()
            rows += list(best.items())[:2]

            runs = [_steps_alone(path, f"{prefix}steps{k}/") for k in range(args.repeat)]
            steps = {n: tuple(min(r[n][i] for r in runs) for i in range(3)) for n in runs[0]}
            rows += [(f"  step alone: {name}", wall) for name, (wall, _, _) in steps.items()]
            rows.append(("diskrisk: lake.process, one pass", ours))
            print(f"\none day: {n_rows:,} rows x {n_cols} columns, {size_mb:.0f} MB CSV; "
                  f"(a), (b) and the one pass: best of {args.repeat}\n")  # fmt: skip
            print(f"{'step':44} {'seconds':>8} {'x pyarrow':>10}")
            for name, secs in rows:
                print(f"{name:44} {secs:8.2f} {secs / t_pa:10.2f}")
            print(f"{'pandas round trip / diskrisk one pass':44} {t_pd / ours:8.2f}")
            f_pa, f_pd, f_ours = first.values()
            print(f"first of each (a cold process): {f_pa:.2f}s, {f_pd:.2f}s, {f_ours:.2f}s; "
                  f"pandas / one pass {f_pd / f_ours:.2f}")  # fmt: skip
            print(f"peak RSS so far (main process): {_peak_rss_mib():.0f} MiB")
            _print_floor(steps, path, t_pa)

            sdir = Path(tmp) / "days"
            t_gen, _ = _timed(
                lambda: synth.write_days(
                    sdir, "modern", args.survival_drives, args.days, date(2024, 3, 1), args.seed + 1
                )
            )
            t_proc, summary = _timed(lambda: lake.process(sdir, prefix=prefix))
            cutoff = date(2024, 3, 1) + timedelta(days=args.days // 2)
            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            proc = ctx.Process(
                target=_survival_child, args=(cutoff, min(30, args.days // 2 + 1), prefix, q)
            )
            proc.start()
            secs, n, events, rss = q.get()
            proc.join()
            print(
                f"\n{args.days} days x {args.survival_drives:,} drives: synth {t_gen:.1f}s, "
                f"collect+validate+lake {t_proc:.1f}s ({len(summary.days)} days)"
            )
            print(
                f"survival table at {cutoff}: {n:,} drives, {events} events, {secs:.2f}s, "
                f"peak RSS {rss:.0f} MiB (child process)"
            )
    finally:
        if not args.keep:
            s3.purge(prefix)


if __name__ == "__main__":
    main()
