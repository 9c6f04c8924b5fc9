"""Out-of-time model quality on the real 2013 days: every family on days it has not seen.

The same yardstick as promotion (:mod:`diskrisk.oot`): each family is fitted on landmark
snapshots stacked every ``--step`` days before the origin (follow-up censored at the origin) and
evaluated on later landmarks by what happens after them, in consecutive ``--block``-day windows
that do not overlap. Default: train on the first 20 days, evaluate on the last 10. ``--rolling``
uses the pipeline's rolling origins instead (each origin refits). The lake is built locally, so
no service is needed. Not a test: it prints tables.

    .venv/bin/python bench/quality.py [--data DIR] [--origin 2013-04-29] [--block 5] [--step 7]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from diskrisk import lake
from diskrisk.lake import write_local
from diskrisk.models import FAMILIES, HORIZONS, ModelError, make_model
from diskrisk.oot import (
    Plan,
    fixed_origin_splits,
    landmarks,
    metrics,
    paired_difference,
    pooled_c,
    predict_splits,
    rolling_splits,
    write_tables,
)
from diskrisk.validate import validate_file

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("BACKBLAZE_TEST_DATA", "../shared/data/backblaze-2013")
    ap.add_argument("--data", default=str((ROOT / default).resolve()))
    ap.add_argument("--lake", help="an existing local lake directory (skips the build)")
    ap.add_argument("--origin", default="2013-04-29", help="train on days up to this one")
    ap.add_argument("--block", type=int, default=5, help="test window, days")
    ap.add_argument("--step", type=int, default=7, help="days between training landmarks")
    ap.add_argument("--rolling", type=int, default=0, help="N rolling origins instead")
    ap.add_argument("--families", nargs="*", default=list(FAMILIES))
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--params", default="{}", help='JSON, e.g. {"model_ranks": true}')
    ap.add_argument(
        "--max-censored",
        type=int,
        help="censored training rows kept, weighted (DISKRISK_TRAIN_MAX_CENSORED_ROWS)",
    )
    ap.add_argument(
        "--min-per-failure",
        type=int,
        default=0,
        help="censored rows kept per failure at least (DISKRISK_TRAIN_MIN_CENSORED_PER_FAILURE)",
    )
    ap.add_argument(
        "--max-failures",
        type=int,
        help="failure training rows kept, weighted (DISKRISK_TRAIN_MAX_FAILURE_ROWS)",
    )
    ap.add_argument(
        "--followup",
        type=int,
        default=int(max(HORIZONS)),
        help="days of follow-up after each training landmark, at most (0: to the origin)",
    )
    ap.add_argument(
        "--truth",
        action="store_true",
        help="a lake of diskrisk.synth: also rank by the generator's own hazard (the ceiling)",
    )
    args = ap.parse_args()
    console = Console(width=160)

    root = Path(args.lake) if args.lake else Path(tempfile.mkdtemp(prefix="diskrisk-quality-"))
    if not args.lake:
        with console.status("building a local lake from the real days"):
            for csv in sorted(Path(args.data).glob("*.csv")):
                write_local(validate_file(csv), root)
    con = lake.connect(root=root)
    days = sorted(str(r[0]) for r in con.execute("SELECT DISTINCT date FROM lake").fetchall())
    splits = (
        rolling_splits(days, args.rolling, args.block)
        if args.rolling
        else fixed_origin_splits(days, args.origin, args.block)
    )
    with console.status("survival tables (the dataset stage's oot.write_tables)"):
        plan = Plan(days, args.step, args.block, landmarks(days, args.step), splits)
        out = write_tables(
            con,
            plan,
            days[-1],
            30,
            Path(tempfile.mkdtemp(prefix="diskrisk-quality-tables-")),
            followup_days=args.followup or None,
            max_censored_rows=args.max_censored,
            min_censored_per_failure=args.min_per_failure,
            max_failure_rows=args.max_failures,
        )
        trains = {sp.name: pd.read_parquet(out.train(sp.origin)) for sp in splits}
        tests = {sp.name: pd.read_parquet(out.test(sp.origin)) for sp in splits}
    console.print(
        f"stacked {out.population_rows} rows; kept {out.rows} ({out.events} failures), "
        f"censored rows weigh {out.censored_weight:.2f}, failure rows {out.failure_weight:.2f}"
    )
    for sp in splits:
        tr, te = trains[sp.name], tests[sp.name]
        console.print(
            f"origin {sp.origin}: train {len(tr)} rows ({tr['serial_number'].nunique()} drives, "
            f"landmarks {sorted(tr['snapshot_date'].dt.date.astype(str).unique())}), "
            f"{int(tr['event'].sum())} failures; test {sp.test}: {len(te)} rows, "
            f"{int(te['event'].sum())} failures"
        )
    if args.truth:
        from diskrisk.synth import true_risk

        held = pd.concat(tests.values(), ignore_index=True)
        truth = held.assign(risk=true_risk(held))
        console.print(
            f"the generator's own hazard ranks these test landmarks at C {pooled_c(truth):.3f} "
            "(the ceiling of any model)"
        )
    horizon = [float(args.block - 1)]
    results = {}
    source = f"lake {args.lake}" if args.lake else f"days of {args.data}"
    table = Table(title=f"out-of-time quality ({source}, {len(splits)} split(s))")
    for col in (
        "family",
        "Harrell C",
        "95% CI (drives)",
        "recall@1%",
        "recall@0.5%",
        f"AUC {horizon[0]:g}d",
        "calib. err",
        "O/E",
        "fit s",
    ):
        table.add_column(col)
    for family in args.families:
        with console.status(f"fitting {family}"):
            try:
                params = json.loads(args.params) if family not in ("km", "ensemble") else {}
                pred = predict_splits(
                    lambda sp, f=family, p=params: make_model(f, p).fit(trains[sp.name]),
                    splits,
                    lambda sp: tests[sp.name],
                )
            except ModelError as exc:
                console.print(f"{family}: {exc}")
                continue
            m = metrics(
                pred,
                n_bootstrap=args.bootstrap,
                auc_horizons=horizon,
                train_outcomes=trains[splits[0].name],
            )
        results[family] = pred
        table.add_row(
            family,
            f"{m['oot_harrell_c']:.3f}",
            f"{m.get('oot_harrell_c_ci_low', float('nan')):.3f}.."
            f"{m.get('oot_harrell_c_ci_high', float('nan')):.3f}",
            f"{m['oot_recall_top1pct']:.0%}",
            f"{m['oot_recall_top0.5pct']:.0%}",
            f"{m.get(f'oot_auc_{horizon[0]:g}d', float('nan')):.3f}",
            f"{m['oot_calibration_abs_err']:.5f}",
            f"{m['oot_calibration_oe']:.2f}",
            f"{pred.fit_seconds:.1f}",
        )
        console.print(f"{family}: {m['oot_events']:.0f} test failures; notes {pred.notes}")
    console.print(table)
    if len(results) > 1:
        best = max(results, key=lambda f: pooled_c(results[f].frame))
        gains = Table(title=f"paired drive bootstrap: {best} minus each other family")
        for col in ("family", "C gain", "95% CI"):
            gains.add_column(col)
        for family, pred in results.items():
            if family == best:
                continue
            d = paired_difference(results[best].frame, pred.frame, n=args.bootstrap)
            gains.add_row(
                family, f"{d['gain']:+.3f}", f"{d['gain_ci_low']:+.3f}..{d['gain_ci_high']:+.3f}"
            )
        console.print(gains)


if __name__ == "__main__":
    main()
