"""The HBase score sink against the local stack's real HBase (through its Thrift gateway).

Every test gets its own table prefix (``DISKRISK_HBASE_NAMESPACE=t<session><n>``) so tests and
engineers sharing the stack never see each other's rows; the tables are dropped afterwards.
The helper tests at the top need no service and are not marked ``integration``, so
``make test-unit`` runs them too.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diskrisk import sinks
from diskrisk.config import HBaseSettings, load
from diskrisk.sinks import HBaseSink, SinkError

ROOT = Path(__file__).resolve().parents[1]
integration = pytest.mark.integration
SESSION = uuid.uuid4().hex[:8]
_counter = itertools.count()


def make_scores(
    n: int,
    day: str | dt.date = "2013-04-10",
    *,
    prefix: str = "S",
    seed: int = 0,
    model_version: str = "3",
    run_id: str = "run-a",
) -> pd.DataFrame:
    """Scores shaped like the scoring step's output (input contract of the sink)."""
    rng = np.random.default_rng(seed)
    risk = rng.random(n)
    return pd.DataFrame(
        {
            "serial_number": [f"{prefix}{i:08d}" for i in range(n)],
            "model": rng.choice(["ST4000DM000", "HGST HMS5C4040ALE640", 'WDC "WD30EFRX"'], n),
            "risk": risk,
            "p_fail_30d": risk / 10,
            "p_fail_90d": risk / 4,
            "rank_pct": pd.Series(risk).rank(pct=True).to_numpy() * 100,
            "model_name": "cox-ph",
            "model_version": model_version,
            "run_id": run_id,
            "data_date": day,
            "scored_at": f"{sinks.iso_date(day)}T23:30:00+00:00",
        }
    )


def as_records(df: pd.DataFrame) -> list[dict]:
    """Input rows in the form the read helpers return them (days as YYYY-MM-DD)."""
    out = sinks.normalise(df)
    return out.sort_values(["serial_number", "data_date"]).to_dict("records")


# --- helpers, no service ---------------------------------------------------------------------
def test_row_keys_and_dates():
    assert sinks.latest_key("Z1F0ABC") == b"Z1F0ABC"
    assert sinks.history_key("Z1F0ABC", dt.date(2013, 4, 10)) == b"Z1F0ABC#2013-04-10"
    assert sinks.history_key("Z1F0ABC", "2013-04-10") == b"Z1F0ABC#2013-04-10"
    assert sinks.history_prefix("Z1") == b"Z1#"
    # Keys of one drive sort chronologically and never interleave with a longer serial.
    keys = sorted(
        [
            sinks.history_key(s, d)
            for s in ("Z1", "Z10")
            for d in ("2013-12-31", "2013-04-10", "2014-01-01")
        ]
    )
    assert keys[:3] == [b"Z1#2013-04-10", b"Z1#2013-12-31", b"Z1#2014-01-01"]
    assert all(k.startswith(b"Z10#") for k in keys[3:])
    for bad in ("", "A#B"):
        with pytest.raises(ValueError):
            sinks.latest_key(bad)
    assert sinks.date_ts_ms("1970-01-02") == 86_400_000
    assert sinks.date_ts_ms("2013-04-11") > sinks.date_ts_ms(dt.date(2013, 4, 10))
    assert sinks.iso_date(pd.Timestamp("2013-04-10")) == "2013-04-10"
    with pytest.raises(ValueError):
        sinks.iso_date("2013-04-10T10:00")


def test_encoding_is_utf8_json_equal_to_reference_and_round_trips():
    df = make_scores(50, dt.date(2013, 4, 10))
    df.loc[0, "model"] = "Modèle ünïcode"
    norm = sinks.normalise(df)
    enc = sinks.encode_cells(norm)
    for i, rec in enumerate(norm.to_dict("records")):
        score = {k: rec[k] for k in sinks.SCORE_FIELDS}
        meta = {k: rec[k] for k in sinks.META_FIELDS}
        hist = {k: v for k, v in rec.items() if k != "serial_number"}
        assert enc.score[i] == sinks.encode_json(score).encode("utf-8")
        assert enc.meta[i] == sinks.encode_json(meta).encode("utf-8")
        assert enc.history[i] == sinks.encode_json(hist).encode("utf-8")
        assert enc.risk[i] == repr(rec["risk"]).encode()
        assert sinks.decode_latest(enc.latest_keys[i], enc.latest_cells(i)) == rec
        assert sinks.decode_history(enc.history_keys[i], enc.history_cells(i)) == rec
    assert json.loads(enc.score[0])["model"] == "Modèle ünïcode"
    # Same input, same bytes: what makes a rewrite idempotent.
    assert sinks.encode_cells(sinks.normalise(df)) == enc


def test_unsupported_probability_is_stored_as_null_and_read_back_as_missing():
    df = make_scores(3, dt.date(2013, 4, 10)).assign(p_fail_90d=float("nan"))
    norm = sinks.normalise(df)
    enc = sinks.encode_cells(norm)
    rec = norm.to_dict("records")[0]
    score = {k: rec[k] for k in sinks.SCORE_FIELDS}
    assert enc.score[0] == sinks.encode_json(score).encode("utf-8")
    assert json.loads(enc.score[0])["p_fail_90d"] is None
    back = sinks.decode_latest(enc.latest_keys[0], enc.latest_cells(0))
    assert np.isnan(back["p_fail_90d"]) and back["p_fail_30d"] == rec["p_fail_30d"]
    assert np.isnan(sinks.decode_history(enc.history_keys[0], enc.history_cells(0))["p_fail_90d"])
    inf = df.assign(p_fail_30d=float("inf"))
    with pytest.raises(ValueError, match="non-finite p_fail_30d"):
        sinks.normalise(inf)


def test_normalise_rejects_broken_input():
    good = make_scores(3)
    with pytest.raises(ValueError, match="column"):
        sinks.normalise(good.drop(columns=["run_id"]))
    nan = good.copy()
    nan.loc[1, "risk"] = float("nan")
    with pytest.raises(ValueError, match="non-finite risk"):
        sinks.normalise(nan)
    hashed = good.copy()
    hashed.loc[0, "serial_number"] = "A#1"
    with pytest.raises(ValueError, match="serial"):
        sinks.normalise(hashed)
    rank = good.copy()
    rank.loc[0, "rank_pct"] = 101.0
    with pytest.raises(ValueError, match="rank_pct"):
        sinks.normalise(rank)
    dup = pd.concat([good, good.assign(risk=0.5)])
    assert sinks.normalise(dup)["risk"].tolist() == [0.5] * 3  # last row of a key wins


def test_batches_and_backoff():
    assert [(s.start, s.stop) for s in sinks.batches(5, 2)] == [(0, 2), (2, 4), (4, 5)]
    assert sinks.backoff_delays(5, 0.5, 3.0) == [0.5, 1.0, 2.0, 3.0]
    assert sinks.backoff_delays(1, 0.5, 3.0) == []


# --- against HBase -----------------------------------------------------------------------------
@pytest.fixture
def namespace(stack_env, monkeypatch) -> str:
    ns = f"t{SESSION}{next(_counter)}"
    monkeypatch.setenv("DISKRISK_HBASE_NAMESPACE", ns)
    return ns


@pytest.fixture
def sink(namespace):
    s = HBaseSink()
    yield s
    s.drop_tables()


def raw_rows(s: HBaseSink, table: str, prefix: bytes = b"") -> dict[bytes, dict]:
    with s.connection() as conn:
        return dict(
            conn.table(table).scan(
                row_prefix=prefix or None, include_timestamp=True, batch_size=10_000
            )
        )


def count_rows(s: HBaseSink, table: str) -> int:
    with s.connection() as conn:
        return sum(
            1
            for _ in conn.table(table).scan(
                filter=b"FirstKeyOnlyFilter() AND KeyOnlyFilter()", batch_size=20_000
            )
        )


@integration
def test_tables_are_prefixed_and_created_idempotently(sink, namespace):
    errors: list[BaseException] = []

    def create() -> None:
        try:
            HBaseSink().ensure_tables()
        except BaseException as exc:
            errors.append(exc)

    racers = [threading.Thread(target=create) for _ in range(3)]  # tasks starting together
    for t in racers:
        t.start()
    for t in racers:
        t.join(120)
    assert errors == []
    sink.ensure_tables()  # and again, once they exist
    with sink.connection() as conn:
        conn.table_prefix = None  # see the real names
        names = {t.decode() for t in conn.tables()}
        tables = ("scores_latest", "scores_history", "runs", "scores_rank")
        assert {f"{namespace}_{t}" for t in tables} <= names
        fams = conn.table(f"{namespace}_scores_history").families()
    assert fams[b"s"]["max_versions"] == 1
    assert fams[b"s"]["time_to_live"] == 400 * 86_400


@integration
def test_every_row_written_is_readable(sink):
    df = make_scores(3_000, "2013-04-10")
    assert sink.write(df) == {"2013-04-10": 3_000}
    expected = as_records(df)
    with sink.connection() as conn:
        latest = [sinks.decode_latest(k, c) for k, c in conn.table("scores_latest").scan()]
        hist = [sinks.decode_history(k, c) for k, c in conn.table("scores_history").scan()]
    assert latest == expected
    assert hist == expected
    assert sink.latest("S00000007") == expected[7]
    assert sink.history("S00000007").to_dict("records") == [expected[7]]
    assert sink.latest("NOPE") is None
    assert sink.history("NOPE").empty


@integration
def test_rewriting_a_day_is_idempotent(sink):
    df = make_scores(2_000, dt.date(2013, 4, 10))
    sink.write(df)
    first = {t: raw_rows(sink, t) for t in ("scores_latest", "scores_history")}
    sink.write(df.sample(frac=1, random_state=1))  # same rows, another order
    second = {t: raw_rows(sink, t) for t in ("scores_latest", "scores_history")}
    assert len(second["scores_latest"]) == len(second["scores_history"]) == 2_000
    # Latest cells are timestamped with the day, so even the timestamps are equal.
    assert second["scores_latest"] == first["scores_latest"]
    values = {
        t: {k: {c: v for c, (v, _ts) in cells.items()} for k, cells in rows.items()}
        for t, rows in (("h1", first["scores_history"]), ("h2", second["scores_history"]))
    }
    assert values["h1"] == values["h2"]
    assert sink.completed("2013-04-10")["rows"] == 2_000


@integration
def test_history_is_one_ordered_prefix_scan_and_latest_never_goes_back(sink):
    days = ["2013-04-12", "2013-04-10", "2013-04-11"]  # written out of order on purpose
    frames = {d: make_scores(20, d, seed=i, run_id=f"run-{d}") for i, d in enumerate(days)}
    for d in days:
        sink.write(frames[d])
    hist = sink.history("S00000003")
    assert hist["data_date"].tolist() == sorted(days)
    for _, row in hist.iterrows():
        src = as_records(frames[row["data_date"]])[3]
        assert row.to_dict() == src
    # One contiguous range: the prefix scan returns exactly this drive's keys, in key order.
    keys = list(raw_rows(sink, "scores_history", sinks.history_prefix("S00000003")))
    assert keys == [f"S00000003#{d}".encode() for d in sorted(days)]
    # The latest table holds the newest day although 2013-04-10/11 were written after it ...
    assert sink.latest("S00000003") == as_records(frames["2013-04-12"])[3]
    # ... and an older day re-scored later still does not replace it,
    sink.write(make_scores(20, "2013-04-11", seed=9, model_version="4", run_id="late"))
    assert sink.latest("S00000003")["data_date"] == "2013-04-12"
    # while re-scoring the newest day with a newer model does.
    newer = make_scores(20, "2013-04-12", seed=7, model_version="5", run_id="rescore")
    sink.write(newer)
    assert sink.latest("S00000003") == as_records(newer)[3]
    assert len(sink.history("S00000003")) == 3


@integration
def test_top_k_is_ordered_by_risk(sink):
    df = make_scores(5_000, "2013-04-10")
    sink.write(df)
    top = sink.top(25)
    assert len(top) == 25
    assert top["risk"].is_monotonic_decreasing
    want = df.sort_values(["risk", "serial_number"], ascending=[False, True]).head(25)
    assert top["serial_number"].tolist() == want["serial_number"].tolist()
    assert top.iloc[0].to_dict() == as_records(df)[int(want.index[0])]
    assert sink.top(0).empty


@integration
def test_one_bad_row_is_set_aside_and_the_day_still_lands(sink):
    df = make_scores(200, "2013-04-10")
    df.loc[17, "serial_number"] = "S#17"
    assert sink.write(df) == {"2013-04-10": 199}
    marker = sink.completed("2013-04-10")
    assert marker["rows"] == 199 and marker["set_aside"] == 1
    assert sink.set_aside["serial_number"].tolist() == ["S#17"]
    assert sink.latest("S00000018") is not None


@integration
def test_the_day_ranking_reads_only_the_rows_asked_for(sink):
    df = make_scores(3_000, "2013-04-10", model_version="3")
    sink.write(df)
    want = df.sort_values(["risk", "serial_number"], ascending=[False, True])
    day, top = sink.ranked(limit=10)
    assert day == "2013-04-10"
    assert top["serial_number"].tolist() == want["serial_number"].head(10).tolist()
    assert top.iloc[0].to_dict() == as_records(df)[int(want.index[0])]
    _, page2 = sink.ranked(day, limit=10, offset=10)
    assert page2["serial_number"].tolist() == want["serial_number"].iloc[10:20].tolist()
    seagate = want[want["model"].str.startswith("ST")]
    _, st = sink.ranked(day, limit=5, keep=lambda r: r["model"].startswith("ST"))
    assert st["serial_number"].tolist() == seagate["serial_number"].head(5).tolist()
    _, above = sink.ranked(day, limit=10_000, min_risk=0.9)
    assert above["serial_number"].tolist() == want[want["risk"] >= 0.9]["serial_number"].tolist()
    # Re-scored by a newer model with fewer drives: only the new ranking is read.
    fewer = make_scores(50, "2013-04-10", seed=5, model_version="4", run_id="run-b")
    sink.write(fewer)
    _, now = sink.ranked(day, limit=1_000)
    assert len(now) == 50 and set(now["model_version"]) == {"4"}
    assert now["risk"].is_monotonic_decreasing


@integration
def test_completion_marker_only_after_every_batch(namespace):
    df = make_scores(1_000, "2013-04-10", run_id="run-marker", model_version="7")
    seen: list[object] = []
    settings = load(HBaseSettings).model_copy(update={"batch_size": 100})
    s = HBaseSink(settings, on_batch=lambda day, n: seen.append(s.completed(day)))
    try:
        assert s.completed("2013-04-10") is None
        t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
        s.write(df)
        assert len(seen) == 10 and seen == [None] * 10
        done = s.completed(dt.date(2013, 4, 10))
        assert done is not None
        assert {k: done[k] for k in ("rows", "model_version", "run_id", "model_name")} == {
            "rows": 1_000,
            "model_version": "7",
            "run_id": "run-marker",
            "model_name": "cox-ph",
        }
        assert dt.datetime.fromisoformat(done["finished_at"]) >= t0
        assert s.completed("2013-04-11") is None
    finally:
        s.drop_tables()


def thrift_gateway(action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "stack"), action, "hbase-thrift"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def thrift_up() -> None:
    done = thrift_gateway("up")
    assert done.returncode == 0, f"could not restart hbase-thrift:\n{done.stdout}{done.stderr}"


@integration
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gateway_dies_mid_write_then_rerun_completes(sink):
    """Stop the real Thrift server while 200k rows are being written, then start it again."""
    day = "2013-04-10"
    sink.write(make_scores(500, day, run_id="before"))  # an earlier complete run of the day
    assert sink.completed(day)["run_id"] == "before"

    df = make_scores(200_000, day, run_id="big")
    settings = load(HBaseSettings).model_copy(update={"batch_size": 2_000})
    landed = threading.Event()
    failing = HBaseSink(
        settings, attempts=3, backoff_s=0.2, on_batch=lambda _d, n: n >= 3 and landed.set()
    )
    outcome: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            failing.write(df)
            outcome["error"] = None
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    writer = threading.Thread(target=run, daemon=True)
    writer.start()
    try:
        assert landed.wait(300), "no batch landed"
        t_down = time.monotonic()
        down = thrift_gateway("down")
        assert down.returncode == 0, down.stderr
        writer.join(300)
        assert not writer.is_alive(), "the write did not give up"
        print(f"writer gave up {time.monotonic() - t_down:.1f}s after the stop")
    finally:
        thrift_up()
    err = outcome["error"]
    assert isinstance(err, SinkError), f"expected SinkError, got {err!r}"
    print(err)
    assert day in str(err) and "batches" in str(err) and "/100 batches" in str(err)
    assert sink.completed(day) is None  # the old marker went, no new one came

    assert sink.write(df) == {day: 200_000}
    assert count_rows(sink, "scores_latest") == 200_000
    assert count_rows(sink, "scores_history") == 200_000
    marker = sink.completed(day)
    assert marker["rows"] == 200_000 and marker["run_id"] == "big"
    assert sink.latest("S00199999") == as_records(df.tail(1))[0]
