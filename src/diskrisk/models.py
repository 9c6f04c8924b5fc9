"""Survival model families behind one small interface.

Every family is a :class:`RiskModel`: ``fit(df)`` on the survival dataset of
``docs/contracts.md``, then ``predict_risk(df)`` (a ranking score, higher = riskier) and
``predict_survival(df, horizons)`` (S(t | x), the probability a drive is still alive ``t`` days
after its snapshot). The time scale is the landmark one: duration = ``duration_days`` from the
snapshot, event = ``event``. Age enters as a covariate (and as the time scale of the ``km``
reference only).

Preprocessing is fitted on the training frame and stored inside the model, so scoring applies
the identical transforms:

* SMART columns ``smart_<id>_raw[_d7|_d30]``: negatives clipped to 0, ``log1p`` (counters are
  heavy tailed: a drive with 10 000 reallocated sectors is not 10 000x riskier than one with 1),
  median imputation plus a missing indicator (vendors report different attributes, and "not
  reported" carries information);
* ``age_days`` median-imputed; ``capacity_bytes`` as TB (non-positive = unknown);
* ``vendor`` one-hot over the ``vendor_top_k`` most frequent, the rest pooled as "infrequent";
* zero-variance columns dropped, then standardised (per-SD coefficients for linear families,
  harmless for trees).

Families (``make_model(family, params)``; defaults in :data:`DEFAULT_PARAMS`):

* ``coxph``: lifelines ``CoxPHFitter``, hazard h(t|x) = h0(t) exp(x'b), elastic-net penalty
  ``penalizer * (l1_ratio |b|_1 + (1 - l1_ratio)/2 |b|_2^2)``; risk = x'b.
* ``weibull_aft``: lifelines ``WeibullAFTFitter``, log T = x'b + sigma W, S(t|x) =
  exp(-(t / lambda(x))^rho) with lambda(x) = exp(x'b); risk = log H(1 | x) = -rho log lambda(x).
* ``rsf``: scikit-survival ``RandomSurvivalForest`` (log-rank splits, Nelson-Aalen leaves);
  risk = ensemble mortality (sum of the cumulative hazard over the training time points).
* ``gbsa``: scikit-survival ``GradientBoostingSurvivalAnalysis`` with Cox partial likelihood
  loss on regression trees; risk = boosted log hazard f(x); S via Breslow baseline.
* ``coxnet``: scikit-survival ``CoxnetSurvivalAnalysis`` (glmnet-style elastic-net Cox path);
  predictions use the least penalised alpha of the path, ``alpha_min_ratio * alpha_max``,
  where alpha_max is the smallest penalty that zeroes every coefficient (scale free).
* ``km``: Kaplan-Meier reference without covariates. ``time_scale="age"`` fits S_age(a) on the
  age scale with left truncation (entry ``entry_age_days``, exit ``exit_age_days``) and predicts
  the conditional survival S(t | a) = S_age(a + t) / S_age(a); risk = 1 - S(horizon | a).
  ``time_scale="landmark"`` ignores everything: constant risk 0, S(t) = KM of
  ``duration_days``. Any model worth promoting must beat it.

Events are rare (~0.4 %) and sksurv's Cox partial-likelihood gradient for ``gbsa`` costs
O(n^2) per boosting stage (about 2 s per stage at 15k rows), so the tree families can subsample
censored rows: ``max_censored_rows`` keeps every event and at most that many random censored
rows, weighted ``n_censored / kept`` (sksurv multiplies the boosting gradient and the forest's
split criterion by the weights). ``gbsa`` defaults to 3000 and re-estimates its Breslow
baseline hazard on the *full* training frame, so its probabilities stay calibrated; ``rsf`` is
fast enough without it (default ``None``) and, if subsampled, its unweighted leaf curves
over-state failure probabilities.

**Case weights.** A training table may carry ``weight`` (the dataset stage keeps a weighted
share of the censored and of the failure rows of a big fleet, :func:`diskrisk.oot.write_tables`).
Every family fits it as if each row were ``weight`` copies: lifelines' weights (the Cox penalty
rescaled to match), sksurv's ``sample_weight`` for the trees, a weighted Breslow baseline
(:func:`breslow`) for gbsa and coxnet, weighted standardisation, and a weighted rank reference
for the ensemble. sksurv's coxnet fits its coefficients without weights (it takes none).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from diskrisk.families import registry as family_registry

log = logging.getLogger(__name__)

DURATION = "duration_days"
EVENT = "event"
# days ahead the scores publish P(fail within) for; the longest bounds the training follow-up
HORIZONS = (30, 90)
WEIGHT = "weight"  # case weight of a sampled training table (diskrisk.oot.write_tables)
SMART_COLUMN = re.compile(r"^smart_\d+_raw(_d7|_d30)?$")
_NUMERIC_BASE = ("age_days", "capacity_bytes")
_CATEGORICAL = "vendor"
_MODEL = "model"
_STRINGS = (_CATEGORICAL, _MODEL)


class ParamsError(ValueError):
    """Hyper-parameters rejected; the message names the family and the offending key."""


class ModelError(RuntimeError):
    """A model cannot be fitted or used on the data it was given."""


# --------------------------------------------------------------------------- parameters


class _Params(BaseModel):
    """Preprocessing knobs shared by every family that uses covariates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor_top_k: int = Field(6, ge=1, description="vendors kept as one-hot; the rest pooled")
    missing_indicators: bool = True
    model_ranks: bool = Field(False, description="add SMART values ranked within drive model")


class CoxPHParams(_Params):
    penalizer: float = Field(0.1, ge=0)
    l1_ratio: float = Field(0.0, ge=0, le=1)
    step_size: float = Field(
        0.3,
        gt=0,
        le=1,
        description="first Newton step (lifelines' default 0.95 cycled without converging on "
        "a weighted 300k-drive table; the penalized partial likelihood is concave, so a "
        "shorter step only changes the path, not the optimum)",
    )
    max_steps: int = Field(
        500, ge=1, description="Newton steps before lifelines gives up (a note on the card)"
    )


class WeibullAFTParams(_Params):
    penalizer: float = Field(0.1, ge=0)
    l1_ratio: float = Field(0.0, ge=0, le=1)


class _TreeParams(_Params):
    n_estimators: int = Field(100, ge=1)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(15, ge=1)
    random_state: int = 0
    max_censored_rows: int | None = Field(None, ge=1, description="see module docstring")


class RSFParams(_TreeParams):
    min_samples_split: int = Field(30, ge=2)
    max_features: Literal["sqrt", "log2"] | float | int = "sqrt"
    max_samples: float | None = Field(0.5, gt=0, le=1)
    n_jobs: int = 2


class GBSAParams(_TreeParams):
    max_depth: int | None = Field(3, ge=1)
    learning_rate: float = Field(0.1, gt=0)
    subsample: float = Field(0.8, gt=0, le=1)
    max_censored_rows: int | None = Field(3000, ge=1, description="see module docstring")


class CoxnetParams(_Params):
    l1_ratio: float = Field(0.5, gt=0, le=1)
    n_alphas: int = Field(30, ge=1)
    alpha_min_ratio: float = Field(0.01, gt=0, lt=1)
    max_iter: int = Field(100_000, ge=1)


class KMParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time_scale: Literal["age", "landmark"] = "age"
    horizon: float = Field(90.0, gt=0, description="days ahead for the age-scale risk")


class EnsembleParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    members: tuple[str, ...] = Field(
        ("coxnet", "coxph", "weibull_aft"), min_length=2, description="families averaged"
    )

    @field_validator("members")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [f for f in v if f == "ensemble" or f not in PARAM_MODELS]
        if bad:
            raise ValueError(f"members must be single model families, not {bad}")
        return v


PARAM_MODELS: dict[str, type[BaseModel]] = {
    "coxph": CoxPHParams,
    "weibull_aft": WeibullAFTParams,
    "rsf": RSFParams,
    "gbsa": GBSAParams,
    "coxnet": CoxnetParams,
    "km": KMParams,
    "ensemble": EnsembleParams,
}
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {f: m().model_dump() for f, m in PARAM_MODELS.items()}


def validate_params(family: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``family`` overridden by ``params``; raises :class:`ParamsError`."""
    if family not in PARAM_MODELS:
        raise ParamsError(f"unknown model family {family!r}; known: {sorted(PARAM_MODELS)}")
    try:
        return PARAM_MODELS[family](**dict(params or {})).model_dump()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "?"
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(PARAM_MODELS[family].model_fields))
                problems.append(f"unknown parameter {key!r} (allowed: {allowed})")
            else:
                problems.append(f"parameter {key!r}: {err['msg']}")
        raise ParamsError(f"{family}: " + "; ".join(problems)) from None


# --------------------------------------------------------------------------- preprocessing


def _log1p_clipped(x: Any) -> Any:
    return np.log1p(np.clip(np.asarray(x, dtype=float), 0, None))


def _bytes_to_tb(x: Any) -> Any:
    x = np.asarray(x, dtype=float)
    return np.where(x > 0, x / 1e12, np.nan)


def _one_to_one(_transformer: Any, names: Any) -> Any:
    return np.asarray(names, dtype=object)


def _capacity_name(_transformer: Any, _names: Any) -> Any:
    return np.asarray(["capacity_tb"], dtype=object)


class ClipToTrainingRange(TransformerMixin, BaseEstimator):
    """Hold each feature inside the range seen in training: a linear model would otherwise
    extrapolate a counter far beyond anything it learnt from into a failure probability of
    exactly 1 for a drive with no failure evidence (issue #11)."""

    def fit(self, X: Any, y: Any = None) -> ClipToTrainingRange:
        values = np.asarray(X, dtype=float)
        self.min_, self.max_ = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        self.n_features_in_ = values.shape[1]
        if hasattr(X, "columns"):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: Any) -> Any:
        return np.clip(np.asarray(X, dtype=float), self.min_, self.max_)

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        names = input_features if input_features is not None else self.feature_names_in_
        return np.asarray(names, dtype=object)


class WithinModelRank(TransformerMixin, BaseEstimator):
    """Each SMART value as its mid-rank among training drives of the same drive model.

    Raw scales are vendor- and model-specific (smart_1/smart_7 on Seagate count differently
    from everyone else), so "unusual for this model" is comparable where the raw value is not.
    Input: the value columns, then ``model``; models with fewer than ``min_drives`` training
    rows, and unseen ones, use the pooled distribution. The reference values are stored in
    the fitted transformer, so scoring ranks against the training data.
    """

    def __init__(self, min_drives: int = 50) -> None:
        self.min_drives = min_drives

    def fit(self, X: pd.DataFrame, y: Any = None) -> WithinModelRank:
        self.columns_ = list(X.columns[:-1])
        model = X.iloc[:, -1].astype(str)
        self.pooled_ = {c: np.sort(X[c].dropna().to_numpy(float)) for c in self.columns_}
        counts = model.value_counts()
        self.by_model_: dict[str, dict[str, np.ndarray]] = {}
        for m in counts.index[counts >= self.min_drives]:
            rows = X[model == m]
            self.by_model_[m] = {
                c: np.sort(rows[c].dropna().to_numpy(float)) for c in self.columns_
            }
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        model = X.iloc[:, -1].astype(str).to_numpy()
        out = np.full((len(X), len(self.columns_)), np.nan)
        for j, c in enumerate(self.columns_):
            x = X[c].to_numpy(float)
            for m in np.unique(model):
                rows = model == m
                ref = self.by_model_.get(m, {}).get(c)
                if ref is None or ref.size == 0:
                    ref = self.pooled_[c]
                if ref.size:
                    lo = np.searchsorted(ref, x[rows], side="left")
                    hi = np.searchsorted(ref, x[rows], side="right")
                    out[rows, j] = (lo + hi) / (2.0 * ref.size)
        out[np.isnan(X[self.columns_].to_numpy(float))] = 0.5  # unknown: a typical drive
        return out

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        return np.asarray([f"{c}_model_rank" for c in self.columns_], dtype=object)


def covariate_columns(df: pd.DataFrame) -> list[str]:
    """Input columns a model may use: SMART counters, age, capacity, vendor (when present)."""
    smart = sorted((c for c in df.columns if SMART_COLUMN.match(c)), key=_smart_sort_key)
    base = [c for c in (*_NUMERIC_BASE, _CATEGORICAL) if c in df.columns]
    return base + smart


def _smart_sort_key(name: str) -> tuple[int, str]:
    return int(name.split("_")[1]), name


#: The imputers' fill value: np.median of each column's present values (sklearn's callable
#: strategy). The same medians as ``strategy="median"``, which sorts a masked copy of the whole
#: matrix: 3.8 s against 0.45 s on 550k rows x 40 columns, three fits per family and run.
_MEDIAN = np.median


def build_preprocessor(df: pd.DataFrame, params: Mapping[str, Any]) -> tuple[Pipeline, list[str]]:
    """An unfitted transform pipeline for ``df`` and the input columns it reads.

    Columns that are entirely missing in ``df`` are left out (nothing to learn from them).
    """
    cols = [c for c in covariate_columns(df) if c == _CATEGORICAL or df[c].notna().any()]
    smart = [c for c in cols if SMART_COLUMN.match(c)]
    parts: list[tuple[str, Any, list[str]]] = []
    if smart:
        parts.append(
            (
                "smart",
                Pipeline(
                    [
                        (
                            "log1p",
                            FunctionTransformer(_log1p_clipped, feature_names_out=_one_to_one),
                        ),
                        (
                            "impute",
                            SimpleImputer(
                                strategy=_MEDIAN, add_indicator=params["missing_indicators"]
                            ),
                        ),
                    ]
                ),
                smart,
            )
        )
    if "age_days" in cols:
        parts.append(("age", SimpleImputer(strategy=_MEDIAN), ["age_days"]))
    if "capacity_bytes" in cols:
        tb = FunctionTransformer(_bytes_to_tb, feature_names_out=_capacity_name)
        parts.append(
            (
                "capacity",
                Pipeline([("tb", tb), ("impute", SimpleImputer(strategy=_MEDIAN))]),
                ["capacity_bytes"],
            )
        )
    values = [c for c in smart if c.endswith("_raw")]
    if params.get("model_ranks") and values and _MODEL in df.columns:
        cols.append(_MODEL)
        parts.append(("within_model", WithinModelRank(), [*values, _MODEL]))
    if _CATEGORICAL in cols:
        onehot = OneHotEncoder(
            max_categories=params["vendor_top_k"] + 1,
            handle_unknown="infrequent_if_exist",
            sparse_output=False,
        )
        parts.append(("vendor", onehot, [_CATEGORICAL]))
    if not parts:
        raise ModelError("no covariate columns (smart_<id>_raw*, age_days, capacity_bytes, vendor)")
    pipe = Pipeline(
        [
            ("columns", ColumnTransformer(parts, verbose_feature_names_out=False)),
            ("nonconstant", VarianceThreshold(0.0)),
            ("scale", StandardScaler()),
            ("clip", ClipToTrainingRange()),
        ]
    ).set_output(transform="pandas")
    return pipe, cols


def prepare_input(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``df`` restricted to ``columns`` with stable dtypes; absent columns become missing."""
    out = pd.DataFrame(index=df.index)
    for c in columns:
        if c in _STRINGS:
            v = df[c] if c in df.columns else pd.Series(None, index=df.index, dtype=object)
            out[c] = v.astype(object).where(v.notna(), "unknown").astype(str)
        else:
            v = df[c] if c in df.columns else pd.Series(np.nan, index=df.index)
            out[c] = pd.to_numeric(v, errors="coerce").astype("float64")
    return out


def survival_target(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(time, event) arrays of the landmark outcome, checked against the contract."""
    missing = [c for c in (DURATION, EVENT) if c not in df.columns]
    if missing:
        raise ModelError(f"survival frame lacks {missing}")
    time = df[DURATION].to_numpy(dtype=float)
    event = df[EVENT].to_numpy().astype(bool)
    if np.isnan(time).any() or (time <= 0).any():
        raise ModelError(f"{DURATION} must be positive and known for every row")
    return time, event


def case_weights(df: pd.DataFrame) -> np.ndarray | None:
    """The rows' case weights (column ``weight``), or None when every row weighs 1."""
    if WEIGHT not in df.columns:
        return None
    w = df[WEIGHT].to_numpy(dtype=float)
    if not np.isfinite(w).all() or (w <= 0).any():
        raise ModelError(f"{WEIGHT} must be positive and finite for every row")
    return None if np.all(w == 1.0) else w


@contextlib.contextmanager
def _fractional_weights_ok() -> Iterator[None]:
    """lifelines warns that non-integer weights need robust standard errors; the models here
    use point estimates only."""
    from lifelines.exceptions import StatisticalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticalWarning)
        yield


@contextlib.contextmanager
def _convergence_notes(family: str) -> Iterator[list[str]]:
    """lifelines' convergence warnings, kept as notes for the model card and the run: a Newton
    fit that stopped at ``max_steps`` still returns coefficients (on the 300k-drive fleet,
    after 500 steps cycling through four points, 5 min), so only the warning tells."""
    from lifelines.exceptions import ConvergenceWarning

    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield notes
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            text = f"{family}: {str(w.message).split('.')[0].strip()}"
            log.warning("%s", text)
            notes.append(text)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


# What a lifelines fitter keeps of its training rows: the rows, per-row predictions,
# likelihood closures over the design matrix, confidence bands. Prediction reads none of them
# (coefficients, the baseline, ``survival_function_``), while they made every shipped model
# grow with its table: coxph ~35 MB, km ~35 MB on the fleet's 550k-row tables, logged to
# MLflow on every run and loaded by every scorer. What they served (``print_summary``, the
# fitter's own concordance, ``check_assumptions``) needs the table, which the run's lineage
# names (``data.train_uri``).
_LIFELINES_ROWS = (
    "durations",
    "event_observed",
    "weights",
    "entry",
    "_predicted_partial_hazards_",
    "_predicted_median",
    "_neg_likelihood",
    "_neg_likelihood_with_penalty_function",
    "event_table",
    "cumulative_density_",
    "_cumulative_sq_",
    "confidence_interval_",
    "confidence_interval_survival_function_",
    "confidence_interval_cumulative_density_",
)


def _without_training_rows(fitter: Any) -> Any:
    """``fitter`` (a fitted lifelines fitter) without :data:`_LIFELINES_ROWS`, in place."""
    for obj in (fitter, vars(fitter).get("_model")):  # CoxPHFitter keeps its fit in _model
        if obj is not None:
            for name in _LIFELINES_ROWS:
                vars(obj).pop(name, None)
    return fitter


def breslow(
    risk_score: np.ndarray, time: np.ndarray, event: np.ndarray, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Breslow's baseline survival of a Cox-type model with case weights ``w``:

    H0(t) = sum over failure times t_i <= t of d_i / sum_{j: t_j >= t_i} w_j exp(f_j),

    d_i the weighted failures at t_i, f the fitted log hazard; S0 = exp(-H0). With unit weights
    it is sksurv's ``BreslowEstimator`` (tested), which takes no weights: a sampled table needs
    them, or the failures it keeps whole would inflate the hazard. Returns (failure times, S0).
    """
    w = np.ones(time.size) if weight is None else np.asarray(weight, dtype=float)
    times, inverse = np.unique(time, return_inverse=True)
    at_time = np.bincount(inverse, weights=w * np.exp(risk_score), minlength=times.size)
    at_risk = np.cumsum(at_time[::-1])[::-1]
    failed = np.bincount(inverse, weights=w * event, minlength=times.size)
    keep = failed > 0
    return times[keep], np.exp(-np.cumsum(failed[keep] / at_risk[keep]))


def _cox_survival(baseline: tuple[np.ndarray, np.ndarray], f: np.ndarray, h: np.ndarray):
    """S(t | x) = S0(t) ** exp(f(x))."""
    base = step_at(baseline[0], baseline[1], h)
    return base[None, :] ** np.exp(f)[:, None]


def _surv(event: np.ndarray, time: np.ndarray) -> np.ndarray:
    from sksurv.util import Surv

    return Surv.from_arrays(event=event, time=time)


def _check_horizons(horizons: Iterable[float]) -> np.ndarray:
    h = np.asarray(list(horizons), dtype=float)
    if h.ndim != 1 or h.size == 0 or not np.isfinite(h).all() or (h <= 0).any():
        raise ValueError(f"horizons must be positive finite days, got {horizons!r}")
    return h


def _represented(df: pd.DataFrame) -> int:
    """Drive-snapshots a training table stands for (its weights' sum when sampled)."""
    w = case_weights(df)
    return len(df) if w is None else round(float(w.sum()))


def step_at(times: np.ndarray, values: np.ndarray, horizons: np.ndarray) -> np.ndarray:
    """Right-continuous step function(s) ``values`` on grid ``times`` evaluated at horizons.

    Before the first grid point S = 1 (no event yet); past the last one the last value is
    carried forward (the model knows nothing beyond its training follow-up).
    """
    idx = np.searchsorted(times, horizons, side="right") - 1
    out = values[..., np.clip(idx, 0, None)]
    return np.where(idx < 0, 1.0, out)


# --------------------------------------------------------------------------- interface


class RiskModel(ABC):
    """A fitted-on-train survival model with its preprocessing.

    ``predict_risk`` only ranks drives (its scale differs between families);
    ``predict_survival`` gives probabilities comparable across families.
    """

    family: ClassVar[str]
    uses_covariates: ClassVar[bool] = True

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = validate_params(self.family, params)
        self.preprocessor_: Pipeline | None = None
        self.input_columns_: list[str] = []
        self.feature_names_: list[str] = []
        self.train_max_time_: float | None = None
        self.n_train_: int = 0
        self.n_train_events_: int = 0
        self.fit_notes_: list[str] = []  # what the fitter reported (e.g. no convergence)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.params.items() if DEFAULT_PARAMS[self.family][k] != v}
        return f"{type(self).__name__}({changed})"

    # -- public API
    def fit(self, df: pd.DataFrame) -> RiskModel:
        time, event = survival_target(df)
        if event.sum() < 2:
            raise ModelError(f"{self.family}: need at least 2 events to fit, got {event.sum()}")
        X = self._fit_transform(df) if self.uses_covariates else None
        self.fit_notes_ = []
        self._fit(X, time, event, df)
        self.train_max_time_ = float(time.max())
        self.n_train_, self.n_train_events_ = _represented(df), int(event.sum())
        if self.uses_covariates:
            self._check_fit(X, df, time, event)
        return self

    def _check_fit(
        self, X: pd.DataFrame | None, df: pd.DataFrame, time: np.ndarray, event: np.ndarray
    ) -> None:
        """A covariate model that ranks its own training drives worse than chance did not fit
        (seen: Newton-Raphson settling on a degenerate optimum with collinear deltas); refuse it
        rather than let it reach evaluation looking like a model. ``X``: the training rows as
        fitting transformed them, what ``predict_risk(df)`` would transform them to again."""
        from diskrisk.concordance import harrell_c

        c = harrell_c(event.astype(bool), time, np.asarray(self._risk(X, df), dtype=float))
        if not c >= 0.5:
            raise ModelError(f"{self.family}: degenerate fit, training Harrell C {c:.3f} < 0.5")

    def predict_risk(self, df: pd.DataFrame) -> np.ndarray:
        """Ranking score per row, higher = riskier."""
        self._check_fitted()
        return np.asarray(self._risk(self._transform(df), df), dtype=float)

    def predict_survival(
        self, df: pd.DataFrame, horizons: Iterable[float] = HORIZONS
    ) -> np.ndarray:
        """S(t | x) for each row and horizon (days after the snapshot): shape (n, len(h))."""
        self._check_fitted()
        h = _check_horizons(horizons)
        return self._floored(self._survival(self._transform(df), df, h))

    def predict_risk_and_survival(
        self, df: pd.DataFrame, horizons: Iterable[float] = HORIZONS
    ) -> tuple[np.ndarray, np.ndarray]:
        """``predict_risk`` and ``predict_survival`` from one pass over ``df`` (scoring a fleet:
        the forest walks its trees once, and the preprocessing runs once)."""
        self._check_fitted()
        h = _check_horizons(horizons)
        risk, s = self._risk_and_survival(self._transform(df), df, h)
        return np.asarray(risk, dtype=float), self._floored(s)

    def _floored(self, s: np.ndarray) -> np.ndarray:
        # A model fitted on n drives cannot resolve a survival below 1/(n+1): flooring there
        # keeps an extreme drive "very likely to fail", never a certain 1.0 (issue #11).
        s = np.asarray(s, dtype=float)
        return np.clip(s, 1.0 / (max(self.n_train_, 1) + 1), 1.0)

    def _risk_and_survival(
        self, X: pd.DataFrame | None, df: pd.DataFrame, h: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._risk(X, df), self._survival(X, df, h)

    def horizon_support(self, horizons: Iterable[float]) -> dict[float, str | None]:
        """None for a horizon the training follow-up covers, else why it is unsupported.

        Beyond the longest follow-up the data says nothing: a non-parametric curve would be
        held flat (p_fail_90d = p_fail_30d) and a parametric one extrapolated; both would be
        published as if measured."""
        self._check_fitted()
        top = float(self.train_max_time_ or 0)
        return {
            float(h): None
            if h <= top
            else f"{h:g} d is beyond the training follow-up ({top:g} d): not estimable"
            for h in _check_horizons(horizons)
        }

    def feature_importance(self) -> pd.Series:
        """Signed effect (linear families: positive = raises risk) or importance; may be empty."""
        return pd.Series(dtype=float)

    def continue_training(self, df: pd.DataFrame, extra_estimators: int) -> RiskModel:
        """Add ``extra_estimators`` stages/trees fitted on ``df``; families without stages refit."""
        return self.fit(df)

    @property
    def supports_warm_start(self) -> bool:
        return False

    # -- helpers for subclasses
    def _fit_transform(self, df: pd.DataFrame) -> pd.DataFrame:
        pipe, cols = build_preprocessor(df, self.params)
        w = case_weights(df)  # a sampled table: standardise to the fleet it stands for
        X = pipe.fit_transform(
            prepare_input(df, cols), **({} if w is None else {"scale__sample_weight": w})
        )
        if X.shape[1] == 0:
            raise ModelError(f"{self.family}: every covariate is constant in the training data")
        self.preprocessor_, self.input_columns_ = pipe, cols
        self.feature_names_ = list(X.columns)
        return X

    def _transform(self, df: pd.DataFrame) -> pd.DataFrame | None:
        if not self.uses_covariates:
            return None
        assert self.preprocessor_ is not None
        return self.preprocessor_.transform(prepare_input(df, self.input_columns_))

    def _check_fitted(self) -> None:
        if self.train_max_time_ is None:
            raise ModelError(f"{self.family} model is not fitted")

    @abstractmethod
    def _fit(
        self, X: pd.DataFrame | None, time: np.ndarray, event: np.ndarray, df: pd.DataFrame
    ) -> None: ...

    @abstractmethod
    def _risk(self, X: pd.DataFrame | None, df: pd.DataFrame) -> np.ndarray: ...

    @abstractmethod
    def _survival(self, X: pd.DataFrame | None, df: pd.DataFrame, h: np.ndarray) -> np.ndarray: ...


# --------------------------------------------------------------------------- lifelines families

_T, _E, _W = "__duration", "__event", "__weight"


class _LifelinesModel(RiskModel):
    fitter_: Any

    def _make_fitter(self, weight_per_row: float) -> Any:
        raise NotImplementedError

    def _fit(self, X, time, event, df):
        data = X.assign(**{_T: time, _E: event.astype(int)})
        w = case_weights(df)
        if w is not None:
            data[_W] = w
        with _fractional_weights_ok(), _convergence_notes(self.family) as notes:
            fitter = self._make_fitter(1.0 if w is None else w.sum() / len(w)).fit(
                data,
                duration_col=_T,
                event_col=_E,
                weights_col=None if w is None else _W,
                **self._fit_options(),
            )
        self.fitter_ = _without_training_rows(fitter)
        self.fit_notes_ += notes

    def _fit_options(self) -> dict[str, Any]:
        return {}

    def _survival(self, X, df, h):
        return self.fitter_.predict_survival_function(X, times=h).to_numpy().T


class CoxPHModel(_LifelinesModel):
    family = "coxph"

    def _make_fitter(self, weight_per_row):
        """lifelines scales the Cox penalty by the *rows* and the log-likelihood by the
        weights: on a sampled table (weights summing to ~13x its rows) the penalty would be
        ~13x weaker than on the table it stands for, and the fit ran to extreme coefficients
        (log hazards up to 24 on the real 2013 days, 1 expected failure for 16 in-sample).
        Scaling the penalizer by sum(weights) / rows keeps the full table's objective."""
        from lifelines import CoxPHFitter

        return CoxPHFitter(
            penalizer=self.params["penalizer"] * weight_per_row, l1_ratio=self.params["l1_ratio"]
        )

    def _fit_options(self) -> dict[str, Any]:
        p = self.params
        return {"fit_options": {"step_size": p["step_size"], "max_steps": p["max_steps"]}}

    def _risk(self, X, df):
        return self.fitter_.predict_log_partial_hazard(X).to_numpy()

    def feature_importance(self):
        return self.fitter_.params_.rename("coef")


class WeibullAFTModel(_LifelinesModel):
    family = "weibull_aft"

    def _make_fitter(self, weight_per_row):
        # lifelines' parametric fitters divide the log-likelihood by the weights' sum, so the
        # penalty already has the full table's scale
        from lifelines import WeibullAFTFitter

        return WeibullAFTFitter(
            penalizer=self.params["penalizer"], l1_ratio=self.params["l1_ratio"]
        )

    def _risk(self, X, df):
        cumhaz = self.fitter_.predict_cumulative_hazard(X, times=[1.0]).to_numpy()[0]
        return np.log(np.maximum(cumhaz, np.finfo(float).tiny))

    def feature_importance(self):
        # lambda_ coefficients lengthen life; negate so positive = raises risk like Cox.
        coef = -self.fitter_.params_.loc["lambda_"]
        return coef.drop("Intercept", errors="ignore").rename("-aft_coef")


# --------------------------------------------------------------------------- sksurv families


class _SksurvModel(RiskModel):
    estimator_: Any

    def _risk(self, X, df):
        return self.estimator_.predict(X)

    def _survival(self, X, df, h):
        grid = self.estimator_.predict_survival_function(X, return_array=True)
        return step_at(np.asarray(self.estimator_.unique_times_, dtype=float), grid, h)


class _TreeModel(_SksurvModel):
    def _sample(self, time, event, base):
        """Rows to fit on and their weights (censored subsampling, see module docstring), on
        top of the table's own case weights ``base``."""
        cap, censored = self.params["max_censored_rows"], np.flatnonzero(~event)
        if cap is None or censored.size <= cap:
            return np.arange(time.size), base
        rng = np.random.default_rng(self.params["random_state"])
        rows = np.sort(np.concatenate([np.flatnonzero(event), rng.choice(censored, cap, False)]))
        weight = np.where(event[rows], 1.0, censored.size / cap)
        return rows, weight if base is None else weight * base[rows]

    def _fit(self, X, time, event, df):
        base = case_weights(df)
        rows, weight = self._sample(time, event, base)
        self.estimator_ = self._make_estimator()
        self.estimator_.fit(X.iloc[rows], _surv(event[rows], time[rows]), sample_weight=weight)
        self._after_fit(X, time, event, base)

    def _after_fit(self, X, time, event, weight) -> None:
        """Hook run after (warm-started) fitting, with the full training data."""

    @property
    def supports_warm_start(self) -> bool:
        return True

    def continue_training(self, df, extra_estimators):
        """Warm start: keep the fitted preprocessing and trees, grow ``extra_estimators`` more."""
        self._check_fitted()
        if extra_estimators < 1:
            raise ValueError("extra_estimators must be >= 1")
        time, event = survival_target(df)
        X = self._transform(df)
        base = case_weights(df)
        rows, weight = self._sample(time, event, base)
        if not self._can_warm_start(time[rows], event[rows]):
            self.params = {
                **self.params,
                "n_estimators": self.params["n_estimators"] + extra_estimators,
            }
            return self.fit(df)
        n = self.params["n_estimators"] + extra_estimators
        self.estimator_.set_params(warm_start=True, n_estimators=n)
        self.estimator_.fit(X.iloc[rows], _surv(event[rows], time[rows]), sample_weight=weight)
        self.estimator_.set_params(warm_start=False)
        self._after_fit(X, time, event, base)
        self.params = {**self.params, "n_estimators": n}
        self.train_max_time_ = max(self.train_max_time_ or 0.0, float(time.max()))
        self.n_train_, self.n_train_events_ = _represented(df), int(event.sum())
        return self

    def _can_warm_start(self, time, event) -> bool:
        return True

    @abstractmethod
    def _make_estimator(self) -> Any: ...

    @property
    def n_estimators_fitted(self) -> int:
        return len(self.estimator_.estimators_)


class RSFModel(_TreeModel):
    family = "rsf"

    def _make_estimator(self):
        from sksurv.ensemble import RandomSurvivalForest

        p = self.params
        return RandomSurvivalForest(
            n_estimators=p["n_estimators"],
            max_depth=p["max_depth"],
            min_samples_split=p["min_samples_split"],
            min_samples_leaf=p["min_samples_leaf"],
            max_features=p["max_features"],
            max_samples=p["max_samples"],
            n_jobs=p["n_jobs"],
            random_state=p["random_state"],
            low_memory=False,  # True would disable predict_survival_function
        )

    def _risk(self, X, df):
        return self._risk_and_survival(X, df, np.array([]))[0]

    def _survival(self, X, df, h):
        return self._risk_and_survival(X, df, h)[1]

    def _risk_and_survival(self, X, df, h):
        """The forest's means over its trees, from per-leaf tables.

        Each tree's leaf holds curves on the forest's time grid, (node, time, [CHF, S]). The
        risk is the mean over trees of the CHF summed at the event times, S(h) the mean of the
        trees' S at h (sksurv's definitions). sksurv's ``predict`` and
        ``predict_survival_function`` copy every drive's whole curve out of every tree (drives x
        time points x 2 floats per tree) before reducing; reducing each tree's leaves once and
        indexing them with ``apply``'s leaf ids gives the same numbers
        (``tests/test_models.py``) 20x faster at 300k drives (57.8 -> 2.5 s, 100 trees of ~1k
        nodes on 90 time points), and one ``apply`` serves the risk and every horizon.
        """
        forest = self.estimator_
        times = np.asarray(forest.unique_times_, dtype=float)
        leaves = forest.apply(X)
        total: np.ndarray | float = 0.0
        for j, tree in enumerate(forest.estimators_):
            v = tree.tree_.value
            table = np.column_stack(
                [v[:, forest.is_event_time_, 0].sum(1), step_at(times, v[..., 1], h)]
            )
            total = total + table[leaves[:, j]]
        mean = np.asarray(total) / len(forest.estimators_)
        return mean[:, 0], mean[:, 1:]

    def _can_warm_start(self, time, event):
        # Every tree stores its leaf curves on the forest's time grid; sksurv replaces that grid
        # when fitting on new data, so old trees are only valid if the grid is unchanged.
        return np.array_equal(np.unique(time), self.estimator_.unique_times_)

    def feature_importance(self):
        # sksurv's forest has no impurity importance; evaluate.py computes permutation importance.
        return pd.Series(dtype=float)


class GBSAModel(_TreeModel):
    family = "gbsa"

    def _make_estimator(self):
        from sksurv.ensemble import GradientBoostingSurvivalAnalysis

        p = self.params
        return GradientBoostingSurvivalAnalysis(
            loss="coxph",
            n_estimators=p["n_estimators"],
            learning_rate=p["learning_rate"],
            max_depth=p["max_depth"],
            min_samples_leaf=p["min_samples_leaf"],
            subsample=p["subsample"],
            random_state=p["random_state"],
        )

    def _after_fit(self, X, time, event, weight):
        self.baseline_ = breslow(self.estimator_.predict(X), time, event, weight)

    def __setstate__(self, state: dict[str, Any]) -> None:
        s0 = state.get("baseline_")
        if s0 is not None and not isinstance(s0, tuple):  # pickled before the weighted Breslow
            s0 = s0.baseline_survival_
            state["baseline_"] = (np.asarray(s0.x, dtype=float), np.asarray(s0.y, dtype=float))
        self.__dict__.update(state)

    def _survival(self, X, df, h):
        """S(t | x) = S0(t) ** exp(f(x)), S0 by weighted Breslow on the full training frame."""
        return _cox_survival(self.baseline_, self.estimator_.predict(X), h)

    def feature_importance(self):
        return pd.Series(
            self.estimator_.feature_importances_, index=self.feature_names_, name="importance"
        )


class CoxnetModel(_SksurvModel):
    family = "coxnet"

    def _fit(self, X, time, event, df):
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        p = self.params
        self.estimator_ = CoxnetSurvivalAnalysis(
            l1_ratio=p["l1_ratio"],
            n_alphas=p["n_alphas"],
            alpha_min_ratio=p["alpha_min_ratio"],
            max_iter=p["max_iter"],
            fit_baseline_model=True,
        ).fit(X, _surv(event, time))
        # sksurv's coxnet takes no case weights: on a sampled table the coefficients are
        # fitted on the sample as it is (its risk sets hold a larger share of the failures
        # than of the censored drives; the out-of-time C measures what that costs), while
        # the baseline hazard, and so every probability, uses the weights.
        self.baseline_ = breslow(self.estimator_.predict(X), time, event, case_weights(df))

    def _survival(self, X, df, h):
        if getattr(self, "baseline_", None) is None:  # pickled before the weighted baseline
            return super()._survival(X, df, h)
        return _cox_survival(self.baseline_, self.estimator_.predict(X), h)

    def feature_importance(self):
        coef = self.estimator_.coef_[:, -1]  # last alpha of the path, the one predictions use
        return pd.Series(coef, index=self.feature_names_, name="coef")


# --------------------------------------------------------------------------- Kaplan-Meier


class KaplanMeierModel(RiskModel):
    family = "km"
    uses_covariates = False

    def _fit(self, X, time, event, df):
        from lifelines import KaplanMeierFitter

        w = case_weights(df)
        with _fractional_weights_ok():
            self.landmark_ = _without_training_rows(KaplanMeierFitter().fit(time, event, weights=w))
        self.age_ = None
        if self.params["time_scale"] == "age":
            entry, exit_ = _age_interval(df, time)
            ok = np.isfinite(entry) & np.isfinite(exit_)
            if ok.sum() < 2 or not event[ok].any():
                raise ModelError("km(time_scale='age') needs entry/exit ages with events")
            from lifelines.exceptions import StatError

            try:
                with _fractional_weights_ok():
                    self.age_ = _without_training_rows(
                        KaplanMeierFitter().fit(
                            exit_[ok],
                            event[ok],
                            entry=entry[ok],
                            weights=None if w is None else w[ok],
                        )
                    )
            except StatError as exc:  # e.g. a short window: too few early entries per event
                raise ModelError(f"km(time_scale='age'): {exc}") from None
        self.input_columns_ = ["age_days"]  # read only on the age scale; keeps a signature

    def _survival(self, X, df, h):
        base = self.landmark_.survival_function_at_times(h).to_numpy()
        out = np.tile(base, (len(df), 1))
        if self.age_ is None:
            return out
        age = prepare_input(df, ["age_days"])["age_days"].to_numpy()
        known = np.isfinite(age)
        a = age[known]
        s_a = self._s_age(a)
        s_at = self._s_age((a[:, None] + h[None, :]).ravel()).reshape(a.size, h.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            cond = np.where(s_a[:, None] > 0, s_at / s_a[:, None], 0.0)
        out[known] = cond
        return out

    def _s_age(self, ages: np.ndarray) -> np.ndarray:
        return self.age_.survival_function_at_times(ages).to_numpy()

    def _risk(self, X, df):
        if self.age_ is None:
            return np.zeros(len(df))
        return 1.0 - self._survival(X, df, np.array([self.params["horizon"]]))[:, 0]


def _age_interval(df: pd.DataFrame, time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if {"entry_age_days", "exit_age_days"} <= set(df.columns):
        return (
            df["entry_age_days"].to_numpy(dtype=float),
            df["exit_age_days"].to_numpy(dtype=float),
        )
    if "age_days" not in df.columns:
        raise ModelError("km(time_scale='age') needs entry_age_days/exit_age_days or age_days")
    entry = df["age_days"].to_numpy(dtype=float)
    return entry, entry + time


# --------------------------------------------------------------------------- ensemble


class EnsembleModel(RiskModel):
    """Rank average of member families (default: the ones that hold up out of time).

    Risk scales differ between families, so each member's risk becomes its quantile among
    that member's *training* risks (stored, so one drive scores the same alone or in a day);
    the ensemble risk is their mean. S(t | x) is the members' mean survival. Rank averaging
    smooths the member-specific noise at the top of the list, where the inspection budget is.
    """

    family = "ensemble"

    def fit(self, df: pd.DataFrame, members: Sequence[RiskModel] | None = None) -> RiskModel:
        """``members``: the member families fitted on ``df`` already (a run's stored fits,
        :func:`diskrisk.train.fitted`); fitted here when not given."""
        time, event = survival_target(df)
        if members is None:
            members = [make_model(f).fit(df) for f in self.params["members"]]
        if [m.family for m in members] != list(self.params["members"]):
            raise ValueError(f"members {[m.family for m in members]} != {self.params['members']}")
        self.members_ = list(members)
        w = case_weights(df)
        w = np.ones(len(df)) if w is None else w
        self.reference_, self.reference_cdf_ = [], []
        for m in self.members_:
            risk = m.predict_risk(df)
            order = np.argsort(risk, kind="stable")
            ref, cdf = risk[order], np.cumsum(w[order]) / w.sum()
            # the step function needs each distinct risk once, with the CDF at its last row:
            # drives sharing covariates share a risk, so the model stops growing with the table
            last = np.append(ref[1:] != ref[:-1], True)
            self.reference_.append(ref[last])
            self.reference_cdf_.append(cdf[last])
        self.input_columns_ = sorted({c for m in self.members_ for c in m.input_columns_})
        self.feature_names_ = self.input_columns_
        self.train_max_time_ = float(time.max())
        self.n_train_, self.n_train_events_ = _represented(df), int(event.sum())
        return self

    def _transform(self, df: pd.DataFrame) -> pd.DataFrame | None:
        return None  # each member applies its own preprocessing

    def _fit(self, X, time, event, df):  # pragma: no cover - fit() is overridden
        raise NotImplementedError

    def _risk(self, X, df):
        cdfs = getattr(self, "reference_cdf_", None)  # pickled before weights: uniform
        ranks = []
        for k, (m, ref) in enumerate(zip(self.members_, self.reference_, strict=True)):
            idx = np.searchsorted(ref, m.predict_risk(df), side="right")
            cdf = cdfs[k] if cdfs else np.arange(1, ref.size + 1) / ref.size
            ranks.append(np.where(idx > 0, cdf[np.maximum(idx - 1, 0)], 0.0))
        return np.mean(ranks, axis=0)

    def _survival(self, X, df, h):
        return np.mean([m.predict_survival(df, h) for m in self.members_], axis=0)

    def feature_importance(self) -> pd.Series:
        """Mean of the members' signed effects (standardised features, same names)."""
        parts = [m.feature_importance() for m in self.members_]
        parts = [p for p in parts if not p.empty]
        if not parts:
            return pd.Series(dtype=float)
        return pd.concat(parts, axis=1).mean(axis=1).rename("mean_member_effect")


# --------------------------------------------------------------------------- registry

FAMILIES: dict[str, type[RiskModel]] = family_registry(
    CoxPHModel, WeibullAFTModel, RSFModel, GBSAModel, CoxnetModel, KaplanMeierModel, EnsembleModel
)


def make_model(family: str, params: Mapping[str, Any] | None = None) -> RiskModel:
    """An unfitted model of ``family`` with ``params`` over :data:`DEFAULT_PARAMS`."""
    if family not in FAMILIES:
        raise ParamsError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[family](params)


def warm_start(
    model: RiskModel, df: pd.DataFrame, extra_estimators: int, *, inplace: bool = False
) -> RiskModel:
    """Continue training ``model`` on ``df`` (tree families add stages, others refit).

    Works on a copy unless ``inplace``, so the currently served model is never mutated.
    """
    target = model if inplace else copy.deepcopy(model)
    return target.continue_training(df, extra_estimators)
