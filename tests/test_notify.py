"""Failure notifications reach a webhook (a real HTTP server on loopback) and never raise."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace
from typing import ClassVar

from diskrisk.notify import post, task_failed


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _server():
    srv = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/hook"


def test_task_failure_is_posted(monkeypatch):
    srv, url = _server()
    monkeypatch.setenv("DISKRISK_ALERT_WEBHOOK", url)
    _Hook.received.clear()
    ti = SimpleNamespace(dag_id="diskrisk_pipeline", task_id="score")
    task_failed({"task_instance": ti, "run_id": "manual__1", "exception": RuntimeError("boom")})
    srv.shutdown()
    assert _Hook.received == [
        {"text": "diskrisk: task diskrisk_pipeline.score failed in run manual__1: boom"}
    ]


def test_no_webhook_configured_is_a_no_op(monkeypatch, tmp_path):
    monkeypatch.delenv("DISKRISK_ALERT_WEBHOOK", raising=False)
    monkeypatch.setenv("DISKRISK_ENV_FILE", str(tmp_path / "absent.env"))
    assert post("hello") is False


def test_webhook_given_only_in_the_env_file_is_posted(monkeypatch, tmp_path):
    """Airflow tasks get the webhook from .env (DISKRISK_ENV_FILE), not their environment."""
    srv, url = _server()
    monkeypatch.delenv("DISKRISK_ALERT_WEBHOOK", raising=False)
    env = tmp_path / "x.env"
    env.write_text(f"DISKRISK_ALERT_WEBHOOK={url}\n")
    monkeypatch.setenv("DISKRISK_ENV_FILE", str(env))
    _Hook.received.clear()
    assert post("from the env file") is True
    srv.shutdown()
    assert _Hook.received == [{"text": "from the env file"}]


def test_unreachable_webhook_does_not_raise():
    srv, url = _server()
    srv.shutdown()
    srv.server_close()
    assert post("hello", url, timeout=2) is False
