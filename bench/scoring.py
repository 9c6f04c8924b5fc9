"""Benchmark: writing a day's scores to HBase with the sink vs one put per row.

    .venv/bin/python bench/scoring.py [--rows 300000] [--baseline-rows 20000]
                                      [--batch-size N] [--workers 2]

Both runs happen in the same process against the same gateway, in throwaway tables
(``<DISKRISK_HBASE_NAMESPACE>_bench<hex>_*``, dropped at the end). The baseline writes the
same cells (latest + history) with ``table.put`` per row on a subset and is extrapolated
linearly, since one RPC per row has no batching effect to lose. Besides wall time it reports
the CPU seconds used by this process and, when the local stack runs them, by the HBase and
Thrift JVMs: on a shared machine the wall time depends on the neighbours, the CPU seconds
do not (``CPU / 2`` is a lower bound of the wall time on 2 dedicated cores).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from diskrisk import sinks
from diskrisk.config import HBaseSettings, load
from diskrisk.sinks import HBaseSink

ROOT = Path(__file__).resolve().parents[1]


def synthetic_scores(n: int, day: str, prefix: str = "B", seed: int = 0) -> pd.DataFrame:
    """A day of scores for ``n`` drives, shaped like the scoring step's output."""
    rng = np.random.default_rng(seed)
    risk = rng.gamma(0.5, 1.0, n)
    return pd.DataFrame(
        {
            "serial_number": [f"{prefix}{i:09d}" for i in range(n)],
            "model": rng.choice(
                [
                    "ST4000DM000",
                    "HGST HMS5C4040ALE640",
                    "ST12000NM0008",
                    "TOSHIBA MG07ACA14TA",
                    "WDC WUH721816ALE6L4",
                ],
                n,
            ),
            "risk": risk,
            "p_fail_30d": 1 - np.exp(-risk / 50),
            "p_fail_90d": 1 - np.exp(-risk / 17),
            "rank_pct": pd.Series(risk).rank(pct=True).to_numpy() * 100,
            "model_name": "diskrisk-failure-risk",
            "model_version": "12",
            "run_id": uuid.uuid4().hex,
            "data_date": day,
            "scored_at": f"{day}T23:41:07.512+00:00",
        }
    )


# --- CPU accounting -----------------------------------------------------------------------------
def _service_pids() -> dict[str, int]:
    """PIDs of the local stack's HBase and Thrift JVMs, or {} when not run by the stack."""
    try:
        sys.path.insert(0, str(ROOT / "scripts"))
        from localstack.proc import pid_of
        from localstack.services import all_services

        return {
            s.name: pid
            for s in all_services()
            if s.name in ("hbase", "hbase-thrift") and (pid := pid_of(s)) is not None
        }
    except Exception:  # any other deployment: client CPU only
        return {}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(fn: Callable[[], object], pids: dict[str, int]) -> dict[str, float]:
    """Wall time, client CPU and server CPU of one call."""
    before = {k: _cpu_s(p) for k, p in pids.items()}
    c0, t0 = _self_cpu_s(), time.perf_counter()
    fn()
    wall, client = time.perf_counter() - t0, _self_cpu_s() - c0
    try:
        server = sum(_cpu_s(p) - before[k] for k, p in pids.items())
    except FileNotFoundError:  # a service restarted meanwhile
        server = float("nan")
    return {"wall": wall, "client_cpu": client, "server_cpu": server if pids else float("nan")}


# --- the two writers ---------------------------------------------------------------------------
def one_put_per_row(sink: HBaseSink, df: pd.DataFrame) -> None:
    """The naive writer: the same cells, one Thrift call per row and table."""
    norm = sinks.normalise(df)
    enc = sinks.encode_cells(norm)
    ts = sinks.date_ts_ms(str(norm["data_date"].iloc[0]))
    with sink.connection() as conn:
        latest, history = conn.table(sinks.LATEST), conn.table(sinks.HISTORY)
        for i in range(len(norm)):
            latest.put(enc.latest_keys[i], enc.latest_cells(i), timestamp=ts)
            history.put(enc.history_keys[i], enc.history_cells(i))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=300_000, help="drives scored (sink run)")
    parser.add_argument(
        "--baseline-rows",
        type=int,
        default=20_000,
        help="subset written one put per row, then extrapolated",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="rows per batch (default: DISKRISK_HBASE_BATCH_SIZE)",
    )
    parser.add_argument("--workers", type=int, default=2, help="batches in flight")
    parser.add_argument("--day", default="2013-04-10")
    args = parser.parse_args(argv)

    cfg = load(HBaseSettings)
    update: dict[str, object] = {"namespace": f"{cfg.namespace}_bench{uuid.uuid4().hex[:6]}"}
    if args.batch_size:
        update["batch_size"] = args.batch_size
    cfg = cfg.model_copy(update=update)
    sink = HBaseSink(cfg, workers=args.workers)
    pids = _service_pids()
    df = synthetic_scores(args.rows, args.day)
    base_df = synthetic_scores(min(args.baseline_rows, args.rows), args.day, prefix="P", seed=1)
    print(
        f"{args.rows:,} drives, batch_size={cfg.batch_size}, workers={args.workers}, "
        f"tables {cfg.namespace}_*, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    try:
        sink.ensure_tables()
        res = {"sink": measure(lambda: sink.write(df), pids)}
        res["baseline"] = measure(lambda: one_put_per_row(sink, base_df), pids)
        res["top"] = measure(lambda: sink.top(100), pids)
        marker = sink.completed(args.day)
    finally:
        sink.drop_tables()

    scale = args.rows / len(base_df)
    s, b = res["sink"], res["baseline"]
    ratio = (b["wall"] * scale) / s["wall"]
    table = [
        ("sink (batched)", args.rows, s["wall"], s["client_cpu"], s["server_cpu"], ratio),
        (
            f"one put per row ({len(base_df):,} measured)",
            len(base_df),
            b["wall"],
            b["client_cpu"],
            b["server_cpu"],
            1.0,
        ),
        (
            f"one put per row, extrapolated x{scale:.0f}",
            args.rows,
            b["wall"] * scale,
            b["client_cpu"] * scale,
            b["server_cpu"] * scale,
            1.0,
        ),
    ]
    print(
        f"\n{'writer':<40}{'drives':>9}{'wall s':>9}{'drives/s':>10}{'client':>8}"
        f"{'server':>8}{'vs put':>9}"
    )
    print(f"{'':<40}{'':>9}{'':>9}{'':>10}{'CPU s':>8}{'CPU s':>8}{'':>9}")
    for name, n, wall, ccpu, scpu, speed in table:
        print(
            f"{name:<40}{n:>9,}{wall:>9.1f}{n / wall:>10,.0f}{ccpu:>8.1f}{scpu:>8.1f}{speed:>8.1f}x"
        )
    print(
        f"\ntop(100) over {args.rows:,} latest rows: {res['top']['wall']:.1f}s wall; "
        f"completion marker: {marker['rows'] if marker else None} rows"
    )
    cpu = s["client_cpu"] + (s["server_cpu"] if s["server_cpu"] == s["server_cpu"] else 0)
    print(
        f"sink CPU total {cpu:.1f}s -> >= {cpu / 2:.1f}s wall on 2 dedicated cores "
        f"(target 20 s for 300k drives: {'met' if s['wall'] <= 20 else 'not met'} here "
        f"at {s['wall']:.1f}s wall)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
