"""The risk service over the real HBase and MLflow of the local stack, through real HTTP: a
uvicorn server on a free loopback port, isolated namespace and registered model. The operator
page is driven in a real headless browser (Debian's Chromium through playwright); screenshots
are kept in out/browser/."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from test_models import make_frame
from test_sinks import make_scores, thrift_gateway, thrift_up

pytestmark = [pytest.mark.integration]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUT = Path(__file__).resolve().parents[1] / "out" / "browser"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def isolated(stack_env) -> Iterator[str]:
    tag = f"serve{uuid.uuid4().hex[:8]}"
    mp = pytest.MonkeyPatch()
    for key, value in {
        "DISKRISK_HBASE_NAMESPACE": tag,
        "DISKRISK_MODEL_NAME": f"{tag}-risk",
        "DISKRISK_EXPERIMENT": tag,
        "DISKRISK_LAKE_PREFIX": f"{tag}/",
    }.items():
        mp.setenv(key, value)
    from diskrisk import config

    config.cached.cache_clear()
    yield tag
    mp.undo()
    config.cached.cache_clear()


def register_champion(family: str, seed: int) -> str:
    """A real model fitted on synthetic snapshots, logged, registered and made champion."""
    import mlflow

    from diskrisk.models import make_model
    from diskrisk.pyfunc import pyfunc_kwargs
    from diskrisk.registry import CHAMPION, Registry
    from diskrisk.tracking import set_shared_experiment

    registry = Registry.connect()
    set_shared_experiment(registry.name)
    train = make_frame(1500, seed=seed)
    model = make_model(family).fit(train)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", **pyfunc_kwargs(model, train))
    version = registry.register(info.model_uri, {"family": family, "metrics.harrell_c": "0.9"})
    registry.client.set_model_version_tag(
        registry.name, version.version, "promotion.reason", f"test {family}"
    )
    registry.client.set_registered_model_alias(registry.name, CHAMPION, version.version)
    return str(version.version)


@pytest.fixture(scope="module")
def served(isolated, tmp_path_factory) -> Iterator[dict]:
    """`diskrisk serve` in its own process, as the deployments run it: with the read-only
    reader identity (DISKRISK_READER_*), on a free loopback port."""
    from diskrisk.sinks import HBaseSink

    version = register_champion("coxph", seed=1)
    sink = HBaseSink()
    scores = make_scores(3_000, "2013-04-10", model_version=version)
    sink.write(make_scores(3_000, "2013-04-09", model_version=version, seed=3))
    sink.write(scores)
    base = f"http://127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "DISKRISK_SERVE_URL": base,
        "DISKRISK_SERVE_USERNAME": "operator",
        "DISKRISK_SERVE_PASSWORD": "serve-test-password",
        "DISKRISK_SERVE_POLL_SECONDS": "0.5",
        "DISKRISK_SERVE_MAX_BODY_BYTES": "400000",
    }
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("diskrisk")), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while not _answers(f"{base}/livez"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)
    client = httpx.Client(base_url=base, auth=("operator", "serve-test-password"), timeout=30)
    try:
        yield {"client": client, "base": base, "version": version, "scores": scores, "log": log}
    finally:
        client.close()
        proc.terminate()
        proc.wait(30)
        sink.drop_tables()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_probes_and_auth(served):
    c = served["client"]
    assert httpx.get(f"{served['base']}/livez").status_code == 200
    ready = httpx.get(f"{served['base']}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["champion"] == served["version"]
    assert ready.json()["newest_scores"]["day"] == "2013-04-10"
    assert httpx.get(f"{served['base']}/api/v1/drives").status_code == 401
    assert httpx.get(f"{served['base']}/", auth=("operator", "wrong")).status_code == 401
    assert c.get("/").status_code == 200


def test_riskiest_drives_come_from_the_day_ranking(served):
    c, scores = served["client"], served["scores"]
    r = c.get("/api/v1/drives", params={"top": 10})
    assert r.status_code == 200 and r.headers["X-Model-Version"] == served["version"]
    body = r.json()
    want = scores.sort_values(["risk", "serial_number"], ascending=[False, True])
    assert body["day"] == "2013-04-10"
    assert [d["serial_number"] for d in body["drives"]] == want["serial_number"].head(10).tolist()
    page2 = c.get("/api/v1/drives", params={"top": 10, "page": 2}).json()["drives"]
    assert [d["serial_number"] for d in page2] == want["serial_number"].iloc[10:20].tolist()
    hgst = c.get("/api/v1/drives", params={"top": 5, "vendor": "HGST"}).json()["drives"]
    assert [d["serial_number"] for d in hgst] == (
        want[want["model"].str.startswith("HGST")]["serial_number"].head(5).tolist()
    )
    high = c.get("/api/v1/drives", params={"top": 1000, "min_risk": 0.95}).json()["drives"]
    assert len(high) == int((scores["risk"] >= 0.95).sum())
    assert c.get("/api/v1/drives", params={"top": 0}).status_code == 422


def test_one_drive_and_an_unknown_one(served):
    c = served["client"]
    r = c.get("/api/v1/drives/S00000007")
    assert r.status_code == 200
    body = r.json()
    assert body["latest"]["data_date"] == "2013-04-10"
    assert [h["data_date"] for h in body["history"]] == ["2013-04-09", "2013-04-10"]
    missing = c.get("/api/v1/drives/NO-SUCH-DRIVE")
    assert missing.status_code == 404 and "NO-SUCH-DRIVE" in missing.json()["detail"]


def test_a_restarted_thrift_gateway_costs_no_failed_request(served):
    """The service's pooled Thrift connections die with the gateway (as an idle one does when
    the gateway drops it); the next read is retried on a fresh connection, not answered 503,
    and the readiness probe, which reads the same pool, does not report HBase unreachable."""
    c = served["client"]
    assert c.get("/api/v1/drives/S00000007").status_code == 200  # the pool holds a connection
    assert c.get("/readyz").json()["hbase"] == "ok"
    errors_before = _metric(c, "diskrisk_serve_hbase_errors_total")
    assert thrift_gateway("down").returncode == 0
    thrift_up()
    assert c.get("/readyz").json()["hbase"] == "ok"
    codes = [c.get("/api/v1/drives/S00000007").status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    assert _metric(c, "diskrisk_serve_hbase_errors_total") > errors_before  # the failed try


def _metric(client: httpx.Client, name: str) -> float:
    """A counter's value from the service's Prometheus text (0 before it is first counted)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    return sum(s.value for s in samples if s.name == name)


def test_model_card(served):
    card = served["client"].get("/api/v1/model").json()
    assert card["version"] == served["version"] and card["family"] == "coxph"
    assert card["promotion_reason"] == "test coxph" and "drift" in card


def _day_rows(backblaze_dir: Path, n: int) -> pd.DataFrame:
    days = sorted(backblaze_dir.glob("*.csv"))[:2]
    first = pd.read_csv(days[0], dtype=str, keep_default_na=False, nrows=n)
    second = pd.read_csv(days[1], dtype=str, keep_default_na=False, nrows=n * 2)
    return pd.concat([first, second[second["serial_number"].isin(first["serial_number"])]])


def test_predict_posted_rows_and_refuse_bad_ones(served, backblaze_dir):
    c = served["client"]
    rows = _day_rows(backblaze_dir, 500)
    r = c.post(
        "/api/v1/predict", content=rows.to_csv(index=False), headers={"content-type": "text/csv"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    newest = rows["date"].max()
    assert body["model_version"] == served["version"]
    assert {s["data_date"] for s in body["scores"]} == {newest}
    assert len(body["scores"]) == int((rows["date"] == newest).sum())
    as_json = c.post("/api/v1/predict", json={"rows": rows.head(20).to_dict(orient="records")})
    assert as_json.status_code == 200, as_json.text
    bad = rows.copy()
    bad.iloc[3, bad.columns.get_loc("capacity_bytes")] = "lots"
    refused = c.post(
        "/api/v1/predict", content=bad.to_csv(index=False), headers={"content-type": "text/csv"}
    )
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert any(d["row"] == 3 and "capacity_bytes" in d["error"] for d in detail), detail
    big = c.post("/api/v1/predict", content=b"x" * 400_001, headers={"content-type": "text/csv"})
    assert big.status_code == 413


def test_metrics(served):
    served["client"].get("/api/v1/drives", params={"top": 3})
    text = httpx.get(f"{served['base']}/metrics").text
    assert "diskrisk_serve_request_seconds_bucket" in text
    assert f"diskrisk_serve_champion_version {float(served['version'])}" in text
    assert "diskrisk_serve_alias_reloads_total" in text


@pytest.fixture(scope="module")
def fleet_curves(served):
    """The stats stage's failure curves for the page (written the way stats.run writes them)."""
    from diskrisk import layout, s3
    from diskrisk.config import lake_prefix

    key = layout.stats_report("failure_curves.json", lake_prefix())
    s3.put_json(
        key,
        {
            "curves": {
                "ST4000DM000": [
                    {"date": "2013-04-09", "failures_per_100": 0.01},
                    {"date": "2013-04-10", "failures_per_100": 0.03},
                ],
                "HGST HMS5C4040ALE640": [
                    {"date": "2013-04-09", "failures_per_100": 0.0},
                    {"date": "2013-04-10", "failures_per_100": 0.01},
                ],
            }
        },
    )
    yield key
    s3.delete_if_exists(key)


def test_page_loads_fills_the_table_and_charts_a_drive(served, fleet_curves):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: make setup installs it")
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    want = served["scores"].sort_values(["risk", "serial_number"], ascending=[False, True])
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(
            http_credentials={"username": "operator", "password": "serve-test-password"},
            viewport={"width": 1400, "height": 900},
        )
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(served["base"] + "/")
        page.wait_for_selector("#drives tbody tr.drive")
        rows = page.locator("#drives tbody tr.drive")
        assert rows.count() == 25
        first = rows.nth(0).get_attribute("data-serial")
        assert first == want["serial_number"].iloc[0]
        page.wait_for_selector("#card dt")
        assert f"v{served['version']}" in page.locator("#card").inner_text()
        page.wait_for_selector("#fleet svg polyline")
        assert page.locator("#fleet svg polyline").count() == 2
        page.screenshot(path=str(OUT / "page.png"), full_page=True)

        rows.nth(2).click()
        page.wait_for_selector("#drive-chart svg polyline")
        serial = rows.nth(2).get_attribute("data-serial")
        assert page.locator("#drive-title").inner_text() == f"Drive {serial}: risk over time"
        assert page.locator("#drive-chart svg circle").count() == 2  # two scored days
        page.screenshot(path=str(OUT / "drive.png"), full_page=True)

        page.fill("input[name=vendor]", "HGST")
        page.click("button[type=submit]")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#drives tbody tr.drive td:nth-child(3)')]"
            ".every(td => td.textContent.startsWith('HGST'))"
        )
        page.screenshot(path=str(OUT / "filtered.png"), full_page=True)
        browser.close()
    assert errors == []


def test_the_service_identity_loads_the_champion_and_changes_nothing(served):
    """The reader identity the service runs as loads the champion (READ on the model and its
    experiment, shared by the pipeline) and is refused every write to the registry."""
    from mlflow.exceptions import MlflowException

    from diskrisk.config import ReaderSettings, cached, load
    from diskrisk.registry import CHAMPION, Registry

    mp = pytest.MonkeyPatch()
    for key, value in load(ReaderSettings).as_client_environment().items():
        mp.setenv(key, value)
    cached.cache_clear()
    try:
        registry = Registry.connect()
        champion = registry.require(CHAMPION)
        assert registry.load(champion).version.version == champion.version
        mlflow = registry.client
        experiment = mlflow.get_experiment_by_name(registry.name).experiment_id
        writes = {
            "move the alias": lambda: mlflow.set_registered_model_alias(
                registry.name, CHAMPION, champion.version
            ),
            "tag a version": lambda: mlflow.set_model_version_tag(
                registry.name, champion.version, "promotion.reason", "reader"
            ),
            "drop the alias": lambda: mlflow.delete_registered_model_alias(registry.name, CHAMPION),
            "start a run": lambda: mlflow.create_run(experiment),
            "delete the model": lambda: mlflow.delete_registered_model(registry.name),
        }
        for what, write in writes.items():
            with pytest.raises(MlflowException, match=r"403|[Pp]ermission denied"):
                write()
                pytest.fail(f"the reader could {what}")
    finally:
        mp.undo()
        cached.cache_clear()
    assert Registry.connect().require(CHAMPION).version == champion.version


def test_a_moved_alias_is_served_without_a_failed_request(served):
    """Requests run all along while a new version is registered and the alias moves: each one
    succeeds, and after the poll the responses carry the new version."""
    c = served["client"]
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(
            base_url=served["base"], auth=("operator", "serve-test-password"), timeout=30
        ) as h:
            while not stop.is_set():
                r = h.get("/api/v1/drives", params={"top": 5})
                seen.append((r.status_code, r.headers.get("X-Model-Version", "")))

    t = threading.Thread(target=hammer)
    t.start()
    try:
        new = register_champion("weibull_aft", seed=2)
        # The poll sees the alias within a second; loading the new version is the wait: its ~42
        # artifacts (the shipped package) come one request each through the MLflow server
        # (26-36 s on a loaded 2-core machine before the server cached credential checks).
        deadline = time.monotonic() + 240
        while not seen or seen[-1][1] != new:
            assert time.monotonic() < deadline, f"still serving {seen[-1:]}"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        t.join(30)
    assert all(code == 200 for code, _ in seen), [s for s in seen if s[0] != 200][:5]
    versions = [v for _, v in seen]
    assert versions[0] == served["version"] and versions[-1] == new
    first_new = versions.index(new)
    assert all(v == new for v in versions[first_new:]), "went back to the old version"
    assert c.get("/api/v1/model").json()["family"] == "weibull_aft"
