"""Out-of-time evaluation: the one yardstick for model choice, promotion and reports.

A model is judged on days it has not seen, the way it will be used: fitted on what was known up
to an origin day ``t`` and asked to rank the drives at risk on a later landmark by what happens
*after* it. Picking models on a random slice of the training snapshot chose by noise (issue #11).

* **Landmarks**: every ``step`` days from the first lake day; each is a survival snapshot
  (:func:`diskrisk.survival.survival_dataset`). Training stacks the landmarks before ``t``
  with follow-up censored at ``t`` and at most the longest published horizon after the
  landmark (:func:`write_tables`), so every failure inside the window is an event of at least
  one snapshot.
* **Splits** (:func:`rolling_splits`): origins ``t_1 < … < t_k`` spaced ``block`` days apart at
  the end of the lake. Split ``i`` trains on landmarks before ``t_i`` with follow-up up to
  ``t_i`` and tests on the landmark ``t_i`` with follow-up ``(t_i, t_i + block]``: test windows
  never overlap each other or the training follow-up. :func:`fixed_origin_splits` keeps one
  training origin and tests it on consecutive later landmarks (the benchmark's "first 20 days
  → last 10").
* **Metrics** (:func:`metrics`): Harrell's C pooled over the splits (concordant and comparable
  pairs summed, pairs never cross splits), recall at an inspection budget (share of the drives
  failing within the test window that rank in the top ``budget`` of their landmark),
  time-dependent AUC at horizons the test windows support (sksurv), and calibration of
  P(fail within the window) against Kaplan-Meier per risk decile. Intervals come from a
  bootstrap over *drives* (a drive present in several test landmarks is drawn as a whole),
  and :func:`paired_difference` draws the same drives for two models, which is what the
  promotion rule needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diskrisk.concordance import PairIndex
from diskrisk.evaluate import calibration_table
from diskrisk.models import RiskModel, survival_target

BUDGETS = (0.01, 0.005)
SPLIT, WINDOW = "split", "window_days"


@dataclass(frozen=True)
class Split:
    """Train on landmarks before ``origin`` (follow-up censored at ``origin``); test on each
    ``(landmark, end)`` with follow-up ``(landmark, end]``."""

    origin: str
    test: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        return self.origin


@dataclass
class Plan:
    """Which landmarks and splits a lake supports (JSON-able for task hand-over)."""

    days: list[str]
    step: int
    block: int
    landmarks: list[str]
    splits: list[Split]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "splits": [asdict(s) for s in self.splits]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        splits = [Split(s["origin"], tuple(tuple(t) for t in s["test"])) for s in d["splits"]]
        return cls(d["days"], d["step"], d["block"], d["landmarks"], splits)


def _d(x: str | date) -> date:
    return x if isinstance(x, date) else date.fromisoformat(str(x))


def landmarks(days: Sequence[str], step: int = 7) -> list[str]:
    """Every ``step``-th calendar day from the first lake day that is a lake day and has at
    least one later day (a landmark without follow-up teaches nothing)."""
    if step < 1:
        raise ValueError("step must be >= 1")
    have = sorted(set(days))
    first, last = _d(have[0]), _d(have[-1])
    out, s = [], first
    while s < last:
        if s.isoformat() in have:
            out.append(s.isoformat())
        s += timedelta(days=step)
    return out


def default_block(n_days: int) -> int:
    """Test window length: a sixth of the lake, 3..30 days (two origins then leave two thirds
    of the days to train on)."""
    return int(min(30, max(3, n_days // 6)))


def rolling_splits(
    days: Sequence[str], n_origins: int = 2, block: int | None = None
) -> list[Split]:
    """``n_origins`` origins ``block`` days apart, the last test window ending on the newest day."""
    have = sorted(set(days))
    block = block or default_block(len(have))
    last = _d(have[-1])
    out = []
    for k in range(n_origins, 0, -1):
        origin, end = last - timedelta(days=block * k), last - timedelta(days=block * (k - 1))
        out.append(Split(origin.isoformat(), ((origin.isoformat(), end.isoformat()),)))
    return _checked(out, have)


def fixed_origin_splits(days: Sequence[str], origin: str, block: int) -> list[Split]:
    """One training origin, tested on consecutive ``block``-day windows up to the newest day."""
    have = sorted(set(days))
    last, s = _d(have[-1]), _d(origin)
    tests = []
    while s < last:
        end = min(s + timedelta(days=block), last)
        tests.append((s.isoformat(), end.isoformat()))
        s = end
    return _checked([Split(origin, tuple(tests))], have)


def _checked(splits: list[Split], have: list[str]) -> list[Split]:
    for sp in splits:
        if sp.origin <= have[0] or sp.origin not in have:
            raise ValueError(f"origin {sp.origin} is not a lake day after the first ({have[0]})")
        for lm, _ in sp.test:
            if lm not in have:
                raise ValueError(f"test landmark {lm} is not a lake day")
    return splits


def plan(
    days: Sequence[str], *, step: int = 7, n_origins: int = 2, block: int | None = None
) -> Plan:
    have = sorted(set(days))
    block = block or default_block(len(have))
    return Plan(have, step, block, landmarks(have, step), rolling_splits(have, n_origins, block))


# --------------------------------------------------------------------------- datasets


# --------------------------------------------------------------------------- tables in DuckDB


@dataclass(frozen=True)
class Tables:
    """Parquet files :func:`write_tables` wrote under one folder, with their counts.

    ``population_rows`` is the stacked table before rows were sampled; each kept censored row
    then weighs ``censored_weight``, each kept failure row ``failure_weight``."""

    folder: Path
    rows: int
    events: int
    population_rows: int
    censored_weight: float
    test_events: dict[str, int]
    failure_weight: float = 1.0

    @property
    def holdout_events(self) -> int:
        return sum(self.test_events.values())

    def train(self, origin: str | None = None) -> Path:
        return self.folder / (f"{origin}/train.parquet" if origin else "train.parquet")

    def test(self, origin: str) -> Path:
        return self.folder / f"{origin}/test.parquet"

    @property
    def holdout(self) -> Path:
        return self.folder / "holdout.parquet"


def _copy(con: Any, sql: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({sql}) TO '{path.as_posix()}' (FORMAT parquet, COMPRESSION zstd)")


def batches(sizes: Sequence[tuple[Any, int]], bound: int) -> list[tuple[Any, Any, int]]:
    """(first, last snapshot, rows) of runs of consecutive ``(snapshot, rows)`` holding at most
    ``bound`` rows each (a single snapshot above it stands alone)."""
    out: list[tuple[Any, Any, int]] = []
    for snap, n in sizes:
        if out and out[-1][2] + n <= bound:
            out[-1] = (out[-1][0], snap, out[-1][2] + n)
        else:
            out.append((snap, snap, n))
    return out


def stack(con: Any, table: str, sqls: Sequence[str]) -> None:
    """Temp table ``table`` holding the rows of every query, run one statement each: a UNION
    ALL ran its branches side by side, each with the hash tables of a whole fleet (4.6 GiB at
    300k drives and 30 days)."""
    for k, sql in enumerate(sqls):
        con.execute(
            f"INSERT INTO {table} {sql}" if k else f"CREATE OR REPLACE TEMP TABLE {table} AS {sql}"
        )


def event_counts(con: Any, table: str) -> tuple[int, int]:
    """(failures, censored rows) of a stacked table."""
    n_event, n_censored = con.execute(
        f"SELECT count(*) FILTER (WHERE event), count(*) FILTER (WHERE NOT event) FROM {table}"
    ).fetchone()
    return int(n_event), int(n_censored)


def training_landmarks(
    p: Plan, end: str, followup_days: int | None = None
) -> list[tuple[str, date]]:
    """(landmark, end of its follow-up) of the landmarks before ``end``: follow-up ends at
    ``end`` or ``followup_days`` after the landmark, whichever comes first."""
    out = []
    for s in p.landmarks:
        if _d(s) < _d(end):
            stop = _d(end)
            if followup_days is not None:
                stop = min(stop, _d(s) + timedelta(days=followup_days))
            out.append((s, stop))
    return out


def _draw(table: str, where: str, n: int, cap: int | None, seed: int) -> tuple[str, float]:
    """(query, weight): the ``n`` rows of ``table`` matching ``where``, or ``cap`` of them drawn
    by a seeded hash of (drive, landmark), each weighing ``n / cap`` (column ``weight``)."""
    if cap is None or n <= cap:
        return f"SELECT *, 1.0::DOUBLE AS weight FROM {table} WHERE {where}", 1.0
    # a multiple of 1/1024: sums of weights are then exact in floating point (lifelines'
    # KM casts its at-risk counts to unsigned integers and fails on a -1e-9 left over)
    weight = round(n / cap * 1024) / 1024
    return (
        f"""SELECT *, {weight!r}::DOUBLE AS weight FROM {table} WHERE {where}
        QUALIFY row_number() OVER (
            ORDER BY hash(serial_number, snapshot_date, {int(seed)}), serial_number, snapshot_date
        ) <= {int(cap)}""",
        weight,
    )


@dataclass(frozen=True)
class Sample:
    """Rows a training table keeps of a stack and what each weighs (inverse inclusion
    probabilities: weighted sums over the sample estimate those over the stack)."""

    failures: int
    failure_weight: float
    censored_weight: float
    sql: str


def sample(
    table: str,
    counts: tuple[int, int],
    *,
    max_censored_rows: int | None = None,
    min_censored_per_failure: int = 0,
    max_failure_rows: int | None = None,
    seed: int = 0,
) -> Sample:
    """The rows of ``table`` (``counts``: its failures and censored rows) a training table keeps:
    at most ``max_failure_rows`` failure rows, then at most ``max_censored_rows`` censored rows
    or ``min_censored_per_failure`` per kept failure if that is more."""
    n_event, n_censored = counts
    failures = n_event if max_failure_rows is None else min(n_event, max_failure_rows)
    cap = max_censored_rows
    if cap is not None:
        cap = max(cap, min_censored_per_failure * failures)
    fail_sql, fail_w = _draw(table, "event", n_event, max_failure_rows, seed)
    cens_sql, cens_w = _draw(table, "NOT event", n_censored, cap, seed)
    return Sample(failures, fail_w, cens_w, f"({fail_sql}) UNION ALL ({cens_sql})")


def write_tables(
    con: Any,
    p: Plan,
    end: str,
    lookback: int,
    folder: Path,
    *,
    followup_days: int | None = None,
    max_censored_rows: int | None = None,
    min_censored_per_failure: int = 0,
    max_failure_rows: int | None = None,
    seed: int = 0,
) -> Tables:
    """The training and test tables of plan ``p``, built inside DuckDB and copied straight to
    Parquet: a year of a 300k-drive fleet stacks millions of (drive, landmark) rows, which DuckDB
    spills under its memory limit where pandas would not fit.

    ``train.parquet`` stacks the landmark snapshots before ``end``; each row's follow-up ends at
    ``end`` or, with ``followup_days``, that many days after its landmark, whichever comes
    first. Without that limit a year-long lake makes a drive that fails in month 11 an event of
    every earlier landmark, with covariates read months before any sign of wear; the published
    horizons need no longer follow-up than their longest. Each split's ``train.parquet`` is that
    table censored at the split's origin (no outcome after it leaks in); its ``test.parquet``
    holds the test landmarks with their own windows.

    ``max_censored_rows`` keeps at most that many censored rows of the stacked table, or
    ``min_censored_per_failure`` per kept failure if that is more (a fixed cap leaves a
    year-long lake, with ~10x a quarter's failures, a few controls per failure, where the
    sampled fits lose most; README, fleet scale). That floor makes the table grow with the
    fleet's failures (5.5M rows at a year of 300k drives, a 16 GiB Cox fit), so
    ``max_failure_rows`` bounds the failure rows too: a failing drive is a failure row of every
    landmark within the follow-up before its failure (up to 13 at weekly landmarks and 90
    days), rows of one drive that carry much the same covariates. Rows are drawn by a seeded
    hash of (drive, landmark); each kept row weighs ``n / kept`` of its kind (to 1/1024), so
    weighted sums over the sample estimate those over the whole stack (inverse-probability
    weights, as in a case-cohort design). Split tables are derived from the sampled table
    (same rows and weights, follow-up censored at the origin), so the weights stay inverse
    inclusion probabilities there too. Test tables are never sampled.
    """
    from diskrisk.lake import lake_columns
    from diskrisk.survival import (
        FEATURE_BATCH_ROWS,
        drive_parts,
        drive_parts_of,
        first_failure_sql,
        outcome_table,
        rows_sql,
        runs_sql,
    )

    present = set(lake_columns(con))
    marks = training_landmarks(p, end, followup_days)
    if not marks:
        raise ValueError(f"no landmark before {end} has follow-up")
    # Outcomes first, from the lake's serial, date and failure columns only (each serial's
    # runs of days and first failure, for every landmark at once); the covariates (a month of
    # every SMART column per drive) are then aggregated for the kept rows alone.
    con.execute(f"CREATE OR REPLACE TEMP TABLE first_failure AS {first_failure_sql(end)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE runs AS {runs_sql(marks[0][0], end)}")
    drives = {"failures": "first_failure", "runs": "runs"}
    outcome_table(con, "outcomes", marks, **drives)
    n_event, n_censored = event_counts(con, "outcomes")
    if not n_event + n_censored:
        raise ValueError(f"no landmark before {end} has follow-up")
    kept = sample(
        "outcomes",
        (n_event, n_censored),
        max_censored_rows=max_censored_rows,
        min_censored_per_failure=min_censored_per_failure,
        max_failure_rows=max_failure_rows,
        seed=seed,
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE kept AS {kept.sql}")
    con.execute("DROP TABLE outcomes")
    sizes = con.execute(
        "SELECT CAST(snapshot_date AS DATE), count(*) FROM kept GROUP BY 1 ORDER BY 1"
    ).fetchall()
    between = "snapshot_date BETWEEN TIMESTAMP '{}' AND TIMESTAMP '{}'"
    stack(
        con,
        "train",
        [
            rows_sql(
                f"(SELECT * FROM kept WHERE {between.format(a, b)} AND {part})",
                a,
                b,
                lookback,
                present,
                extra=("weight",),
            )
            for a, b, n in batches(sizes, FEATURE_BATCH_ROWS)
            for part in drive_parts(n)
        ],
    )
    con.execute("DROP TABLE kept")
    rows, events = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE event) FROM train"
    ).fetchone()
    order = " ORDER BY snapshot_date, serial_number"
    _copy(con, "SELECT * FROM train" + order, folder / "train.parquet")
    for sp in p.splits:
        gap = f"CAST(DATE '{sp.origin}' - CAST(snapshot_date AS DATE) AS BIGINT)"
        _copy(
            con,
            f"""SELECT * EXCLUDE (gap) REPLACE (
                    least(duration_days, gap) AS duration_days,
                    event AND duration_days <= gap AS event,
                    entry_age_days + least(duration_days, gap) AS exit_age_days)
                FROM (SELECT *, {gap} AS gap FROM train
                      WHERE snapshot_date < TIMESTAMP '{sp.origin}')
                WHERE least(duration_days, gap) >= 1{order}""",
            folder / sp.origin / "train.parquet",
        )
    tests = []
    marks_tested = [(sp, t) for sp in p.splits for t in sp.test]
    for k, (split, (lm, e)) in enumerate(marks_tested):
        outcome_table(con, f"test_outcome_{k}", [(lm, e)], **drives)
        window = (_d(e) - _d(lm)).days
        for part in drive_parts_of(con, f"test_outcome_{k}"):
            landmark = rows_sql(
                f"(SELECT * FROM test_outcome_{k} WHERE {part})", lm, lm, lookback, present
            )
            tests.append(
                f"SELECT *, '{split.name}' AS {SPLIT}, CAST({window} AS BIGINT) AS {WINDOW} "
                f"FROM ({landmark})"
            )
    stack(con, "tests", tests)
    for k in range(len(marks_tested)):
        con.execute(f"DROP TABLE test_outcome_{k}")
    test_events = dict(
        con.execute(
            f"SELECT {SPLIT}, count(*) FILTER (WHERE event) FROM tests GROUP BY 1"
        ).fetchall()
    )
    for sp in p.splits:
        _copy(
            con,
            f"SELECT * FROM tests WHERE {SPLIT} = '{sp.name}'{order}",
            folder / sp.origin / "test.parquet",
        )
    _copy(
        con,
        f"SELECT * FROM tests ORDER BY {SPLIT}, snapshot_date, serial_number",
        folder / "holdout.parquet",
    )
    for table in ("train", "tests", "first_failure", "runs"):
        con.execute(f"DROP TABLE {table}")
    return Tables(
        folder,
        int(rows),
        int(events),
        int(n_event + n_censored),
        kept.censored_weight,
        {sp.name: int(test_events.get(sp.name, 0)) for sp in p.splits},
        kept.failure_weight,
    )


# --------------------------------------------------------------------------- predictions


@dataclass
class Predictions:
    """One row per (test landmark, drive): outcome, risk and P(fail within the test window)."""

    family: str
    frame: pd.DataFrame
    fit_seconds: float
    notes: list[str] = field(default_factory=list)


def predict_splits(
    fit: Callable[[Split], RiskModel],
    splits: Sequence[Split],
    test_of: Callable[[Split], pd.DataFrame],
) -> Predictions:
    """A model per split (``fit``: fitted on the split's training rows) predicting its test
    landmarks. ``fit_seconds``: what ``fit`` took in this call (reading the rows included; a
    stored fit: its load)."""
    parts, fit_s, family, notes = [], 0.0, "", []
    for sp in splits:
        t0 = time.perf_counter()
        model = fit(sp)
        fit_s += time.perf_counter() - t0
        test = test_of(sp)
        family = model.family
        notes += [f"{sp.name}: {n}" for n in model.fit_notes_]
        horizon = test[WINDOW].to_numpy(dtype=int)
        p = np.full(len(test), np.nan)
        h_max = float(model.train_max_time_ or 0)
        for h in np.unique(horizon):
            if h > h_max:
                notes.append(f"{sp.name}: {h} d window beyond training follow-up {h_max:g} d")
                continue
            m = horizon == h
            p[m] = 1 - model.predict_survival(test[m], (float(h),))[:, 0]
        parts.append(
            pd.DataFrame(
                {
                    SPLIT: sp.name,
                    "serial_number": test["serial_number"].to_numpy(),
                    "snapshot_date": pd.to_datetime(test["snapshot_date"]).to_numpy(),
                    WINDOW: horizon,
                    "duration_days": test["duration_days"].to_numpy(),
                    "event": test["event"].to_numpy(bool),
                    "risk": model.predict_risk(test),
                    "p_fail_window": p,
                }
            )
        )
    return Predictions(family, pd.concat(parts, ignore_index=True), fit_s, notes)


# --------------------------------------------------------------------------- metrics


def _groups(frame: pd.DataFrame) -> list[np.ndarray]:
    """Row indices per test landmark: concordance pairs never cross landmarks."""
    keys = frame[SPLIT].astype(str) + "|" + frame["snapshot_date"].astype(str)
    return [np.flatnonzero(keys.to_numpy() == k) for k in pd.unique(keys)]


def _indexes(frame: pd.DataFrame, risk: str) -> list[tuple[np.ndarray, PairIndex]]:
    """Each test landmark's rows and their Harrell pairs, placed once for every resample."""
    e = frame["event"].to_numpy(bool)
    t = frame["duration_days"].to_numpy(float)
    r = frame[risk].to_numpy(float)
    return [(idx, PairIndex(e[idx], t[idx], r[idx])) for idx in _groups(frame)]


def _pooled(
    indexes: list[tuple[np.ndarray, PairIndex]], weights: np.ndarray | None = None
) -> float:
    num = den = 0.0
    for idx, pairs in indexes:
        p = pairs.pairs(None if weights is None else weights[idx])
        num, den = num + p.concordant + 0.5 * p.tied_risk, den + float(p.comparable)
    return float(num / den) if den else float("nan")


def pooled_c(frame: pd.DataFrame, risk: str = "risk") -> float:
    """Harrell's C with pairs pooled over test landmarks."""
    return _pooled(_indexes(frame, risk))


def recall_at_budget(frame: pd.DataFrame, budget: float, risk: str = "risk") -> float:
    """Share of the drives failing within their test window that rank in the top ``budget``
    of their landmark (the daily inspection list an operator can afford)."""
    hit = fails = 0
    for idx in _groups(frame):
        part = frame.iloc[idx]
        k = max(1, int(np.ceil(budget * len(part))))
        top = part[risk].rank(ascending=False, method="first") <= k
        fails += int(part["event"].sum())
        hit += int((top & part["event"]).sum())
    return hit / fails if fails else float("nan")


def _bootstrap_weights(frame: pd.DataFrame, n: int, seed: int) -> Iterator[np.ndarray]:
    """``n`` drive-clustered resamples as row weights: how often each row's drive was drawn."""
    codes, uniques = pd.factorize(frame["serial_number"])
    rng = np.random.default_rng(seed)
    for _ in range(n):
        counts = np.bincount(rng.integers(0, len(uniques), len(uniques)), minlength=len(uniques))
        yield counts[codes]


def _interval(values: Sequence[float]) -> tuple[float, float]:
    """Percentile 95 % interval of the finite ``values`` (NaN, NaN when there are none)."""
    finite = np.asarray([v for v in values if np.isfinite(v)])
    if not finite.size:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return float(lo), float(hi)


def _bootstrap(
    indexes: list[tuple[np.ndarray, PairIndex]], frame: pd.DataFrame, n: int, seed: int
) -> tuple[float, float]:
    return _interval([_pooled(indexes, w) for w in _bootstrap_weights(frame, n, seed)])


def bootstrap_c(frame: pd.DataFrame, n: int = 200, seed: int = 0) -> tuple[float, float]:
    """Percentile 95 % interval of the pooled C over drive-clustered resamples."""
    return _bootstrap(_indexes(frame, "risk"), frame, n, seed)


def paired_difference(
    a: pd.DataFrame, b: pd.DataFrame, n: int = 200, seed: int = 0
) -> dict[str, float]:
    """C(a) - C(b) on the same test rows, with a 95 % interval from drawing the *same* drives
    for both (paired: the shared noise of the test set cancels)."""
    key = [SPLIT, "serial_number", "snapshot_date"]
    both = a[[*key, "duration_days", "event", "risk"]].merge(
        b[[*key, "risk"]], on=key, suffixes=("_a", "_b"), validate="one_to_one"
    )
    if len(both) != len(a) or len(both) != len(b):
        raise ValueError("paired comparison needs predictions on exactly the same test rows")
    ia, ib = _indexes(both, "risk_a"), _indexes(both, "risk_b")
    lo, hi = _interval([_pooled(ia, w) - _pooled(ib, w) for w in _bootstrap_weights(both, n, seed)])
    c_a, c_b = _pooled(ia), _pooled(ib)
    return {
        "c_a": c_a,
        "c_b": c_b,
        "gain": c_a - c_b,
        "gain_ci_low": float(lo),
        "gain_ci_high": float(hi),
        "events": float(both["event"].sum()),
    }


def td_auc(
    frame: pd.DataFrame, train_outcomes: pd.DataFrame, horizons: Sequence[float]
) -> dict[str, float]:
    """Cumulative/dynamic AUC (sksurv) per test landmark at the horizons its window supports,
    averaged over landmarks weighted by their cases."""
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    t_tr, e_tr = survival_target(train_outcomes)
    y_train = Surv.from_arrays(e_tr, t_tr)
    out: dict[str, float] = {}
    for h in horizons:
        num = den = 0.0
        for idx in _groups(frame):
            part = frame.iloc[idx]
            t, e = part["duration_days"].to_numpy(float), part["event"].to_numpy(bool)
            cases = int((e & (t <= h)).sum())
            if cases == 0 or h >= t.max() or h >= t_tr.max():
                continue
            try:
                auc, _ = cumulative_dynamic_auc(y_train, Surv.from_arrays(e, t), part["risk"], [h])
            except ValueError:  # IPCW undefined: the training censoring curve reaches zero
                continue  # within this landmark's follow-up; the metric is unsupported there
            num, den = num + float(auc[0]) * cases, den + cases
        if den:
            out[f"auc_{h:g}d"] = num / den
    return out


def calibration(frame: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Predicted vs observed P(fail within the test window) per risk decile (rows of every
    landmark whose window the model supports), and the decile-size-weighted mean gap."""
    ok = frame["p_fail_window"].notna()
    if not ok.any():
        return pd.DataFrame(), float("nan")
    h = float(frame.loc[ok, "window_days"].mode().max())  # one horizon per table
    part = frame[ok & (frame["window_days"] == h)]
    table = calibration_table(
        part["p_fail_window"].to_numpy(float),
        part["duration_days"].to_numpy(float),
        part["event"].to_numpy(bool),
        h,
    )
    gap = (table["predicted"] - table["observed"]).abs()
    return table, float(np.average(gap, weights=table["n"]))


def metrics(
    pred: Predictions,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    budgets: Sequence[float] = BUDGETS,
    auc_horizons: Sequence[float] = (),
    train_outcomes: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Out-of-time metrics of one family's predictions (names prefixed ``oot_``)."""
    f = pred.frame
    indexes = _indexes(f, "risk")  # the point estimate and every resample count these pairs
    m: dict[str, float] = {
        "oot_n": float(len(f)),
        "oot_events": float(f["event"].sum()),
        "oot_splits": float(f[SPLIT].nunique()),
        "oot_harrell_c": _pooled(indexes),
        "oot_fit_seconds": pred.fit_seconds,
    }
    if n_bootstrap > 0:
        low, high = _bootstrap(indexes, f, n_bootstrap, seed)
        m["oot_harrell_c_ci_low"], m["oot_harrell_c_ci_high"] = low, high
    for b in budgets:
        m[f"oot_recall_top{b * 100:g}pct"] = recall_at_budget(f, b)
    _, m["oot_calibration_abs_err"] = calibration(f)
    observed = float(f["event"].sum())
    expected = float(f["p_fail_window"].sum()) if f["p_fail_window"].notna().all() else np.nan
    m["oot_calibration_oe"] = observed / expected if expected else float("nan")
    if train_outcomes is not None and auc_horizons:
        m.update({f"oot_{k}": v for k, v in td_auc(f, train_outcomes, auc_horizons).items()})
    return m
