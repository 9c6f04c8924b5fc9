"""Evaluation pieces the out-of-time yardstick (:mod:`diskrisk.oot`) and the training runs
share: calibration against Kaplan-Meier per risk decile (lifelines), permutation importance
(scikit-learn with Harrell's C of :mod:`diskrisk.concordance`), and the figures logged to MLflow.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from diskrisk.concordance import harrell_c
from diskrisk.models import RiskModel, case_weights, survival_target


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
        return harrell_c(y_["event"], y_["time"], est.predict_risk(X_))

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
    from lifelines.exceptions import StatisticalWarning

    time, event = survival_target(df)
    weight = case_weights(df)
    w = np.ones(len(df)) if weight is None else weight  # a sampled table: counts it stands for
    vendor = df["vendor"].fillna("unknown") if "vendor" in df else pd.Series("all", df.index)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name in vendor.value_counts().index[:top_k]:
        m = (vendor == name).to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StatisticalWarning)  # fractional weights
            KaplanMeierFitter().fit(
                time[m],
                event[m],
                weights=w[m],
                label=f"{name} (n={w[m].sum():.0f}, failed={event[m].sum()})",
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
