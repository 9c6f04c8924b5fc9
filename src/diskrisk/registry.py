"""Champion/challenger bookkeeping in the MLflow model registry.

One registered model carries two aliases: ``challenger`` (the newest candidate) and ``champion``
(what scoring uses). Promotion is one call, ``set_registered_model_alias``, so readers see either
the old or the new champion, never a mix. Every decision, including refusals, is written to the
challenger version's tags with its reason, so the registry UI tells the whole story.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from diskrisk.config import EnvFileSettings

CHAMPION, CHALLENGER = "champion", "challenger"


class PromotionSettings(EnvFileSettings):
    """The promotion rule's knobs (DISKRISK_PROMOTION_*)."""

    model_config = SettingsConfigDict(env_prefix="DISKRISK_PROMOTION_", extra="ignore")
    min_gain: float = Field(0.005, ge=0, description="C-index gain the challenger must reach")
    min_events: int = Field(10, ge=1, description="failures the test windows need to be trusted")


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    challenger_c: float
    champion_c: float | None
    holdout_events: int
    gain_ci: tuple[float, float] | None = None

    def tags(self) -> dict[str, str]:
        tags = {
            "promotion.decision": "promoted" if self.promote else "refused",
            "promotion.reason": self.reason,
            "promotion.yardstick": "out-of-time Harrell C (rolling origins, drive bootstrap)",
            "promotion.challenger_c_index": f"{self.challenger_c:.6f}",
            "promotion.champion_c_index": "none"
            if self.champion_c is None
            else f"{self.champion_c:.6f}",
            "promotion.holdout_events": str(self.holdout_events),
        }
        if self.gain_ci is not None:
            tags["promotion.gain_ci95"] = f"{self.gain_ci[0]:+.4f}..{self.gain_ci[1]:+.4f}"
        return tags


def decide(
    challenger_c: float,
    champion_c: float | None,
    holdout_events: int,
    rule: PromotionSettings | None = None,
    gain_ci: tuple[float, float] | None = None,
) -> Decision:
    """Promote when the challenger beats the champion on the *same* out-of-time test rows by
    at least ``min_gain`` *and* by more than the noise: the lower end of the paired bootstrap
    interval of the gain (``gain_ci``) must be above 0. A gain inside its interval is luck of
    the test drives, and promoting on luck is what issue #11 saw.

    With no champion yet, any valid challenger is promoted. Fewer than ``min_events``
    failures, a C-index that is not a number, or an unknown interval never promote.
    """
    r = rule or PromotionSettings()

    def no(reason: str) -> Decision:
        return Decision(False, reason, challenger_c, champion_c, holdout_events, gain_ci)

    if not np.isfinite(challenger_c):
        return no("challenger C-index is not a number: evaluation incomplete")
    if holdout_events < r.min_events:
        return no(f"test windows have {holdout_events} failures, fewer than {r.min_events}")
    if champion_c is None:
        return Decision(
            True,
            f"no champion yet (out-of-time C {challenger_c:.4f})",
            challenger_c,
            None,
            holdout_events,
            gain_ci,
        )
    if not np.isfinite(champion_c):
        return no("champion could not be re-scored on the challenger's test windows")
    gain = challenger_c - champion_c
    if gain_ci is None or not np.all(np.isfinite(gain_ci)):
        return no(f"C-index gain {gain:+.4f} without a paired interval: uncertainty unknown")
    lo, hi = gain_ci
    figures = f"out-of-time C {challenger_c:.4f} vs champion {champion_c:.4f}: gain {gain:+.4f}"
    ci = f"95% CI {lo:+.4f}..{hi:+.4f}"
    if gain < r.min_gain:
        return no(f"{figures} < {r.min_gain} ({ci})")
    if lo <= 0:
        return no(f"{figures} is inside its uncertainty ({ci} includes 0)")
    return Decision(
        True,
        f"{figures} >= {r.min_gain}, {ci} above 0",
        challenger_c,
        champion_c,
        holdout_events,
        gain_ci,
    )


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias``, or None when the model or the alias does not exist yet.

    Existence is checked with a search first: with basic auth, asking for an alias of a model
    that does not exist answers 403 (no permission on a missing resource), not 404.
    """
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        return None
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            return None
        raise


def register(client: MlflowClient, name: str, model_uri: str, tags: dict[str, str]) -> ModelVersion:
    """Register a logged model (``models:/m-…`` URI) as a new version. It becomes the
    ``challenger`` only when the promotion rule judges it (the best of its batch)."""
    import mlflow

    return mlflow.register_model(model_uri, name, tags=tags)


def apply(client: MlflowClient, name: str, version: str, decision: Decision) -> None:
    """The judged version becomes the ``challenger`` and carries the decision in its tags; on
    promotion the ``champion`` alias switches to it (one atomic call)."""
    client.set_registered_model_alias(name, CHALLENGER, version)
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, version, key, value)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)


def version_c_index(
    name: str,
    version: str,
    holdout: pd.DataFrame,
    duration: str = "duration_days",
    event: str = "event",
) -> float:
    """Harrell's C of one registered version's risk on ``holdout``. Errors propagate: an
    evaluation that fails never promotes anything."""
    import mlflow
    from sksurv.metrics import concordance_index_censored

    from diskrisk.pyfunc import with_long_columns

    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    risk = np.asarray(model.predict(with_long_columns(holdout))["risk"], dtype=float)
    return float(
        concordance_index_censored(
            holdout[event].astype(bool).to_numpy(), holdout[duration].to_numpy(dtype=float), risk
        )[0]
    )


def champion_c_index(
    client: MlflowClient, name: str, holdout: pd.DataFrame
) -> tuple[str, float] | None:
    """Re-score the current champion on a challenger's holdout, pinned to the version read
    here so a concurrent promotion cannot swap models mid-way."""
    current = alias_version(client, name, CHAMPION)
    if current is None:
        return None
    return str(current.version), version_c_index(name, current.version, holdout)


def judge(
    client: MlflowClient,
    name: str,
    version: str,
    challenger_c: float,
    events: int,
    compare: Callable[[ModelVersion], dict[str, float]],
    rule: PromotionSettings | None = None,
) -> Decision:
    """The promotion rule for ``version`` against the champion, recorded in the registry.

    ``compare(champion_version)`` re-scores the champion on exactly the challenger's
    out-of-time splits and returns :func:`diskrisk.oot.paired_difference` (challenger minus
    champion). The champion is pinned to the version read here, so a concurrent promotion
    cannot swap models mid-way. Judging the champion itself changes nothing (its tags keep
    the decision that made it champion).
    """
    current = alias_version(client, name, CHAMPION)
    if current is not None and str(current.version) == str(version):
        return Decision(False, "already champion", challenger_c, challenger_c, events)
    if current is None:
        decision = decide(challenger_c, None, events, rule)
    else:
        paired = compare(current)
        decision = decide(
            challenger_c,
            paired["c_b"],
            events,
            rule,
            (paired["gain_ci_low"], paired["gain_ci_high"]),
        )
    apply(client, name, str(version), decision)
    return decision


def record_not_chosen(
    client: MlflowClient, name: str, version: str, c: float, best_family: str, best_c: float
) -> None:
    """Tags on a challenger the run did not put forward, so every version says why."""
    reason = f"out-of-time C {c:.4f} below this run's best ({best_family}, {best_c:.4f})"
    if not np.isfinite(c):
        reason = "evaluation incomplete: out-of-time C is not a number"
    tags = {
        "promotion.decision": "not chosen",
        "promotion.reason": reason,
        "promotion.yardstick": "out-of-time Harrell C (rolling origins, drive bootstrap)",
        "promotion.challenger_c_index": f"{c:.6f}",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
