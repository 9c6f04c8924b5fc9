"""Holdout evaluation of a fitted :class:`~diskrisk.models.RiskModel`.

Metrics come from scikit-survival and lifelines, never re-implemented:

* ``harrell_c``: ``concordance_index_censored`` on the risk score, with a seeded bootstrap
  percentile interval (``harrell_c_ci_low/high``);
* ``uno_c``: ``concordance_index_ipcw`` truncated at ``tau`` = the largest supported horizon;
* ``auc_<h>d``: ``cumulative_dynamic_auc`` of 1 - S(h | x) and ``brier_<h>d``: ``brier_score``;
* ``ibs``: ``integrated_brier_score`` over a grid inside both follow-up ranges;
* ``calibration_abs_err_<h>d`` / ``calibration_oe_<h>d``: predicted 1 - S(h) against the
  lifelines Kaplan-Meier failure probability per risk decile (mean absolute gap weighted by
  decile size; observed / expected overall).

The IPCW metrics estimate the censoring distribution on the *training* frame, which is only
defined up to the training follow-up, so the holdout is administratively censored one day
before the end of training follow-up for them (independent censoring, so no bias). A horizon is
"supported" when the capped holdout still follows drives past it and has an event by then;
others are dropped and the reason is written to ``notes``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from diskrisk.models import RiskModel, survival_target

MIN_EVENTS = 5


class EvaluationError(ValueError):
    """The holdout cannot support a meaningful evaluation (the promotion rule refuses)."""


@dataclass
class Evaluation:
    """Metrics (all floats, ready for ``mlflow.log_metrics``), notes, tables and figures."""

    family: str
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)
    horizons: list[float] = field(default_factory=list)
    dropped_horizons: list[float] = field(default_factory=list)
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    importance: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    figures: dict[str, Figure] = field(default_factory=dict)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write metrics/notes JSON, the calibration table and one PNG per figure."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"evaluation": out / "evaluation.json"}
        paths["evaluation"].write_text(
            json.dumps(
                {
                    "family": self.family,
                    "metrics": self.metrics,
                    "notes": self.notes,
                    "horizons": self.horizons,
                    "dropped_horizons": self.dropped_horizons,
                },
                indent=2,
            )
        )
        if not self.calibration.empty:
            paths["calibration_table"] = out / "calibration.csv"
            self.calibration.to_csv(paths["calibration_table"], index=False)
        for name, fig in self.figures.items():
            paths[name] = out / f"{name}.png"
            fig.savefig(paths[name], dpi=100, bbox_inches="tight")
        return paths


def evaluate(
    model: RiskModel,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    horizons: tuple[float, ...] = (30, 90),
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    min_events: int = MIN_EVENTS,
    calibration_horizon: float | None = None,
    n_ibs_points: int = 20,
    permutation_repeats: int = 3,
    figures: bool = True,
) -> Evaluation:
    """Evaluate ``model`` (fitted on ``train``) on ``holdout``; see the module docstring.

    Raises :class:`EvaluationError` when the holdout has fewer than ``min_events`` failures,
    since every metric would then be noise.
    """
    from sksurv.metrics import (
        brier_score,
        concordance_index_censored,
        concordance_index_ipcw,
        cumulative_dynamic_auc,
        integrated_brier_score,
    )
    from sksurv.util import Surv

    t_train, e_train = survival_target(train)
    t_test, e_test = survival_target(holdout)
    n_events = int(e_test.sum())
    if n_events < min_events:
        raise EvaluationError(
            f"holdout has {n_events} events among {len(holdout)} drives (< {min_events}); "
            "concordance, AUC and calibration would be noise"
        )
    notes: list[str] = []
    risk = model.predict_risk(holdout)
    metrics: dict[str, float] = {
        "n_train": float(len(train)),
        "n_train_events": float(e_train.sum()),
        "n_holdout": float(len(holdout)),
        "n_holdout_events": float(n_events),
        "harrell_c": float(concordance_index_censored(e_test, t_test, risk)[0]),
    }
    metrics.update(_bootstrap_harrell(e_test, t_test, risk, n_bootstrap, seed, notes))

    # IPCW metrics: cap the holdout inside the training follow-up (see module docstring).
    cap = float(t_train.max()) - 1
    capped = t_test > cap
    lost = int((e_test & capped).sum())
    if lost or t_test.max() > cap + 1:
        notes.append(
            f"holdout capped at {cap:g} d (training follow-up ends at {cap + 1:g} d) for Uno's "
            f"C, AUC and Brier scores: {int(capped.sum())} drives shortened, {lost} failures "
            "after the cap not counted there"
        )
    tc, ec = np.minimum(t_test, cap), e_test & ~capped
    if not ec.any():
        raise EvaluationError(
            f"no holdout failure before {cap:g} d, the end of the training follow-up"
        )
    y_train, y_test = Surv.from_arrays(e_train, t_train), Surv.from_arrays(ec, tc)

    used, dropped = [], []
    for h in sorted(float(h) for h in horizons):
        if h >= tc.max() or h < tc.min():
            dropped.append(h)
            notes.append(
                f"horizon {h:g} d dropped: holdout follow-up (capped) is "
                f"[{tc.min():g}, {tc.max():g}] d"
            )
        elif not (ec & (tc <= h)).any():
            dropped.append(h)
            notes.append(f"horizon {h:g} d dropped: no holdout failure by then")
        else:
            used.append(h)

    tau = used[-1] if used else None
    metrics["uno_c"] = float(concordance_index_ipcw(y_train, y_test, risk, tau=tau)[0])
    metrics["uno_c_tau"] = float(tau if tau is not None else tc.max())

    lo, hi = np.ceil(max(tc.min(), 1.0)), np.floor(tc.max()) - 1
    grid = np.unique(np.round(np.linspace(lo, hi, n_ibs_points))) if hi > lo else np.array([])
    h_cal = calibration_horizon or (max([h for h in used if h <= 90] or used) if used else None)
    # one prediction pass for every time point (forests are slow to traverse)
    times = np.unique(np.concatenate([used, grid, [h_cal] if h_cal else []]))
    surv_all = model.predict_survival(holdout, times) if times.size else np.empty((0, 0))

    def surv(at: Any) -> np.ndarray:
        return surv_all[:, np.searchsorted(times, np.asarray(at, dtype=float))]

    calibration = pd.DataFrame()
    if used:
        auc, _ = cumulative_dynamic_auc(y_train, y_test, 1 - surv(used), used)
        _, brier = brier_score(y_train, y_test, surv(used), used)
        for h, a, b in zip(used, auc, brier, strict=True):
            metrics[f"auc_{h:g}d"], metrics[f"brier_{h:g}d"] = float(a), float(b)
    else:
        notes.append("no supported horizon: time-dependent AUC and Brier scores skipped")
    if h_cal:
        p_fail = 1 - surv([h_cal])[:, 0]
        calibration = calibration_table(p_fail, t_test, e_test, h_cal)
        gap = (calibration["predicted"] - calibration["observed"]).abs()
        weighted_gap = np.average(gap, weights=calibration["n"])
        metrics[f"calibration_abs_err_{h_cal:g}d"] = float(weighted_gap)
        observed = _km_failure(t_test, e_test, h_cal)
        metrics[f"calibration_oe_{h_cal:g}d"] = float(observed / max(p_fail.mean(), 1e-12))

    if grid.size >= 2:
        metrics["ibs"] = float(integrated_brier_score(y_train, y_test, surv(grid), grid))
        metrics["ibs_t_max"] = float(grid[-1])
    else:
        notes.append("holdout follow-up too short for an integrated Brier score")

    importance = model.feature_importance()
    if importance.empty and model.uses_covariates and permutation_repeats > 0:
        importance = permutation_importance(model, holdout, permutation_repeats, seed)
        notes.append("importance = drop in Harrell's C when an input column is permuted")

    result = Evaluation(
        family=model.family,
        metrics=metrics,
        notes=notes,
        horizons=used,
        dropped_horizons=dropped,
        calibration=calibration,
        importance=importance,
    )
    if figures:
        if not calibration.empty:
            result.figures["calibration"] = plot_calibration(calibration, model.family)
        result.figures["km_by_vendor"] = plot_km_by_vendor(holdout)
        if not importance.empty:
            result.figures["importance"] = plot_importance(importance, model.family)
    return result


def _bootstrap_harrell(event, time, risk, n: int, seed: int, notes: list[str]) -> dict:
    """Percentile 95 % interval of Harrell's C over ``n`` seeded resamples of the holdout."""
    from sksurv.metrics import concordance_index_censored

    if n <= 0:
        return {}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, time.size, time.size)
        if event[idx].any():
            values.append(concordance_index_censored(event[idx], time[idx], risk[idx])[0])
    if len(values) < n:
        notes.append(f"bootstrap: {n - len(values)} of {n} resamples had no event and were skipped")
    low, high = np.percentile(values, [2.5, 97.5])
    return {
        "harrell_c_ci_low": float(low),
        "harrell_c_ci_high": float(high),
        "harrell_c_bootstrap_n": float(len(values)),
    }


def _km_failure(time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter().fit(time, event)
    return float(1 - kmf.survival_function_at_times(horizon).iloc[0])


def calibration_table(
    p_fail: np.ndarray, time: np.ndarray, event: np.ndarray, horizon: float, bins: int = 10
) -> pd.DataFrame:
    """Mean predicted vs Kaplan-Meier observed failure probability by predicted-risk decile."""
    order = pd.Series(p_fail).rank(method="first")
    decile = pd.qcut(order, q=min(bins, len(p_fail)), labels=False)
    rows = []
    for d in sorted(decile.unique()):
        m = (decile == d).to_numpy()
        rows.append(
            {
                "decile": int(d) + 1,
                "n": int(m.sum()),
                "events": int(event[m].sum()),
                "predicted": float(p_fail[m].mean()),
                "observed": _km_failure(time[m], event[m], horizon),
                "horizon": float(horizon),
            }
        )
    return pd.DataFrame(rows)


def permutation_importance(
    model: RiskModel, df: pd.DataFrame, n_repeats: int = 3, seed: int = 0, max_rows: int = 2000
) -> pd.Series:
    """Mean drop of Harrell's C when each input column is shuffled (sklearn's implementation).

    Works on the raw input columns, so it applies to every family; every event row is kept
    and censored rows are subsampled to ``max_rows`` total to bound the cost.
    """
    from sklearn.inspection import permutation_importance as sk_permutation_importance
    from sksurv.metrics import concordance_index_censored
    from sksurv.util import Surv

    time, event = survival_target(df)
    rng = np.random.default_rng(seed)
    censored = np.flatnonzero(~event)
    keep = max(max_rows - int(event.sum()), 0)
    if censored.size > keep:
        censored = rng.choice(censored, keep, replace=False)
    rows = np.sort(np.concatenate([np.flatnonzero(event), censored]))
    X = df.iloc[rows][model.input_columns_]
    y = Surv.from_arrays(event[rows], time[rows])

    def score(est: RiskModel, X_: pd.DataFrame, y_: np.ndarray) -> float:
        return concordance_index_censored(y_["event"], y_["time"], est.predict_risk(X_))[0]

    result = sk_permutation_importance(
        model, X, y, scoring=score, n_repeats=n_repeats, random_state=seed
    )
    return pd.Series(result.importances_mean, index=X.columns, name="c_index_drop")


# --------------------------------------------------------------------------- figures


def plot_calibration(table: pd.DataFrame, title: str = "") -> Figure:
    """Predicted vs observed failure probability per risk decile, with the diagonal."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    horizon = table["horizon"].iloc[0]
    top = max(table["predicted"].max(), table["observed"].max(), 1e-4) * 1.05
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfect")
    ax.plot(table["predicted"], table["observed"], marker="o", label="risk deciles")
    ax.set(
        xlabel=f"predicted P(fail within {horizon:g} d)",
        ylabel=f"observed (Kaplan-Meier) P(fail within {horizon:g} d)",
        title=f"Calibration {title}".strip(),
        xlim=(0, top),
        ylim=(0, top),
    )
    ax.legend(loc="upper left")
    return fig


def plot_km_by_vendor(df: pd.DataFrame, top_k: int = 6) -> Figure:
    """Kaplan-Meier survival of the landmark outcome per vendor (the ``top_k`` largest)."""
    from lifelines import KaplanMeierFitter

    time, event = survival_target(df)
    vendor = df["vendor"].fillna("unknown") if "vendor" in df else pd.Series("all", df.index)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name in vendor.value_counts().index[:top_k]:
        m = (vendor == name).to_numpy()
        KaplanMeierFitter().fit(
            time[m], event[m], label=f"{name} (n={m.sum()}, failed={event[m].sum()})"
        ).plot_survival_function(ax=ax)
    ax.set(xlabel="days after snapshot", ylabel="S(t)", title="Kaplan-Meier by vendor")
    return fig


def plot_importance(importance: pd.Series, title: str = "", top: int = 20) -> Figure:
    """Horizontal bars of the ``top`` largest absolute effects/importances."""
    shown = importance.reindex(importance.abs().sort_values().index[-top:])
    fig = Figure(figsize=(6, 0.3 * len(shown) + 1.2))
    ax = fig.subplots()
    ax.barh(
        shown.index.astype(str),
        shown.to_numpy(),
        color=["tab:red" if v > 0 else "tab:blue" for v in shown],
    )
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(xlabel=str(importance.name or "importance"), title=f"Feature effects {title}".strip())
    return fig


def summary(evaluation: Evaluation) -> dict[str, Any]:
    """Compact JSON-able view for logs and CLI output."""
    return {"family": evaluation.family, **evaluation.metrics, "notes": evaluation.notes}
