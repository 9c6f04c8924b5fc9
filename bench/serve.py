"""Benchmark of the risk service (not a test): ``python bench/serve.py [--drives N]``.

On the local stack (scripts/stack up): ``--drives`` scores of one day are written to HBase under a
throwaway namespace, a champion is registered under a throwaway model name, and ``diskrisk
serve`` runs in its own process on a free loopback port (``--workers`` uvicorn workers). Then,
measured in this one run, each route twice from another process on loopback: flat out with wrk
(Debian's closed-loop load generator: the most the service answers), and at the target rate
with vegeta (an open-loop generator: requests leave on schedule whether or not earlier ones
returned, so the percentiles are what callers see at that rate; ``GOBIN=~/.cache/diskrisk/bin
go install github.com/tsenart/vegeta/v12@v12.13.0``):

* ``GET /api/v1/drives/{serial}`` for random serials (latest + history);
* ``GET /api/v1/drives?top=100`` (the day's ranking): page 1, the operator page's view, which
  the service keeps per day after the first read; and random pages of all 300k drives, which
  mostly miss that cache and read HBase;
* ``POST /api/v1/predict`` with 1,000 real-layout rows (sequential requests, timed here).

Targets (issue #12): >= 500 requests/s and p99 <= 50 ms for the lookup and for top-100 over
300k scored drives on 2 cores; /predict of 1,000 rows <= 300 ms.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
CACHE_BIN = Path(os.environ.get("DISKRISK_CACHE_DIR", Path.home() / ".cache" / "diskrisk")) / "bin"


def vegeta(base: str, paths: list[str], auth: str, rate: int, seconds: int) -> dict[str, float]:
    """Achieved rate and latency percentiles of a constant-rate attack cycling ``paths``."""
    binary = shutil.which("vegeta") or str(CACHE_BIN / "vegeta")
    targets = "".join(f"GET {base}{p}\n" for p in paths)
    attack = subprocess.run(
        [
            binary,
            "attack",
            f"-rate={rate}",
            f"-duration={seconds}s",
            "-header",
            f"Authorization: {auth}",
            "-timeout=10s",
        ],
        input=targets.encode(),
        capture_output=True,
        check=True,
    ).stdout
    report = json.loads(
        subprocess.run(
            [binary, "report", "-type=json"], input=attack, capture_output=True, check=True
        ).stdout
    )
    lat = report["latencies"]
    return {
        "rps": report["throughput"],
        "p50_ms": lat["50th"] / 1e6,
        "p99_ms": lat["99th"] / 1e6,
        "errors": report["requests"] - report["requests"] * report["success"],
    }


def wrk(
    url: str, auth: str, seconds: int, lua: str | None = None, connections: int = 8
) -> dict[str, float]:
    """Requests/s and latency percentiles from wrk (2 threads)."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    cmd += ["-H", f"Authorization: {auth}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if lua:
            script.write(lua)
            script.flush()
            cmd += ["-s", script.name]
        out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=300_000)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--connections", type=int, default=4, help="wrk's concurrent connections")
    ap.add_argument("--predict-requests", type=int, default=20)
    ap.add_argument("--rate", type=int, default=500, help="vegeta's constant request rate")
    ap.add_argument(
        "--data",
        default=os.environ.get(
            "BACKBLAZE_TEST_DATA", str(ROOT.parent / "shared/data/backblaze-2013")
        ),
    )
    args = ap.parse_args()
    tag = f"bench{uuid.uuid4().hex[:6]}"
    os.environ.update(
        {
            "DISKRISK_HBASE_NAMESPACE": tag,
            "DISKRISK_MODEL_NAME": f"{tag}-risk",
            "DISKRISK_EXPERIMENT": tag,
            "DISKRISK_LAKE_PREFIX": f"{tag}/",
        }
    )
    from diskrisk.config import ServeSettings, load
    from diskrisk.sinks import HBaseSink
    from test_serve import _free_port, register_champion
    from test_sinks import make_scores

    version = register_champion("coxph", seed=1)
    sink = HBaseSink()
    t0 = time.perf_counter()
    sink.write(make_scores(args.drives, "2024-01-01", prefix="B", model_version=version))
    print(f"wrote {args.drives:,} scores to HBase in {time.perf_counter() - t0:.1f}s")
    s = load(ServeSettings)
    port = _free_port()
    env = {
        **os.environ,
        "DISKRISK_SERVE_URL": f"http://127.0.0.1:{port}",
        "DISKRISK_SERVE_POLL_SECONDS": "600",
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "diskrisk"), "serve", "--workers", str(args.workers)],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    auth = (
        "Basic "
        + base64.b64encode(f"{s.username}:{s.password.get_secret_value()}".encode()).decode()
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "service did not start"
            time.sleep(1)
        lookup_lua = (
            "math.randomseed(7)\n"
            f"request = function() return wrk.format('GET', string.format('/api/v1/drives/B%08d', math.random(0, {args.drives - 1}))) end\n"
        )
        pages_lua = (
            "math.randomseed(11)\n"
            f"request = function() return wrk.format('GET', string.format('/api/v1/drives?top=100&page=%d', math.random(1, {max(args.drives // 100, 1)}))) end\n"
        )
        wrk(base + "/", auth, 3, lookup_lua, args.connections)  # warm-up: pools, caches
        top_lua = "request = function() return wrk.format('GET', '/api/v1/drives?top=100') end\n"
        routes = {
            "GET /drives/{serial}": lookup_lua,
            "GET /drives?top=100": top_lua,
            "top=100, random page": pages_lua,
        }
        pick = random.Random(3)
        paths = {
            "GET /drives/{serial}": [
                f"/api/v1/drives/B{pick.randrange(args.drives):08d}" for _ in range(20_000)
            ],
            "GET /drives?top=100": ["/api/v1/drives?top=100"],
            "top=100, random page": [
                f"/api/v1/drives?top=100&page={pick.randint(1, max(args.drives // 100, 1))}"
                for _ in range(20_000)
            ],
        }
        results = {}
        for name, lua in routes.items():
            results[name] = wrk(base + "/", auth, args.seconds, lua, args.connections)
            results[f"{name} @{args.rate}/s"] = vegeta(
                base, paths[name], auth, args.rate, args.seconds
            )
        days = sorted(Path(args.data).glob("*.csv"))[:1]
        body = pd.read_csv(days[0], dtype=str, keep_default_na=False, nrows=1000).to_csv(
            index=False
        )
        times = []
        with httpx.Client(base_url=base, headers={"Authorization": auth}, timeout=60) as c:
            for _ in range(args.predict_requests):
                t = time.perf_counter()
                r = c.post("/api/v1/predict", content=body, headers={"content-type": "text/csv"})
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200 and len(r.json()["scores"]) == 1000, r.text[:300]
        times.sort()
        print(
            f"\nrisk service, {args.drives:,} scored drives, {args.workers} uvicorn workers, "
            f"wrk -t2 -c{args.connections} (flat out), vegeta at {args.rate}/s (@), on loopback\n"
        )
        print(f"{'request':32} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
        for name, r in results.items():
            print(
                f"{name:32} {r['rps']:8.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:8.0f}"
            )
        print(
            f"{'POST /predict 1000 rows':32} {1000 / statistics.median(times):8.1f} "
            f"{statistics.median(times):8.1f} {times[-1]:8.1f} {'0':>8}   (sequential, max as p99)"
        )
        print("\ntargets: >= 500 req/s and p99 <= 50 ms (lookup, top-100); predict <= 300 ms")
    finally:
        server.terminate()
        server.wait(30)
        sink.drop_tables()


if __name__ == "__main__":
    main()
