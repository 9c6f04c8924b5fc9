"""Risk service: an HTTP API and an operator page over the HBase scores (``diskrisk serve``).

Reads come from HBase (the pipeline's ``score`` task writes them): one drive is two point reads
(latest + its history prefix), the riskiest drives are the day's ranking rows (K rows, not a
fleet scan). ``/api/v1/predict`` scores posted Backblaze rows with the champion in memory: they
are validated like a lake day (errors name the row and the field) and turned into the same
snapshot features as the lake's drives.

The champion follows the registry alias: a background thread polls ``champion`` and, when the
alias moved, loads the new version *completely* before swapping one reference, so a request
sees either the old or the new model, never a half-loaded one, and every response names the
version it used (``X-Model-Version``).
"""

from __future__ import annotations

import gc
import io
import json
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from cachetools import LRUCache
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool

from diskrisk.config import ServeSettings, TrainSettings, load
from diskrisk.registry import CHAMPION, Predictor, Registry
from diskrisk.sinks import HBaseSink

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("serve_page.html")
MARKER_TTL_S = 5.0
RANKED_PAGES = 256


# --- the champion, following its alias -------------------------------------------------------------
@dataclass(frozen=True)
class Champion:
    predictor: Predictor
    card: dict[str, Any]
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> str:
        return str(self.predictor.version.version)


def model_card(version: Any) -> dict[str, Any]:
    """What an operator asks of the champion, from its registry tags."""
    tags = dict(version.tags or {})
    return {
        "name": version.name,
        "version": str(version.version),
        "run_id": version.run_id,
        "family": tags.get("family", ""),
        "harrell_c": tags.get("metrics.harrell_c", ""),
        "harrell_c_ci95": tags.get("metrics.oot_harrell_c_ci95", ""),
        "recall_top1pct": tags.get("metrics.oot_recall_top1pct", ""),
        "window": tags.get("data.window", ""),
        "promotion_decision": tags.get("promotion.decision", ""),
        "promotion_reason": tags.get("promotion.reason", ""),
    }


class ChampionWatcher:
    """Keeps the loaded champion in step with the alias (see the module docstring)."""

    def __init__(self, registry: Registry, poll_s: float, metrics: Metrics) -> None:
        self.registry, self.poll_s, self.metrics = registry, poll_s, metrics
        self.current: Champion | None = None
        self.drift = "unknown"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load the alias's version if it is not the one served; True when it swapped."""
        version = self.registry.version(CHAMPION)
        if version is None or (self.current and self.current.version == str(version.version)):
            return False
        loaded = Champion(self.registry.load(version), model_card(version))
        self.drift = _drift_verdict()
        self.current = loaded  # one reference assignment: readers see old or new, whole
        # The model and the libraries stay until the next swap: keep them out of the
        # collector's full passes, which otherwise stall requests for 100+ ms (unfreeze first,
        # so the replaced model's cycles are collected once).
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.metrics.reloads.inc()
        self.metrics.version.set(float(loaded.version))
        log.info("serving champion version %s", loaded.version)
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="champion-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.refresh():
                    self.drift = _drift_verdict()  # a drift check runs every day
            except Exception:  # the registry may be down: keep serving what is loaded
                self.metrics.registry_errors.inc()
                log.exception("champion refresh failed; still serving %s", self._served())
            self._stop.wait(self.poll_s)

    def _served(self) -> str:
        return self.current.version if self.current else "nothing"


def _drift_verdict() -> str:
    from diskrisk.drift import latest_verdict

    try:
        return latest_verdict()
    except Exception as exc:  # the page still works without it
        return f"unknown ({type(exc).__name__})"


# --- metrics -------------------------------------------------------------------------------------
class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "diskrisk_serve_request_seconds",
            "Request latency by route",
            ["route", "status"],
            registry=r,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.scores = Counter("diskrisk_serve_scores_served", "Score rows returned", registry=r)
        self.version = Gauge("diskrisk_serve_champion_version", "Champion served", registry=r)
        self.reloads = Counter("diskrisk_serve_alias_reloads", "Champion (re)loads", registry=r)
        self.hbase_errors = Counter(
            "diskrisk_serve_hbase_errors", "Failed HBase read attempts", registry=r
        )
        self.registry_errors = Counter(
            "diskrisk_serve_registry_errors", "Failed alias polls", registry=r
        )


def run_as_reader() -> None:
    """Replace this process's client identities (and its workers', which inherit the
    environment) with the read-only reader's before any client exists."""
    import os

    from diskrisk.config import ReaderSettings, cached

    os.environ.update(load(ReaderSettings).as_client_environment())
    cached.cache_clear()


# --- the app ---------------------------------------------------------------------------------------
def create_app(
    settings: ServeSettings | None = None,
    sink: HBaseSink | None = None,
    registry: Registry | None = None,
    *,
    watch: bool = True,
) -> FastAPI:
    """The service; ``watch=False`` leaves the alias polling to the caller (``refresh()``)."""
    s = settings or load(ServeSettings)
    sink = sink or HBaseSink(read_pool=8)
    metrics = Metrics()
    sink.on_read_error = lambda _: metrics.hbase_errors.inc()
    watcher = ChampionWatcher(registry or Registry.connect(), s.poll_seconds, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if watch:
            try:
                await run_in_threadpool(watcher.refresh)
            except Exception:
                log.exception("no champion at start; /readyz says so until one loads")
            watcher.start()
        yield
        watcher.stop()

    app = FastAPI(
        title="diskrisk risk service", version="1", docs_url="/api/docs", lifespan=lifespan
    )
    app.state.watcher, app.state.sink, app.state.settings = watcher, sink, s
    basic = HTTPBasic(realm="diskrisk")

    def user(creds: HTTPBasicCredentials = Depends(basic)) -> str:
        ok_user = secrets.compare_digest(creds.username.encode(), s.username.encode())
        ok_pw = secrets.compare_digest(
            creds.password.encode(), s.password.get_secret_value().encode()
        )
        if not (ok_user and ok_pw):
            raise HTTPException(401, "wrong user or password", {"WWW-Authenticate": "Basic"})
        return creds.username

    @app.middleware("http")
    async def _observe(request: Request, call_next: Any) -> Response:
        t0 = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.latency.labels(path, str(response.status_code)).observe(time.perf_counter() - t0)
        if watcher.current is not None:
            response.headers["X-Model-Version"] = watcher.current.version
        return response

    svc = Service(watcher, sink, metrics, s)
    _probes(app, svc)
    _reads(app, svc, Depends(user))
    _predict(app, svc, Depends(user))
    return app


class Service:
    """What the routes share: the champion, the score store, the metrics, the settings."""

    def __init__(
        self, watcher: ChampionWatcher, sink: HBaseSink, metrics: Metrics, settings: ServeSettings
    ) -> None:
        self.watcher, self.sink, self.metrics, self.settings = watcher, sink, metrics, settings
        self._newest: tuple[float, dict[str, Any] | None] = (0.0, None)
        self._pages: LRUCache[tuple[Any, ...], list[dict[str, Any]]] = LRUCache(RANKED_PAGES)
        self._pages_lock = threading.Lock()

    def champion(self) -> Champion:
        current = self.watcher.current
        if current is None:
            raise HTTPException(503, "no champion loaded yet: train one first")
        return current

    def marker_of(self, day: date | None) -> dict[str, Any] | None:
        """The day's completion marker; the newest day's is kept a few seconds (a new day
        appears once a day, and every top-K request needs it)."""
        if day is not None:
            return self.sink.completed(day)  # type: ignore[no-any-return]
        at, marker = self._newest
        if time.monotonic() - at > MARKER_TTL_S:
            latest = self.sink.newest_completed()
            marker = self.sink.completed(latest) if latest else None
            self._newest = (time.monotonic(), marker)
        return marker

    def ranked(self, marker: dict[str, Any] | None, **query: Any) -> list[dict[str, Any]]:
        """A page of a day's ranking. A completed day's ranking never changes (its rows are
        written before its marker, and a rewrite writes a new marker), so pages are kept per
        marker: the operator page's default views cost no HBase read after the first."""
        if not marker:
            return []
        key = (
            marker["data_date"],
            marker["model_version"],
            marker.get("finished_at"),
            *sorted(query.items()),
        )
        with self._pages_lock:
            rows = self._pages.get(key)
        if rows is None:
            keep = _row_filter(query.pop("vendor"), query.pop("model"))
            rows = self.hbase(self.sink.ranked_records, marker, keep=keep, **query)
            with self._pages_lock:
                self._pages[key] = rows
        return rows

    def hbase(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A read (the sink tries a transport error once more); a failure is a 503."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise HTTPException(503, f"score store unavailable ({type(exc).__name__})") from exc


def _probes(app: FastAPI, svc: Service) -> None:
    @app.get("/livez")
    def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        checks: dict[str, Any] = {
            "champion": svc.watcher.current.version if svc.watcher.current else None
        }
        try:
            day = svc.sink.newest_completed()
            marker = svc.sink.completed(day) if day else None
            checks["hbase"] = "ok"
        except Exception as exc:
            checks["hbase"], marker = f"unreachable ({type(exc).__name__})", None
        age_h = _age_hours(marker["finished_at"]) if marker else None
        checks["newest_scores"] = {"day": marker and marker["data_date"], "age_hours": age_h}
        ready = (
            checks["champion"] is not None
            and checks["hbase"] == "ok"
            and age_h is not None
            and age_h <= svc.settings.max_score_age_hours
        )
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _reads(app: FastAPI, svc: Service, auth: Any) -> None:
    @app.get("/", response_class=HTMLResponse, dependencies=[auth])
    def page() -> HTMLResponse:
        links = {"mlflow": svc.settings.mlflow_ui_url, "airflow": svc.settings.airflow_ui_url}
        html = PAGE.read_text().replace("__LINKS__", json.dumps(links))
        return HTMLResponse(html)

    @app.get("/api/v1/model", dependencies=[auth])
    def model() -> dict[str, Any]:
        current = svc.champion()
        return {**current.card, "drift": svc.watcher.drift, "loaded_at": current.loaded_at}

    @app.get("/api/v1/drives", dependencies=[auth])
    def riskiest(
        top: Annotated[int, Query(ge=1, le=1000)] = 50,
        page: Annotated[int, Query(ge=1)] = 1,
        vendor: str | None = None,
        model: str | None = None,
        min_risk: float | None = None,
        day: date | None = None,
    ) -> dict[str, Any]:
        marker = svc.hbase(svc.marker_of, day)
        rows = svc.ranked(
            marker,
            limit=top,
            offset=(page - 1) * top,
            vendor=vendor,
            model=model,
            min_risk=min_risk,
        )
        svc.metrics.scores.inc(len(rows))
        return {
            "day": marker["data_date"] if marker else None,
            "page": page,
            "drives": _clean(rows),
            "model_version": svc.watcher.current.version if svc.watcher.current else None,
        }

    @app.get("/api/v1/fleet", dependencies=[auth])
    def fleet() -> dict[str, Any]:
        """Failure curves by drive model, as the stats stage wrote them."""
        from diskrisk import layout, s3
        from diskrisk.config import lake_prefix

        curves = s3.get_json(layout.stats_report("failure_curves.json", lake_prefix()))
        if curves is None:
            raise HTTPException(404, "no failure curves yet: the stats stage has not run")
        return dict(curves)

    @app.get("/api/v1/drives/{serial}", dependencies=[auth])
    def drive(serial: str) -> dict[str, Any]:
        latest = svc.hbase(svc.sink.latest, serial)
        if latest is None:
            raise HTTPException(404, f"no score for drive {serial!r}")
        history = svc.hbase(svc.sink.history_records, serial)
        svc.metrics.scores.inc(1 + len(history))
        return {
            "serial_number": serial,
            "latest": _clean([latest])[0],
            "history": _clean(history),
            "model_version": svc.watcher.current.version if svc.watcher.current else None,
        }


def _predict(app: FastAPI, svc: Service, auth: Any) -> None:
    @app.post("/api/v1/predict", dependencies=[auth])
    async def predict(request: Request) -> dict[str, Any]:
        body = await request.body()
        if len(body) > svc.settings.max_body_bytes:
            raise HTTPException(
                413, f"body of {len(body)} bytes is over {svc.settings.max_body_bytes}"
            )
        current = svc.champion()  # one snapshot for the whole request
        frame = _posted_frame(body, request.headers.get("content-type", ""))
        lookback = TrainSettings().lookback_days
        scores = await run_in_threadpool(score_rows, frame, current.predictor, lookback)
        svc.metrics.scores.inc(len(scores))
        return {"model_version": current.version, "scores": _records(scores)}


# --- helpers -----------------------------------------------------------------------------------------
def _age_hours(finished_at: str) -> float:
    then = datetime.fromisoformat(finished_at)
    return (datetime.now(UTC) - then).total_seconds() / 3600


def _row_filter(vendor: str | None, model: str | None) -> Any:
    from diskrisk.survival import vendor_of

    if not vendor and not model:
        return None
    v, m = (vendor or "").lower(), (model or "").lower()
    return lambda row: (
        (not v or vendor_of(row["model"]).lower() == v)
        and (not m or m in str(row["model"]).lower())
    )


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-able rows; a probability the model cannot support is null, never NaN."""
    out: list[dict[str, Any]] = json.loads(df.to_json(orient="records", date_format="iso"))
    return out


def _clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score records as JSON allows them: a missing probability (NaN) becomes null."""
    return [{k: (None if v != v else v) for k, v in r.items()} for r in rows]


def _posted_frame(body: bytes, content_type: str) -> pd.DataFrame:
    """Posted drive-day rows as text columns (validation types them like a lake day)."""
    if not body.strip():
        raise HTTPException(422, "empty body: post Backblaze rows as JSON or CSV")
    try:
        if "csv" in content_type:
            return pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False)
        payload = json.loads(body)
        rows = payload.get("rows") if isinstance(payload, dict) else payload
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError("expected a list of row objects (or {'rows': [...]})")
        return pd.DataFrame(rows).astype(str).replace({"None": "", "nan": ""})
    except (ValueError, pd.errors.ParserError) as exc:
        raise HTTPException(422, f"body cannot be read as rows: {exc}") from None


def score_rows(frame: pd.DataFrame, predictor: Predictor, lookback: int) -> pd.DataFrame:
    """Validate posted rows day by day as the lake does, build the newest day's snapshot
    features from them (earlier posted days are the history) and score it."""
    from diskrisk import lake, survival
    from diskrisk.validate import DataError, validate_bytes

    if "date" not in frame:
        raise HTTPException(422, [{"row": None, "field": "date", "error": "column missing"}])
    errors: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="diskrisk-predict-") as tmp:
        days = sorted(frame["date"].unique())
        for d in days:
            part = frame[frame["date"] == d]
            try:
                v = validate_bytes(part.to_csv(index=False).encode(), f"{d}.csv", None)
            except (DataError, ValueError) as exc:
                errors.append({"row": None, "field": "date", "error": f"{d}: {exc}"})
                continue
            if v.rejected is not None:
                rows = part.index.to_numpy()
                for r in v.rejected.to_pylist():
                    errors.append({"row": int(rows[int(r["_row"]) - 2]), "error": r["_reason"]})
            lake.write_local(v, tmp)
        if errors:
            raise HTTPException(422, errors)
        features = survival.snapshot_features(days[-1], lookback, root=tmp)
    pred = predictor.predict(features)
    out = features[["serial_number", "model"]].reset_index(drop=True)
    for col in ("risk", "p_fail_30d", "p_fail_90d"):
        out[col] = pred[col].to_numpy(dtype=float)
    out["data_date"] = days[-1]
    out["model_version"] = str(predictor.version.version)
    return out
