"""Failure notifications: always logged, posted to a webhook when one is configured."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

log = logging.getLogger(__name__)


def message(dag_id: str, task_id: str, run_id: str, error: object) -> str:
    return f"diskrisk: task {dag_id}.{task_id} failed in run {run_id}: {error}"


def post(text: str, url: str | None = None, timeout: float = 10.0) -> bool:
    """POST ``{"text": ...}`` (Slack/Teams/Mattermost incoming-webhook shape); never raises."""
    if url is None:
        from diskrisk.config import ConfigError, PipelineSettings, load

        try:
            url = load(PipelineSettings).alert_webhook
        except ConfigError as exc:  # a bad setting must not hide the task's own failure
            log.warning("alert webhook not used: %s", exc)
            return False
    if not url:
        return False
    req = urllib.request.Request(
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except OSError as exc:  # a broken webhook must not hide the task's own failure
        log.warning("alert webhook failed: %s", exc)
        return False


def task_failed(context: dict[str, Any]) -> None:
    """Airflow on_failure_callback."""
    ti = context.get("task_instance") or context.get("ti")
    text = message(
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        str(context.get("run_id", "?")),
        context.get("exception"),
    )
    log.error(text)
    post(text)
