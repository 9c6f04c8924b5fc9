"""Process supervision for the local stack: start, readiness, pid files, stop.

Each service runs in its own session (process group) with its output in `.stack/logs/NAME.log`
and its pid in `.stack/run/NAME.pid`, so `down` stops exactly what `up` started. A service
marked ``restart`` runs under a shell loop that starts it again when it exits — compose's
`restart: unless-stopped` for the processes that exit on a lost database (Airflow's scheduler);
`down` stops the loop with its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("DISKRISK_STACK_DIR", ROOT / ".stack")).resolve()
CACHE = Path(os.environ.get("DISKRISK_CACHE_DIR", ROOT / ".cache")).resolve()
LOGS = STATE / "logs"
RUN = STATE / "run"
DATA = STATE / "data"


RESTART_LOOP = (
    'while :; do "$@"; rc=$?; '
    'echo "=== $(date "+%F %T") $0 exited with $rc: restarting in 5s"; sleep 5; done'
)


class StackError(RuntimeError):
    pass


@dataclass
class Service:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    prepare: Callable[[], None] | None = None
    after: Callable[[], None] | None = None
    user: str | None = None
    timeout: float = 180.0
    # Names (or name prefixes ending in "_") of the caller's variables the service must not
    # inherit: it reads them from `.env` itself, where an edit takes effect without a restart.
    scrub: tuple[str, ...] = ()
    restart: bool = False
    # Seconds the process must have run before `ready` counts (a health answer may still be
    # about the process this one replaced).
    min_uptime: float = 0.0

    @property
    def pidfile(self) -> Path:
        return pidfile(self.name)

    @property
    def logfile(self) -> Path:
        return LOGS / f"{self.name}.log"


def pidfile(name: str) -> Path:
    return RUN / f"{name}.pid"


def pid_of(svc: Service) -> int | None:
    return recorded_pid(svc.name)


def recorded_pid(name: str) -> int | None:
    """The live pid `up` recorded for the service ``name`` (a restart loop's for a service
    that has one), or None."""
    try:
        pid = int(pidfile(name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def inherited(svc: Service) -> dict[str, str]:
    """The caller's environment minus the variables the service reads from `.env` itself."""

    def scrubbed(name: str) -> bool:
        return any(name == s or (s.endswith("_") and name.startswith(s)) for s in svc.scrub)

    return {k: v for k, v in os.environ.items() if not scrubbed(k)}


def start(svc: Service) -> str:
    """Start a service unless it already runs, then wait until it is ready."""
    for d in (LOGS, RUN, DATA):
        d.mkdir(parents=True, exist_ok=True)
    if pid_of(svc) is not None:
        _wait_ready(svc)
        if svc.after:
            svc.after()
        return "already running"
    if svc.prepare:
        svc.prepare()
    env = {**inherited(svc), **svc.env}
    argv = ["bash", "-c", RESTART_LOOP, svc.name, *svc.argv] if svc.restart else svc.argv
    if svc.user and os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={svc.user}", f"--regid={svc.user}", "--init-groups", *argv]
    with svc.logfile.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {svc.name}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=svc.cwd,
            env=env,
            start_new_session=True,
        )
    svc.pidfile.write_text(str(proc.pid))
    _wait_ready(svc, proc)
    if svc.after:
        svc.after()
    return f"started (pid {proc.pid})"


def _wait_ready(svc: Service, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + svc.timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{svc.name} exited with {proc.returncode}; log:\n{tail(svc)}")
        try:
            uptime = time.time() - svc.pidfile.stat().st_mtime
            if uptime >= svc.min_uptime and svc.ready():
                return
        except Exception:  # readiness probes fail in many ways while a service boots
            pass
        time.sleep(1.0)
    raise StackError(f"{svc.name} not ready after {svc.timeout:.0f}s; log:\n{tail(svc)}")


def stop(svc: Service, grace: float = 30.0) -> str:
    pid = pid_of(svc)
    if pid is None:
        svc.pidfile.unlink(missing_ok=True)
        return "not running"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.5)
    if _group_alive(pid):
        os.killpg(pid, signal.SIGKILL)
    svc.pidfile.unlink(missing_ok=True)
    return f"stopped (pid {pid})"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def tail(svc: Service, lines: int = 40) -> str:
    try:
        return "\n".join(svc.logfile.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def run(argv: list[str], env: dict[str, str] | None = None, user: str | None = None) -> str:
    """Run a one-off command (migrations, initdb), failing with its output."""
    if user and os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
    res = subprocess.run(
        argv, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise StackError(
            f"{' '.join(argv[:3])}... failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        )
    return res.stdout
