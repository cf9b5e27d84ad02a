"""`jobs`: submit, list, show, logs, cancel, resume, delete, and `run` (a scheduler in the foreground).

Every command but `run` only reads and writes the store, so it works with or without the app; the
scheduler of the data folder (the app's engine, `serve`, or `jobs run`) picks the changes up.
`submit` starts a background engine when no scheduler runs (unless --no-start), like `models load`.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time

from ..engine import Engine
from ..errors import InvalidInput, LLMOSError
from ..present import format_bytes
from ..jobs.kinds import KINDS
from ..jobs.scheduler import FINISHED, STATES
from ..settings import Settings
from . import acting_user, print_json, table


def register(subparsers) -> None:
    parser = subparsers.add_parser("jobs", help="training, translation and benchmark jobs: the queue and its scheduler")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("submit", help="queue a job")
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("--param", "-p", action="append", default=[], metavar="K=V",
                   help="a parameter; the value is read as JSON when it can be (5, true, [1,2]), else as text")
    p.add_argument("--priority", type=int, default=0, help="higher starts first (default 0)")
    p.add_argument("--no-start", action="store_true", help="do not start a background scheduler if none runs")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("list", help="jobs, newest first")
    p.add_argument("--state", action="append", choices=STATES)
    p.add_argument("--kind", choices=sorted(KINDS))
    p.add_argument("--json", action="store_true")
    for action, text in (("show", "one job: parameters, state, result"), ("cancel", "stop a queued or running job"),
                         ("resume", "continue an interrupted, cancelled or failed job from its checkpoint"),
                         ("delete", "forget a finished job and delete its files")):
        p = sub.add_parser(action, help=text)
        p.add_argument("id", type=int)
        p.add_argument("--json", action="store_true")
    p = sub.add_parser("logs", help="a job's log")
    p.add_argument("id", type=int)
    p.add_argument("--lines", "-n", type=int, default=50)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p = sub.add_parser("run", help="run the scheduler in the foreground (when no app or server runs it)")
    p.add_argument("--exit-when-idle", action="store_true", help="exit once nothing is queued or running")
    parser.set_defaults(func=run)


def run(args) -> int:
    settings = Settings.from_env()
    if args.action == "run":
        return _run_scheduler(args, settings)
    engine = Engine(settings, primary=False, start_threads=False)
    try:
        return {"submit": _submit, "list": _list, "show": _show, "logs": _logs, "cancel": _cancel,
                "resume": _resume, "delete": _delete}[args.action](args, engine)
    finally:
        engine.close()


def parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidInput(f"cannot read parameter {pair!r}", "write it as name=value, e.g. -p seconds=10")
        name, text = pair.split("=", 1)
        try:
            params[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            params[name.strip()] = text
    return params


def _mine(args, engine: Engine):
    """The scheduler as the acting user (--as) sees it: their jobs only."""
    return engine.scheduler.for_user(acting_user(args, engine.store))


def _submit(args, engine: Engine) -> int:
    scheduler = _mine(args, engine)
    job_id = scheduler.submit(args.kind, parse_params(args.param), args.priority)
    if not scheduler.is_alive() and not args.no_start:
        from .models import ensure_server

        ensure_server(engine.settings)
    job = scheduler.get(job_id)
    if args.json:
        print_json(_brief(job))
    else:
        print(f"job {job_id} queued: {job['description']} (needs {format_bytes(job['est_memory'])} of "
              f"{job['device'].upper()}, priority {job['priority']})")
        if not scheduler.is_alive():
            print("no scheduler is running: start the app or `python -m llmos_core jobs run`", file=sys.stderr)
    return 0


def _list(args, engine: Engine) -> int:
    jobs = [_brief(j) for j in _mine(args, engine).list(states=args.state, kind=args.kind)]
    if args.json:
        print_json(jobs)
        return 0
    for job in jobs:
        job["memory"] = format_bytes(job["est_memory"])
        job["progress"] = f"{job['progress'] * 100:.0f}%"
    print(table(jobs, ["id", "kind", "state", "priority", "progress", "memory", "description", "message"]))
    return 0


def _show(args, engine: Engine) -> int:
    job = _mine(args, engine).get(args.id)
    job["waiting"] = _mine(args, engine).waiting_reason(args.id)
    if args.json:
        print_json(job)
        return 0
    for key in ("id", "kind", "state", "description", "priority", "device", "progress", "message", "waiting",
                "exit_code", "pid", "log_path", "resumable"):
        print(f"{key:>12}: {job[key] if job[key] is not None else '-'}")
    print(f"{'memory':>12}: estimated {format_bytes(job['est_memory'])}, peak {format_bytes(job['peak_memory'])}")
    print(f"{'params':>12}: {json.dumps(job['params'])}")
    print(f"{'result':>12}: {json.dumps(job['result'])}")
    if job["state"] == "failed":
        print("last log lines:\n" + _mine(args, engine).log_tail(args.id, 10))
    return 0


def _logs(args, engine: Engine) -> int:
    scheduler = _mine(args, engine)
    text = scheduler.log_tail(args.id, args.lines)
    if text:
        print(text, flush=True)
    if not args.follow:
        return 0
    path = scheduler.get(args.id)["log_path"]
    offset = _size(path)
    while True:
        state = scheduler.get(args.id)["state"]
        offset = _print_from(path, offset)
        if state in FINISHED:
            _print_from(path, offset)
            print(f"[job {args.id} {state}]", file=sys.stderr)
            return 0
        time.sleep(0.5)


def _cancel(args, engine: Engine) -> int:
    result = _mine(args, engine).cancel(args.id)
    print_json(result) if args.json else print(f"job {args.id}: {result['state']}")
    return 0


def _resume(args, engine: Engine) -> int:
    _mine(args, engine).resume(args.id)
    print_json({"id": args.id, "state": "queued"}) if args.json else print(f"job {args.id} queued to resume")
    return 0


def _delete(args, engine: Engine) -> int:
    _mine(args, engine).delete(args.id)
    print_json({"id": args.id, "deleted": True}) if args.json else print(f"job {args.id} deleted")
    return 0


def _run_scheduler(args, settings: Settings) -> int:
    engine = Engine(settings)
    if not engine.is_primary or not engine.scheduler.is_alive():
        pid = engine.primary_pid()
        engine.close()
        raise LLMOSError(f"the scheduler of {settings.home} already runs (pid {pid}: the app or a server)",
                         "its jobs are visible with `python -m llmos_core jobs list`")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"scheduler running for {settings.home} (pid {engine.status()['pid']}); Ctrl-C stops it, "
          f"running jobs go on", file=sys.stderr, flush=True)
    seen: dict[int, str] = {}
    while not stop.wait(0.5):
        for job in engine.scheduler.list(limit=100):
            if seen.get(job["id"]) != job["state"]:
                seen[job["id"]] = job["state"]
                print(f"job {job['id']} ({job['kind']}) {job['state']}: {job['message'] or job['waiting'] or ''}",
                      flush=True)
        if args.exit_when_idle and not engine.scheduler.busy():
            break
    running = engine.scheduler.list(states=["running"])
    engine.close()
    if running:
        print(f"{len(running)} job(s) still running; the next scheduler reattaches them", file=sys.stderr)
    return 0


def _brief(job: dict) -> dict:
    keys = ("id", "kind", "state", "priority", "device", "est_memory", "progress", "description", "message",
            "waiting", "exit_code", "created", "started", "finished", "resumable")
    return {k: job.get(k) for k in keys}


def _size(path: str | None) -> int:
    try:
        with open(path or "", "rb") as handle:
            return handle.seek(0, 2)
    except OSError:
        return 0


def _print_from(path: str | None, offset: int) -> int:
    try:
        with open(path or "", "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return offset
    if data:
        sys.stdout.write(data.decode("utf-8", errors="replace"))
        sys.stdout.flush()
    return offset + len(data)
