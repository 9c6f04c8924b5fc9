"""MLflow ``pyfunc`` packaging of a fitted :class:`~diskrisk.models.RiskModel`.

The model object (preprocessing included) is pickled by MLflow together with the
:class:`RiskPyfunc` wrapper; the ``diskrisk`` package is shipped as ``code_paths`` so loading
needs only the pinned third-party requirements, not an installed diskrisk. Scoring output per
drive: ``risk`` (family-specific ranking score, higher = riskier) and ``p_fail_<h>d`` =
1 - S(h | x) for the model's horizons (30 and 90 days by default). A horizon beyond the
training follow-up is published as missing (NaN) and the metadata's ``unsupported_horizons``
says why, rather than a flat copy of the last supported value.

Input columns are all optional in the signature (a day may lack a SMART attribute: it is then
imputed like a missing value). Types follow the data contract: ``capacity_bytes`` is a long
(int64, -1 = unknown, as in the lake), ``vendor`` a string, every other covariate a double.
MLflow refuses int64 -> double, so a frame straight from ``diskrisk.survival`` is accepted (extra
columns are ignored) and :func:`model_input` normalises anything else.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ColSpec, Schema

from diskrisk.models import HORIZONS, RiskModel, prepare_input

LONG_COLUMNS = ("capacity_bytes",)  # int64 in the lake schema; -1 = unknown
REQUIREMENTS = (
    "mlflow",
    "scikit-survival",
    "scikit-learn",
    "lifelines",
    "pandas",
    "numpy",
    "scipy",
    "cloudpickle",
    "pydantic",
)


def output_columns(horizons: Sequence[float] = HORIZONS) -> list[str]:
    return ["risk", *(f"p_fail_{h:g}d" for h in horizons)]


class RiskPyfunc(PythonModel):
    """Serve a :class:`RiskModel`: covariates in, risk and failure probabilities out."""

    def __init__(self, model: RiskModel, horizons: Sequence[float] = HORIZONS) -> None:
        self.model = model
        self.horizons = tuple(float(h) for h in horizons)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        model_input = pd.DataFrame(model_input)
        risk, survival = self.model.predict_risk_and_survival(model_input, self.horizons)
        out = pd.DataFrame(
            1.0 - survival, columns=output_columns(self.horizons)[1:], index=model_input.index
        )
        for h, why in self.model.horizon_support(self.horizons).items():
            if why is not None:  # published as missing; the reason is in the model metadata
                out[f"p_fail_{h:g}d"] = np.nan
        out.insert(0, "risk", risk)
        return out


def model_input(df: pd.DataFrame, model: RiskModel) -> pd.DataFrame:
    """The columns ``model`` reads, with the dtypes its signature declares."""
    out = prepare_input(df, model.input_columns_)
    return with_long_columns(out)


def with_long_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Integer columns as the signature declares them (a missing capacity becomes -1), so a
    NaN capacity in one row cannot make MLflow refuse a whole day's input."""
    out = df.copy()
    for c in LONG_COLUMNS:
        if c in out:
            out[c] = out[c].fillna(-1).round().astype("int64")
    return out


def build_signature(
    model: RiskModel,
    sample: pd.DataFrame,
    n_example: int = 5,
    horizons: Sequence[float] = HORIZONS,
) -> tuple[ModelSignature, pd.DataFrame]:
    """Signature (all inputs optional) and a small input example drawn from ``sample``."""
    example = model_input(sample.head(n_example), model)
    output = RiskPyfunc(model, horizons).predict(None, example)
    with warnings.catch_warnings():  # the long capacity column is deliberate (lake schema)
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        inferred = infer_signature(example, output)
    inputs = Schema([ColSpec(c.type, c.name, required=False) for c in inferred.inputs.inputs])
    return ModelSignature(inputs=inputs, outputs=inferred.outputs), example


def pip_requirements() -> list[str]:
    """Pins of the libraries the pickled model needs, taken from the running environment."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def package_dir() -> Path:
    import diskrisk

    return Path(diskrisk.__file__).resolve().parent


def pyfunc_kwargs(
    model: RiskModel, sample: pd.DataFrame, horizons: Sequence[float] = HORIZONS
) -> dict[str, Any]:
    """Arguments shared by ``mlflow.pyfunc.save_model`` and ``mlflow.pyfunc.log_model``."""
    signature, example = build_signature(model, sample, horizons=horizons)
    return {
        "python_model": RiskPyfunc(model, horizons),
        "signature": signature,
        "input_example": example,
        "code_paths": [str(package_dir())],
        "pip_requirements": pip_requirements(),
        "metadata": {
            "family": model.family,
            "params": {k: _jsonable(v) for k, v in model.params.items()},
            "horizons": list(horizons),
            "unsupported_horizons": {
                f"p_fail_{h:g}d": why
                for h, why in model.horizon_support(horizons).items()
                if why is not None
            },
            "input_columns": list(model.input_columns_),
        },
    }


def save_pyfunc(
    model: RiskModel,
    path: str | Path,
    sample: pd.DataFrame,
    horizons: Sequence[float] = HORIZONS,
) -> Path:
    """Save ``model`` as an MLflow pyfunc directory at ``path`` (local, no tracking server)."""
    mlflow.pyfunc.save_model(path=str(path), **pyfunc_kwargs(model, sample, horizons))
    return Path(path)


def _jsonable(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
