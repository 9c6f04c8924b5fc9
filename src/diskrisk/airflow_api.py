"""A small client of Airflow 3's REST API (``/api/v2``): trigger the DAG as a user does and
follow the run the running scheduler executes.

Used by ``diskrisk trigger``, the demo and the tests, so they all go through the same path as
the UI's Trigger button: a token from ``POST /auth/token`` (simple auth manager, the admin of
``.env``), ``PATCH`` to unpause, ``POST .../dagRuns`` with ``logical_date`` null, then polling.
Standard library only: nothing to install beside the package.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from diskrisk.config import AirflowAdminSettings, load

DAG_ID = "diskrisk_pipeline"
ACTIVE = ("queued", "running")
FINISHED = ("success", "failed")


class AirflowApiError(RuntimeError):
    """The API answered with an error status (the message carries it and the body)."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url}: HTTP {status}: {body[:500]}")
        self.status = status


class SchedulerDownError(RuntimeError):
    """The scheduler stopped heartbeating: no run can progress, so waiting longer is futile."""


class AirflowClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout: float = 30.0,
        scheduler_grace: float = 180.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        # How old the scheduler's last heartbeat may be (a busy one on 2 cores misses some)
        # before `wait`/`settle` give up with SchedulerDownError.
        self.scheduler_grace = scheduler_grace
        self._token: str | None = None

    @classmethod
    def from_settings(cls, timeout: float = 30.0) -> AirflowClient:
        """AIRFLOW_API_URL and the admin user/password: the environment, then `.env`."""
        s = load(AirflowAdminSettings)
        return cls(str(s.api_url), s.username, s.password.get_secret_value(), timeout)

    # --- HTTP -------------------------------------------------------------------------------------
    def _send(self, method: str, url: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise AirflowApiError(
                method, url, exc.code, exc.read().decode(errors="replace")
            ) from None
        ctype = resp.headers.get("Content-Type", "")
        return json.loads(raw) if raw and "json" in ctype else raw.decode(errors="replace")

    def token(self) -> str:
        """A JWT for the admin user (``POST /auth/token``)."""
        if self._token is None:
            answer = self._send(
                "POST",
                f"{self.base_url}/auth/token",
                {"username": self.username, "password": self.password},
            )
            self._token = answer["access_token"]
        return self._token

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """``/api/v2`` + path; a token that expired is renewed once."""
        url = f"{self.base_url}/api/v2{path}"
        try:
            return self._send(method, url, body, self.token())
        except AirflowApiError as exc:
            if exc.status != 401:
                raise
            self._token = None
            return self._send(method, url, body, self.token())

    # --- health -------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``/api/v2/monitor/health``: metadatabase, scheduler, dag-processor, triggerer."""
        return self._send("GET", f"{self.base_url}/api/v2/monitor/health")  # type: ignore[no-any-return]

    def check_scheduler(self) -> None:
        """Raise SchedulerDownError once the scheduler's last heartbeat is older than
        ``scheduler_grace`` (none at all counts as down)."""
        scheduler = self.health().get("scheduler") or {}
        beat = _parse_time(scheduler.get("latest_scheduler_heartbeat"))
        if beat is not None and (datetime.now(UTC) - beat).total_seconds() <= self.scheduler_grace:
            return
        raise SchedulerDownError(
            f"the Airflow scheduler is {scheduler.get('status')} (last heartbeat {beat}) for "
            f"more than {self.scheduler_grace:.0f}s: no run can progress. Is it running? "
            "(local stack: scripts/stack status; compose: docker compose ps)"
        )

    # --- DAGs and runs ------------------------------------------------------------------------------
    def dag(self, dag_id: str = DAG_ID) -> dict[str, Any]:
        return self.request("GET", f"/dags/{dag_id}")  # type: ignore[no-any-return]

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout: float = 180.0) -> dict[str, Any]:
        """Until the dag-processor has parsed the DAG (a fresh stack needs a few seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.dag(dag_id)
            except AirflowApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(2)

    def set_paused(self, paused: bool, dag_id: str = DAG_ID) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "PATCH", f"/dags/{dag_id}?update_mask=is_paused", {"is_paused": paused}
        )

    def runs(self, dag_id: str = DAG_ID, states: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        query = [("order_by", "-run_after"), ("limit", "100")] + [("state", s) for s in states]
        answer = self.request("GET", f"/dags/{dag_id}/dagRuns?{urllib.parse.urlencode(query)}")
        return list(answer["dag_runs"])

    def settle(
        self,
        dag_id: str = DAG_ID,
        timeout: float = 1800.0,
        on_wait: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        """Until no run is due, queued or running (paused: running): after unpausing, the
        scheduler first creates the run of the latest schedule interval (catchup is off);
        waiting for it keeps it from overtaking the runs a caller is about to trigger."""
        deadline = time.monotonic() + timeout
        due_since: float | None = None
        while True:
            dag = self.dag(dag_id)
            due = _parse_time(dag.get("next_dagrun_run_after"))
            is_due = not dag["is_paused"] and due is not None and due <= datetime.now(UTC)
            # A run that stays due for long is one the scheduler will not create: stop waiting.
            due_since = (due_since or time.monotonic()) if is_due else None
            stale = due_since is not None and time.monotonic() - due_since > 60
            # queued runs of a paused DAG wait for it to be unpaused: only running ones end
            active = self.runs(dag_id, ("running",) if dag["is_paused"] else ACTIVE)
            if not active and (not is_due or stale):
                return
            if on_wait:
                on_wait(active)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id}: runs still active after {timeout:.0f}s: {active}")
            self.check_scheduler()
            time.sleep(3)

    def trigger(
        self,
        conf: dict[str, Any] | None = None,
        dag_id: str = DAG_ID,
        logical_date: str | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """A run as the UI's Trigger button makes it; ``logical_date`` None is sent as null."""
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        if note:
            body["note"] = note
        return self.request("POST", f"/dags/{dag_id}/dagRuns", body)  # type: ignore[no-any-return]

    def backfill(
        self,
        start: str,
        end: str,
        conf: dict[str, Any] | None = None,
        dag_id: str = DAG_ID,
        max_active_runs: int = 1,
        reprocess: str = "none",
    ) -> dict[str, Any]:
        """One scheduled run per schedule interval from ``start`` to ``end``, created and run
        by the scheduler (Airflow 3 backfill); one at a time, as a catch-up per run needs.
        ``reprocess``: what to do with intervals that already have a run (Airflow's
        reprocess_behavior: none, failed, completed)."""
        body = {
            "dag_id": dag_id,
            "from_date": f"{start}T00:00:00Z",
            "to_date": f"{end}T00:00:00Z",
            "max_active_runs": max_active_runs,
            "reprocess_behavior": reprocess,
            "dag_run_conf": conf or {},
        }
        return self.request("POST", "/backfills", body)  # type: ignore[no-any-return]

    def backfill_runs(self, start: str, end: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        """The backfill runs of the intervals ``start`` .. ``end``, oldest first."""
        query = urllib.parse.urlencode(
            [
                ("run_type", "backfill"),
                ("logical_date_gte", f"{start}T00:00:00Z"),
                ("logical_date_lte", f"{end}T00:00:00Z"),
                ("order_by", "logical_date"),
                ("limit", "1000"),
            ]
        )
        answer = self.request("GET", f"/dags/{dag_id}/dagRuns?{query}")
        return list(answer["dag_runs"])

    def run(self, run_id: str, dag_id: str = DAG_ID) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        )

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        rid = urllib.parse.quote(run_id, safe="")
        answer = self.request("GET", f"/dags/{dag_id}/dagRuns/{rid}/taskInstances?limit=100")
        return list(answer["task_instances"])

    def xcom(self, run_id: str, task_id: str, dag_id: str = DAG_ID) -> Any:
        """A task's return value."""
        rid = urllib.parse.quote(run_id, safe="")
        answer = self.request(
            "GET",
            f"/dags/{dag_id}/dagRuns/{rid}/taskInstances/{task_id}/xcomEntries/return_value"
            "?deserialize=true",
        )
        value = answer["value"]
        return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value

    def task_log(
        self,
        run_id: str,
        task_id: str,
        try_number: int = 1,
        dag_id: str = DAG_ID,
        map_index: int = -1,
    ) -> str:
        rid = urllib.parse.quote(run_id, safe="")
        answer = self.request(
            "GET",
            f"/dags/{dag_id}/dagRuns/{rid}/taskInstances/{task_id}/logs/{try_number}"
            f"?full_content=true&map_index={map_index}",
        )
        content = answer.get("content", answer) if isinstance(answer, dict) else answer
        if isinstance(content, list):
            return "\n".join(
                str(c.get("event", c)) if isinstance(c, dict) else str(c) for c in content
            )
        return str(content)

    def wait(
        self,
        run_id: str,
        dag_id: str = DAG_ID,
        timeout: float = 3600.0,
        poll: float = 3.0,
        on_change: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the run succeeds or fails; ``on_change(run, task_instances)`` whenever a
        task's state changes. Returns the final run; SchedulerDownError once the scheduler's
        last heartbeat is older than ``scheduler_grace`` (the run would wait for nothing)."""
        deadline = time.monotonic() + timeout
        seen: dict[tuple[str, int], str | None] = {}
        while True:
            run = self.run(run_id, dag_id)
            tis = self.task_instances(run_id, dag_id)
            now = {(t["task_id"], t.get("map_index", -1)): t.get("state") for t in tis}
            if on_change and (now != seen or run["state"] in FINISHED):
                on_change(run, tis)
            seen = now
            if run["state"] in FINISHED:
                return run  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['state']} after {timeout:.0f}s")
            self.check_scheduler()
            time.sleep(poll)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def summarize(tis: list[dict[str, Any]]) -> dict[str, str]:
    """task_id (with [map index] for mapped tasks) -> state, in the order the API lists them."""
    out = {}
    for t in sorted(tis, key=lambda t: (t.get("start_date") or "9", t["task_id"])):
        key = t["task_id"] + (f"[{t['map_index']}]" if t.get("map_index", -1) >= 0 else "")
        out[key] = t.get("state") or "none"
    return out
