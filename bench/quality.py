"""Model quality on the real 2013 days: every family against the Kaplan-Meier/age reference.

Time-based evaluation, as the pipeline would live it: train on the drives at risk on CUTOFF
with follow-up until SPLIT, evaluate on the drives at risk on SPLIT with follow-up after it.
The lake is built locally (same validation and Parquet as the S3 lake) so the benchmark needs
no service. Not a test: it prints one table.

    .venv/bin/python bench/quality.py [--data DIR] [--cutoff 2013-04-17] [--split 2013-04-27]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from diskrisk.evaluate import EvaluationError, evaluate
from diskrisk.lake import write_local
from diskrisk.models import FAMILIES, make_model
from diskrisk.survival import split, survival_dataset
from diskrisk.validate import validate_file

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("BACKBLAZE_TEST_DATA", "../shared/data/backblaze-2013")
    ap.add_argument("--data", default=str((ROOT / default).resolve()))
    ap.add_argument("--cutoff", default="2013-04-17")
    ap.add_argument("--split", default="2013-04-27")
    ap.add_argument("--families", nargs="*", default=list(FAMILIES))
    ap.add_argument("--bootstrap", type=int, default=100)
    args = ap.parse_args()
    console = Console()

    root = Path(tempfile.mkdtemp(prefix="diskrisk-quality-"))
    with console.status("building a local lake from the real days"):
        for csv in sorted(Path(args.data).glob("*.csv")):
            write_local(validate_file(csv), root)
        train_snapshot = survival_dataset(args.cutoff, 30, root=root)
        train, holdout = split(train_snapshot, by="time", split_date=args.split, root=root)
    console.print(
        f"train: {len(train)} drives at risk on {args.cutoff}, {int(train['event'].sum())} failures "
        f"before {args.split}; holdout: {len(holdout)} drives at risk on {args.split}, "
        f"{int(holdout['event'].sum())} failures after it"
    )
    table = Table(title="survival model quality on held-out later days (real 2013 data)")
    for col in ("family", "Harrell C", "95% CI", "Uno C", "IBS", "fit s"):
        table.add_column(col)
    for family in args.families:
        t0 = time.perf_counter()
        with console.status(f"fitting {family}"):
            model = make_model(family).fit(train)
            fit_s = time.perf_counter() - t0
            try:
                ev = evaluate(
                    model,
                    train,
                    holdout,
                    n_bootstrap=args.bootstrap,
                    figures=False,
                    permutation_repeats=0,
                )
            except EvaluationError as exc:
                table.add_row(family, "-", "-", "-", "-", f"{fit_s:.1f}", end_section=False)
                console.print(f"{family}: {exc}")
                continue
        m = ev.metrics
        table.add_row(
            family,
            f"{m['harrell_c']:.3f}",
            f"{m.get('harrell_c_ci_low', float('nan')):.3f}..{m.get('harrell_c_ci_high', float('nan')):.3f}",
            f"{m.get('uno_c', float('nan')):.3f}",
            f"{m.get('ibs', float('nan')):.4f}",
            f"{fit_s:.1f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
