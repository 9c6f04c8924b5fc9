"""Benchmark: the drive bootstrap of the out-of-time C, weights against rows repeated.

    .venv/bin/python bench/yardstick.py [--drives 300000] [--landmarks 2] [--resamples 200]

Each training task computes the interval of its pooled C over ``--resamples`` drive-clustered
resamples (``oot.bootstrap_c``), and promotion the paired difference of two families on the
same draws (``oot.paired_difference``). A synthetic out-of-time frame of the fleet's shape
(``--drives`` drives per test landmark, whole-day durations in a 30-day window, ~0.3 %
failures) is measured in one process, same draws both ways:

* **weights**: diskrisk's path, each time's risks sorted and every failure placed once
  (``concordance.PairIndex``), a resample = prefix sums of its draw counts;
* **rows repeated** (the reference: the path before, with today's counter): per resample and
  landmark the drawn rows materialized, then ``concordance.harrell_pairs`` on them.

Both must give the same interval (checked); the table reports seconds and the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from diskrisk import oot
from diskrisk.concordance import harrell_pairs


def frame(drives: int, landmarks: int, seed: int = 0) -> pd.DataFrame:
    """Out-of-time predictions shaped like ``oot.predict_splits``' frame."""
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(landmarks):
        risk = rng.gamma(0.5, 1.0, drives)
        fails = rng.random(drives) < 0.003 * risk / risk.mean()
        parts.append(
            pd.DataFrame(
                {
                    oot.SPLIT: f"2025-0{k + 1}-01",
                    "serial_number": [f"S{i:07d}" for i in range(drives)],
                    "snapshot_date": pd.Timestamp("2025-01-01") + pd.Timedelta(days=30 * k),
                    "duration_days": np.where(fails, rng.integers(1, 31, drives), 30),
                    "event": fails,
                    "risk": risk,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def rows_repeated(f: pd.DataFrame, n: int, seed: int) -> tuple[float, float]:
    """The interval with each resample's rows materialized (the same draws as oot's)."""
    e, t = f["event"].to_numpy(bool), f["duration_days"].to_numpy(float)
    r = f["risk"].to_numpy(float)
    groups = oot._groups(f)
    values = []
    for w in oot._bootstrap_weights(f, n, seed):
        num = den = 0.0
        for idx in groups:
            rows = np.repeat(idx, w[idx])
            p = harrell_pairs(e[rows], t[rows], r[rows])
            num, den = num + p.concordant + 0.5 * p.tied_risk, den + p.comparable
        values.append(num / den)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=300_000)
    ap.add_argument("--landmarks", type=int, default=2)
    ap.add_argument("--resamples", type=int, default=200)
    args = ap.parse_args()
    f = frame(args.drives, args.landmarks)
    print(f"{len(f):,} rows, {int(f['event'].sum())} failures, {args.resamples} resamples")
    t0 = time.perf_counter()
    ours = oot.bootstrap_c(f, args.resamples, seed=0)
    t1 = time.perf_counter()
    ref = rows_repeated(f, args.resamples, seed=0)
    t2 = time.perf_counter()
    if not np.allclose(ours, ref, rtol=0, atol=1e-12):
        raise SystemExit(f"the intervals differ: {ours} vs {ref}")
    print("\n| path | s |\n|---|---:|")
    print(f"| weights (diskrisk) | {t1 - t0:.2f} |\n| rows repeated (reference) | {t2 - t1:.2f} |")
    print(f"\nrows repeated / weights: {(t2 - t1) / (t1 - t0):.1f}x; interval {ours}")


if __name__ == "__main__":
    main()
