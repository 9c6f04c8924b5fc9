"""What the tests that drive the running scheduler share: settings of their own (lake prefix,
model, experiment, HBase namespace) written into `.env` for a module's duration and restored
byte for byte, the same settings in this process, and waiting on a task's state."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any


def isolation(tag: str) -> dict[str, str]:
    return {
        "DISKRISK_LAKE_PREFIX": f"{tag}/",
        "DISKRISK_MODEL_NAME": f"{tag}-risk",
        "DISKRISK_EXPERIMENT": tag,
        "DISKRISK_HBASE_NAMESPACE": tag,
    }


@contextmanager
def in_env_file(settings: dict[str, str]) -> Iterator[None]:
    """``settings`` in `.env` only (the scheduler's tasks read it); restored afterwards, and the
    HBase tables of the namespace dropped."""
    from dotenv import set_key

    env_file = Path(os.environ["DISKRISK_ENV_FILE"])
    original = env_file.read_bytes()
    try:
        for key, value in settings.items():
            set_key(env_file, key, value, quote_mode="never")
        yield
    finally:
        env_file.write_bytes(original)
        with in_process(settings):
            from diskrisk.sinks import HBaseSink

            HBaseSink().drop_tables()


@contextmanager
def in_process(settings: dict[str, str]) -> Iterator[None]:
    """This process sees what the tasks saw."""
    from diskrisk import config

    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    config.cached.cache_clear()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        config.cached.cache_clear()


def stack_pid(service: str) -> int:
    """The pid the local stack recorded for ``service`` (a restart loop's: the service is its
    child); fails when it is not running."""
    from localstack.proc import recorded_pid

    pid = recorded_pid(service)
    assert pid is not None, f"the local stack's {service} is not running"
    return pid


def wait_for_task(
    client: Any, run_id: str, task: str, states: set[str], timeout: float, poll: float = 1.0
) -> dict[str, Any]:
    """The task instance once it is in one of ``states`` (any map index); fails early when
    the run ends first."""
    deadline = time.monotonic() + timeout
    while True:
        tis = [t for t in client.task_instances(run_id) if t["task_id"] == task]
        for ti in tis:
            if ti.get("state") in states:
                return dict(ti)
        run = client.run(run_id)
        assert run["state"] not in {"success", "failed"} or "failed" in states, (
            f"run {run['state']} while waiting for {task} to be {states}: "
            f"{[(t['task_id'], t.get('state')) for t in client.task_instances(run_id)]}"
        )
        assert time.monotonic() < deadline, f"{task} never {states}: {tis}"
        client.check_scheduler()
        time.sleep(poll)


def assert_lake_matches_manifest(days: list[str]) -> None:
    """The manifest lists ``days``; every raw day and lake partition matches its digests and
    row count, and was written once (one object version: no retry or rerun rewrote it)."""
    import pyarrow.parquet as pq

    from diskrisk import layout, s3
    from diskrisk.config import lake_prefix
    from diskrisk.lake import read_manifest

    prefix = lake_prefix()
    versions: dict[str, int] = {}
    pages = s3.client().get_paginator("list_object_versions")
    for page in pages.paginate(Bucket=s3.bucket(), Prefix=prefix):
        for v in page.get("Versions", []):
            versions[v["Key"]] = versions.get(v["Key"], 0) + 1
        assert not page.get("DeleteMarkers"), page["DeleteMarkers"][:3]
    immutable = (
        layout.raw_root(prefix),
        layout.lake_partitions(prefix),
        layout.dataset("", "", prefix).removesuffix("-"),
    )
    rewritten = {k: n for k, n in versions.items() if n > 1 and k.startswith(immutable)}
    assert not rewritten, f"objects written more than once: {rewritten}"
    assert not [k for k in versions if k.endswith((".part", ".tmp"))]

    manifest = read_manifest(prefix)["days"]
    assert sorted(manifest) == days
    for day, entry in manifest.items():
        d = date.fromisoformat(day)
        raw = s3.get_bytes(layout.raw(d, prefix))
        part = s3.get_bytes(layout.lake_day(d, prefix))
        assert raw is not None and part is not None, day
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"], day
        assert hashlib.sha256(part).hexdigest() == entry["parquet_sha256"], day
        assert pq.read_metadata(io.BytesIO(part)).num_rows == entry["rows"], day


def assert_scored(days: list[str]) -> None:
    """Each day has one completion marker, covering every drive of its lake partition (scored
    or set aside), and its ranking holds one row per scored drive."""
    from diskrisk.config import lake_prefix
    from diskrisk.lake import read_manifest
    from diskrisk.sinks import KEY_SEP, RANK, HBaseSink

    manifest = read_manifest(lake_prefix())["days"]
    sink = HBaseSink()
    for day in days:
        marker = sink.completed(day)
        assert marker is not None, f"{day} was not scored"
        assert marker["rows"] + marker["set_aside"] == manifest[day]["rows"], (day, marker)
        ranking = f"{day}{KEY_SEP}{marker['model_version']}{KEY_SEP}".encode()
        with sink.connection() as conn:
            rows = conn.table(RANK).scan(row_prefix=ranking, filter=b"KeyOnlyFilter()")
            assert sum(1 for _ in rows) == marker["rows"], day
