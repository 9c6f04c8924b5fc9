"""The model family names: the one list the model registry (``diskrisk.models``), the training
default (``TrainSettings.families``, ``DISKRISK_TRAIN_FAMILIES``) and the DAG's ``families``
param take them from.

Cheap to import on purpose (the DAG file imports it at every parse): standard library only.
"""

from __future__ import annotations

from typing import Any

#: Every family diskrisk can train; ``diskrisk.models`` has exactly one model class per name.
FAMILIES: tuple[str, ...] = ("coxph", "weibull_aft", "coxnet", "gbsa", "rsf", "km", "ensemble")

#: The challengers trained when a run names none (``DISKRISK_TRAIN_FAMILIES`` overrides it).
#: Chosen out of time on the real 2013 days (bench/quality.py): the linear families and their
#: rank average (``ensemble``) hold up; gbsa/rsf do not beat them and cost up to 100x the fit
#: time, so they stay selectable only; km is the reference every model must beat.
DEFAULT_FAMILIES: tuple[str, ...] = ("coxnet", "coxph", "weibull_aft", "ensemble", "km")


#: Families made of other families' fits (``ensemble`` averages its members'): a run trains
#: them after its single families, so they compose the fits those stored (``train.fitted``)
#: instead of fitting their members again.
COMPOSITE_FAMILIES: tuple[str, ...] = ("ensemble",)


def training_phases(families: list[str]) -> dict[str, list[str]]:
    """``families`` as the two phases of a run: ``single`` first, then ``composite``."""
    return {
        "single": [f for f in families if f not in COMPOSITE_FAMILIES],
        "composite": [f for f in families if f in COMPOSITE_FAMILIES],
    }


def registry(*classes: Any) -> dict[str, Any]:
    """``{family: class}`` in :data:`FAMILIES` order from classes carrying a ``family`` name;
    fails at import when the classes and the names disagree."""
    by_name = {cls.family: cls for cls in classes}
    if set(by_name) != set(FAMILIES) or len(by_name) != len(classes):
        raise RuntimeError(
            f"model classes {sorted(cls.family for cls in classes)} do not match "
            f"diskrisk.families.FAMILIES {sorted(FAMILIES)}"
        )
    return {name: by_name[name] for name in FAMILIES}
