"""One owner of the object-store layout: the CLI and the DAG's tasks meet under the same prefix,
given only in `.env`."""

from __future__ import annotations

import os
import uuid
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diskrisk import config, layout


def test_every_key_starts_with_the_prefix():
    day, prefix = date(2024, 5, 1), "team-a/"
    keys = [
        layout.raw(day, prefix),
        layout.file_record("x/2024-05-01.csv", prefix),
        layout.quarantine(day, "2024-05-01.csv", prefix),
        layout.lake_day(day, prefix),
        layout.manifest(prefix),
        layout.dataset("2024-05-01", "abc", prefix),
        layout.stats_state("drives", prefix),
        layout.stats_report("stats.json", prefix),
        layout.drift_report("2024-05-01", "drift_report.html", prefix),
    ]
    assert all(k.startswith(prefix) for k in keys)
    assert len(set(keys)) == len(keys)
    assert layout.lake_day(day, prefix).startswith(layout.lake_partitions(prefix))
    assert not layout.stats_state("drives", prefix).startswith(layout.lake_partitions(prefix))
    assert layout.raw(day) == "raw/2024/2024-05-01.csv"


@pytest.mark.integration
def test_cli_collect_and_the_dag_tasks_share_the_prefix_of_the_env_file(
    stack_env, backblaze_dir, tmp_path, monkeypatch
):
    from diskrisk import pipeline, s3
    from diskrisk.cli import app

    prefix = f"layout{uuid.uuid4().hex[:8]}/"
    env_file = tmp_path / "only.env"
    env_file.write_text(
        Path(os.environ["DISKRISK_ENV_FILE"]).read_text() + f"\nDISKRISK_LAKE_PREFIX={prefix}\n"
    )
    monkeypatch.setenv("DISKRISK_ENV_FILE", str(env_file))
    monkeypatch.delenv("DISKRISK_LAKE_PREFIX", raising=False)
    config.cached.cache_clear()
    days = sorted(backblaze_dir.glob("*.csv"))[:3]
    cli_src, dag_src = tmp_path / "cli", tmp_path / "dag"
    for folder, chosen in ((cli_src, days[:2]), (dag_src, days[2:])):
        folder.mkdir()
        for p in chosen:
            (folder / p.name).symlink_to(p)
    try:
        result = CliRunner().invoke(app, ["collect", str(cli_src)])
        assert result.exit_code == 0, result.output
        # the DAG's tasks read what the CLI wrote ...
        assert pipeline.lake_days() == [p.stem for p in days[:2]]
        # ... and write beside it: the CLI's next run sees the DAG's day as unchanged
        pipeline.build_lake(pipeline.collect(str(dag_src)))
        assert pipeline.lake_days() == [p.stem for p in days]
        again = CliRunner().invoke(app, ["collect", str(dag_src)])
        assert again.exit_code == 0 and '"unchanged"' in again.output, again.output
        listed = s3.client().list_objects_v2(Bucket=s3.bucket(), Prefix=prefix)["Contents"]
        keys = {o["Key"] for o in listed}
        for p in days:
            day = date.fromisoformat(p.stem)
            assert {layout.raw(day, prefix), layout.lake_day(day, prefix)} <= keys
        assert layout.manifest(prefix) in keys
    finally:
        config.cached.cache_clear()
