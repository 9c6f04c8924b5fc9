"""Champion/challenger bookkeeping in the MLflow model registry.

One registered model carries two aliases: ``challenger`` (the version the promotion rule judged
last) and ``champion`` (what scoring and serving use). Promotion is one call, ``set_registered_model_alias``, so readers see either
the old or the new champion, never a mix. Every decision, including refusals, is written to the
challenger version's tags with its reason, so the registry UI tells the whole story.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from diskrisk.config import PromotionSettings

CHAMPION, CHALLENGER = "champion", "challenger"


class NoModelError(LookupError):
    """No registered version carries the alias asked for (e.g. no champion before the first
    training): a state to act on, not a failure of the registry."""


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

    from diskrisk.tracking import share_with_reader

    version = mlflow.register_model(model_uri, name, tags=tags)
    share_with_reader("registered_model", name)
    return version


def apply(client: MlflowClient, name: str, version: str, decision: Decision) -> None:
    """The judged version becomes the ``challenger`` and carries the decision in its tags; on
    promotion the ``champion`` alias switches to it (one atomic call)."""
    client.set_registered_model_alias(name, CHALLENGER, version)
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, version, key, value)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)


def champion_c_index(
    client: MlflowClient, name: str, holdout: pd.DataFrame
) -> tuple[str, float] | None:
    """Harrell's C of the current champion on ``holdout``, pinned to the version read here so a
    concurrent promotion cannot swap models mid-way. Errors propagate: an evaluation that fails
    never promotes anything."""
    from diskrisk.concordance import harrell_c

    registry = Registry(client, name)
    current = registry.version(CHAMPION)
    if current is None:
        return None
    risk = np.asarray(registry.load(current).predict(holdout)["risk"], dtype=float)
    c = harrell_c(
        holdout["event"].astype(bool).to_numpy(), holdout["duration_days"].to_numpy(float), risk
    )
    return str(current.version), float(c)


@dataclass(frozen=True)
class Predictor:
    """One loaded registered version; ``predict`` takes the lake's columns as they are (the
    integer columns the signature declares are coerced here, once for every caller)."""

    version: ModelVersion
    pyfunc: Any

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        from diskrisk.pyfunc import with_long_columns

        return pd.DataFrame(self.pyfunc.predict(with_long_columns(df)))

    @property
    def risk_model(self) -> Any:
        """The :class:`diskrisk.models.RiskModel` inside (to refit its recipe or fine-tune it)."""
        return self.pyfunc.unwrap_python_model().model


class Registry:
    """The registered model of this deployment: the one place that turns an alias into a
    version, a version into a model URI and a loaded predictor, and records decisions."""

    def __init__(self, client: MlflowClient, name: str) -> None:
        self.client = client
        self.name = name

    @classmethod
    def connect(cls) -> Registry:
        """The pipeline's identity and model name, from the settings (environment, `.env`)."""
        from diskrisk.config import MlflowSettings, cached
        from diskrisk.tracking import connect

        return cls(connect(), cached(MlflowSettings).model_name)

    def version(self, alias: str) -> ModelVersion | None:
        return alias_version(self.client, self.name, alias)

    def require(self, alias: str) -> ModelVersion:
        """The version behind ``alias``; :class:`NoModelError` when there is none."""
        version = self.version(alias)
        if version is None:
            raise NoModelError(f"registered model {self.name!r} has no {alias!r} alias yet")
        return version

    def uri(self, version: ModelVersion | str) -> str:
        number = version.version if isinstance(version, ModelVersion) else version
        return f"models:/{self.name}/{number}"

    def load(self, which: str | ModelVersion) -> Predictor:
        """An alias (resolved once, so the whole load is pinned to one version) or a version."""
        import mlflow

        version = which if isinstance(which, ModelVersion) else self.require(which)
        return Predictor(version, mlflow.pyfunc.load_model(self.uri(version)))

    def register(self, model_uri: str, tags: dict[str, str]) -> ModelVersion:
        return register(self.client, self.name, model_uri, tags)

    def judge(
        self,
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
        current = self.version(CHAMPION)
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
        apply(self.client, self.name, str(version), decision)
        return decision

    def not_chosen(self, version: str, c: float, best_family: str, best_c: float) -> None:
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
            self.client.set_model_version_tag(self.name, version, key, value)

    def list(self) -> list[dict[str, Any]]:
        """Every version with its aliases, family, out-of-time figures and promotion reason."""
        aliases: dict[str, list[str]] = {}
        for alias, ver in self.client.get_registered_model(self.name).aliases.items():
            aliases.setdefault(str(ver), []).append(alias)
        rows = [
            {
                "version": int(v.version),
                "aliases": ",".join(sorted(aliases.get(str(v.version), []))),
                "family": v.tags.get("family", ""),
                "harrell_c": float(v.tags.get("metrics.harrell_c", "nan")),
                "c_ci95": v.tags.get("metrics.oot_harrell_c_ci95", ""),
                "recall_top1pct": float(v.tags.get("metrics.oot_recall_top1pct", "nan")),
                "decision": v.tags.get("promotion.decision", ""),
                "reason": v.tags.get("promotion.reason", ""),
                "window": v.tags.get("data.window", ""),
                "run_id": v.run_id,
            }
            for v in self.client.search_model_versions(f"name='{self.name}'")
        ]
        return sorted(rows, key=lambda r: r["version"])
