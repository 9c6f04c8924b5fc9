"""One function per pipeline task, each taking and returning small JSON-able values.

The Airflow DAG and the CLI both call these, so a task behaves the same whether Airflow runs it
or an operator does. Tasks hand each other small JSON values through XCom (S3 keys, MLflow
versions, day lists); the data itself moves through S3 and MLflow.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from diskrisk import lake
from diskrisk.config import (
    ConfigError,
    PipelineSettings,
    env_file,
    lake_prefix,
    load,
)

log = logging.getLogger(__name__)


# --- data ------------------------------------------------------------------------------------------
def source(src: str | None = None) -> str:
    """Where Backblaze days come from: a folder, a quarterly zip, a URL or one CSV
    (``BACKBLAZE_SOURCE``: the environment, then the `.env` of ``DISKRISK_ENV_FILE``)."""
    src = load(PipelineSettings).source if src is None else src
    if not src:
        raise ConfigError(
            f"BACKBLAZE_SOURCE is not set (a folder, a zip, a URL or a CSV; environment or {env_file()})"
        )
    return src


def run_date(logical_date: Any, run_after: Any) -> date:
    """The day a run stands for: its logical date, else (a run triggered with no logical date,
    which Airflow 3 allows) the time it was queued to run after."""
    when = logical_date if logical_date is not None else run_after
    if when is None:
        raise ValueError("a run needs a logical date or a run_after")
    return pd.Timestamp(when).date()


def pending_days(held: list[date], newest_in_lake: date | None, until: date) -> list[date]:
    """Catch-up: the days a source holds that are newer than the lake's newest day and not
    after ``until``."""
    return sorted(d for d in held if (newest_in_lake is None or d > newest_in_lake) and d <= until)


def run_window(params: dict[str, Any], logical_date: Any, run_after: Any = None) -> dict[str, Any]:
    """The days a run collects.

    With ``start`` (and optionally ``end``, default ``start``) the run collects exactly that
    range. Without ``start`` it catches up: every day the source holds that is newer than the
    lake's newest day and not after ``end`` (default: the run's date). When there is nothing to
    catch up (or no source is configured), the result carries ``skip`` with the reason and no
    range; a range without a source is a configuration error.
    """
    configured = load(PipelineSettings).source
    if not params.get("start") and not configured:
        # The shipped configuration has no source (the demo sets one): a scheduled run then
        # has nothing to catch up, which is not a failure of the run.
        reason = f"nothing to collect: BACKBLAZE_SOURCE is not set (environment or {env_file()})"
        log.warning(reason)
        return {"source": "", "start": None, "end": None, "mode": "catch-up", "skip": reason}
    src = source(configured)
    if params.get("start"):
        lo = date.fromisoformat(params["start"])
        hi = date.fromisoformat(params.get("end") or params["start"])
        if lo > hi:
            raise ValueError(f"start {lo} is after end {hi}")
        return {"source": src, "start": lo.isoformat(), "end": hi.isoformat(), "mode": "range"}
    from diskrisk.ingest import days_of

    until = (
        date.fromisoformat(params["end"])
        if params.get("end")
        else run_date(logical_date, run_after)
    )
    with days_of(src) as files:
        held = sorted({f.day for f in files})
    in_lake = lake_days()
    newest = date.fromisoformat(in_lake[-1]) if in_lake else None
    days = pending_days(held, newest, until)
    if not days and newest and params.get("force_retrain"):
        log.info("nothing new in %s; force_retrain: working on the lake's newest day", src)
        days = [newest]
    if not days:
        span = f"{held[0]} .. {held[-1]}" if held else "no days"
        reason = (
            f"nothing new to collect up to {until}: {src} holds {span}, "
            f"the lake's newest day is {newest or 'none (empty lake)'}"
        )
        log.info(reason)
        return {"source": src, "start": None, "end": None, "mode": "catch-up", "skip": reason}
    log.info(
        "catch-up from %s: %d day(s) %s .. %s (lake's newest day: %s, run date %s)",
        src,
        len(days),
        days[0],
        days[-1],
        newest or "none",
        until,
    )
    return {
        "source": src,
        "start": days[0].isoformat(),
        "end": days[-1].isoformat(),
        "mode": "catch-up",
    }


def collect(src: str, start: str | None = None, end: str | None = None) -> dict[str, Any]:
    """Original bytes of the days within [start, end] to the raw zone (no-op when unchanged)."""
    from diskrisk.ingest import collect as collect_days

    keep = _between(start, end) if (start or end) else None
    summary = collect_days(src, prefix=lake_prefix(), keep=keep, latest=lake.latest_day())
    return summary.as_dict()


def build_lake(collected: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Validate the collected days into the Parquet lake and its manifest."""
    outcomes = lake.build(
        [date.fromisoformat(d) for d in collected["days"]], prefix=lake_prefix(), force=force
    )
    days = lake_days()
    return {
        "lake": {o.day.isoformat(): o.status for o in outcomes},
        "changed": sorted(o.day.isoformat() for o in outcomes if o.status == "written"),
        "errors": collected.get("errors", []) + [e.record() for o in outcomes if (e := o.error)],
        "lake_days": len(days),
        "last_day": days[-1] if days else None,
    }


def _between(start: str | None, end: str | None) -> Callable[[date], bool]:
    lo = date.fromisoformat(start) if start else date.min
    hi = date.fromisoformat(end) if end else date.max
    return lambda d: lo <= d <= hi


def lake_days() -> list[str]:
    return sorted(lake.read_manifest(lake_prefix()).get("days", {}))


def stats() -> dict[str, Any]:
    from diskrisk import stats as st

    out = Path(tempfile.mkdtemp(prefix="diskrisk-stats-"))
    return st.run(out, prefix=lake_prefix())


# --- drift ------------------------------------------------------------------------------------------
def drift(day: str | None = None) -> dict[str, Any]:
    """Champion's training snapshot vs the newest day; report to S3 and MLflow."""
    from diskrisk.drift import check_champion

    return check_champion(day or lake_days()[-1], prefix=lake_prefix())


def has_work(lake_result: dict[str, Any], force: bool = False) -> bool:
    """Short-circuit gate: go on when days changed, when asked to, or when an earlier run
    stopped before finishing (no champion, or the newest day not yet scored); a re-run of a
    completed window is then a no-op, and a re-run of a failed one completes it."""
    if force or lake_result["changed"]:
        return True
    if not lake_result.get("last_day"):
        return False
    from diskrisk.registry import CHAMPION, Registry
    from diskrisk.sinks import HBaseSink

    if Registry.connect().version(CHAMPION) is None:
        return True
    return HBaseSink().completed(lake_result["last_day"]) is None


def should_retrain(drift_result: dict[str, Any], force: bool = False) -> bool:
    """Train challengers on drift, when there is no champion yet, or when asked to."""
    return force or drift_result.get("drift") is not False


# --- training -----------------------------------------------------------------------------------------
def dataset(cutoff: str | None = None) -> str:
    """The training tables (:func:`diskrisk.dataset.prepare_dataset`) as a JSON reference.

    A lake too short for the out-of-time test windows raises
    :class:`diskrisk.dataset.ShortLakeError`; :func:`short_lake` says what the DAG does then."""
    from diskrisk.dataset import prepare_dataset

    return prepare_dataset(cutoff, prefix=lake_prefix()).to_json()


def short_lake(error: Exception) -> str | None:
    """On a lake too short to train on: the reason to skip training when a champion exists (it
    keeps scoring; the next longer lake trains), or None when there is none (the run must fail:
    nothing could score)."""
    from diskrisk.registry import CHAMPION, Registry

    registry = Registry.connect()
    version = registry.version(CHAMPION)
    if version is None:
        return None
    return f"{error}; training skipped, champion {registry.name} v{version.version} keeps scoring"


def train(
    family: str, dataset_ref: str, params: dict[str, Any] | None = None, task: str | None = None
) -> dict[str, Any]:
    """One challenger. A family whose fit or evaluation fails is reported, not raised, so the
    other challengers still compete; promotion ignores it. A retried ``task`` returns the
    version its earlier try registered."""
    from dataclasses import asdict

    from diskrisk.dataset import DatasetRef
    from diskrisk.models import ModelError
    from diskrisk.train import train_challenger

    try:
        # a task's return value travels as JSON: an undefined figure (no failure in the test
        # windows: C is NaN) goes as null, or Airflow refuses the whole result
        ref = DatasetRef.from_json(dataset_ref)
        return _json_safe(asdict(train_challenger(family, ref, params, task=task)))
    except ModelError as exc:
        log.error("challenger %s failed: %s", family, exc)
        return {"family": family, "error": str(exc)}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def promote(challengers: list[dict[str, Any]], dataset_ref: str) -> dict[str, Any]:
    from diskrisk.config import lake_prefix
    from diskrisk.dataset import DatasetRef
    from diskrisk.promote import promote as choose
    from diskrisk.train import Challenger, forget_fits

    best, decision = choose(
        [
            Challenger(**{**c, "harrell_c": _nan_if_none(c["harrell_c"])})
            for c in challengers
            if "error" not in c
        ],
        DatasetRef.from_json(dataset_ref),
    )
    log.info("judged: %d stored fits removed", forget_fits(lake_prefix()))
    return {
        "version": best.version,
        "family": best.family,
        "promote": decision.promote,
        "reason": decision.reason,
        "challenger_c": decision.challenger_c,
        "champion_c": decision.champion_c,
        "gain_ci": list(decision.gain_ci) if decision.gain_ci else None,
    }


# --- scoring ---------------------------------------------------------------------------------------
def score(day: str | None = None, force: bool = False) -> dict[str, Any]:
    """Score every drive seen on ``day`` and write them to HBase; a day already written by
    the same champion version is left alone (re-running changes nothing)."""
    from diskrisk.config import TrainSettings
    from diskrisk.scoring import champion, score_frame
    from diskrisk.sinks import HBaseSink
    from diskrisk.survival import snapshot_features

    day = day or lake_days()[-1]
    predictor = champion()
    version = predictor.version
    sink = HBaseSink()
    done = sink.completed(day)
    if done and not force and str(done.get("model_version")) == str(version.version):
        return {"day": day, "skipped": True, **done}
    features = snapshot_features(day, TrainSettings().lookback_days, prefix=lake_prefix())
    written = sink.write(score_frame(features, predictor, day))
    result = {
        "day": day,
        "skipped": False,
        "model_version": str(version.version),
        "rows": written.get(day, 0),
        "set_aside": len(sink.set_aside),
    }
    if not sink.set_aside.empty:  # the rows the store could not hold, with their reason
        from diskrisk import layout, s3

        key = layout.quarantine(date.fromisoformat(day), "scores.csv", lake_prefix())
        s3.put_if_changed(key, sink.set_aside.to_csv(index=False).encode(), "text/csv")
        result["set_aside_key"] = key
    return result
