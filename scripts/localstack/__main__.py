"""`scripts/stack up|down|status|env|logs [service...]`, or `scripts/stack airflow ARGS...` to
run the Airflow CLI against the local stack's metadata database."""

from __future__ import annotations

import argparse
import sys
import time

from localstack.proc import LOGS, StackError, pid_of, start, stop, tail
from localstack.services import all_services, ensure_env


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["airflow"]:
        return _airflow(argv[1:])
    parser = argparse.ArgumentParser(prog="scripts/stack", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status", "env", "logs"])
    parser.add_argument("services", nargs="*", help="default: all, in dependency order")
    args = parser.parse_args(argv)
    if args.action == "env":
        print(ensure_env())
        return 0
    services = all_services()
    names = [s.name for s in services]
    unknown = set(args.services) - set(names)
    if unknown:
        parser.error(f"unknown service(s) {sorted(unknown)}; known: {names}")
    chosen = [s for s in services if not args.services or s.name in args.services]

    if args.action == "up":
        for svc in chosen:
            t0 = time.monotonic()
            try:
                outcome = start(svc)
            except StackError as exc:
                print(f"✗ {svc.name}: {exc}", file=sys.stderr)
                return 1
            print(f"✓ {svc.name:<22} {outcome:<22} {time.monotonic() - t0:6.1f}s", flush=True)
        print(f"logs: {LOGS}")
    elif args.action == "down":
        for svc in reversed(chosen):
            print(f"  {svc.name:<22} {stop(svc)}", flush=True)
    elif args.action == "status":
        down = 0
        for svc in chosen:
            pid = pid_of(svc)
            ok = False
            if pid is not None:
                try:
                    ok = bool(svc.ready())
                except Exception:
                    ok = False
            state = "up" if ok else ("starting/unhealthy" if pid else "down")
            down += not ok
            print(f"{svc.name:<22} {state:<20} {'pid ' + str(pid) if pid else ''}")
        return 1 if down else 0
    elif args.action == "logs":
        for svc in chosen:
            print(f"==> {svc.logfile} <==\n{tail(svc, 30)}\n")
    return 0


def _airflow(args: list[str]) -> int:
    import os
    from pathlib import Path

    from localstack.services import airflow_env, env

    airflow = Path(sys.executable).parent / "airflow"
    os.execve(str(airflow), [str(airflow), *args], {**os.environ, **airflow_env(env())})


if __name__ == "__main__":
    sys.exit(main())
