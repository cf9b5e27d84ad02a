"""The process a job runs in: `python -m llmos_core.jobs.worker JOB_ID` (started by the scheduler).

It reads the job from the store, records its own pid and create time (so a scheduler that restarts
can tell it is still this process), routes logging to the job's log file, turns SIGTERM into
ctx.cancel() so the kind can save and return, runs the kind, and records the end state, result and
exit code. If it dies before that (SIGKILL, out of memory), the scheduler records the end instead.
Exit codes: 0 succeeded, 1 failed, 2 no such job, 143 (128 + SIGTERM) cancelled cleanly.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import traceback

import psutil

from ..settings import Settings
from ..store import Store
from .context import JobContext
from .kinds import is_resumable, kind_module

EXIT_OK, EXIT_FAILED, EXIT_NO_JOB, EXIT_CANCELLED = 0, 1, 2, 128 + signal.SIGTERM


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m llmos_core.jobs.worker JOB_ID", file=sys.stderr)
        return EXIT_NO_JOB
    job_id = int(argv[0])
    settings = Settings.from_env()
    store = Store(settings.db_path)
    rows = store.query("SELECT * FROM jobs WHERE id = ?", (job_id,))
    if not rows:
        print(f"no job {job_id} in {settings.db_path}", file=sys.stderr)
        return EXIT_NO_JOB
    row = rows[0]
    store.execute("UPDATE jobs SET pid = ?, pid_started = ? WHERE id = ?",
                  (os.getpid(), psutil.Process().create_time(), job_id))

    ctx = JobContext(job_id=job_id, kind=row["kind"], params=json.loads(row["params"]), settings=settings,
                     store=store, work_dir=settings.jobs_dir / str(job_id), resume=bool(row["resume"]),
                     owner=int(row["owner"]) if "owner" in row.keys() else 0)
    _route_logging(ctx.log_path)

    def on_term(signum, frame) -> None:
        ctx.log.info("cancel requested (signal %d): stopping at the next safe point", signum)
        ctx.cancel()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    ctx.log.info("job %d (%s) starts in pid %d%s", job_id, row["kind"], os.getpid(),
                 ", resuming from its last checkpoint" if ctx.resume else "")
    started = time.monotonic()
    try:
        module = kind_module(row["kind"])
        result = module.run(ctx) or {}
        resumable = bool(getattr(module, "RESUMABLE", False))
    except Exception as exc:
        ctx.log.error("job failed: %s\n%s", exc, traceback.format_exc())
        _finish(store, job_id, "failed", EXIT_FAILED, f"{type(exc).__name__}: {exc}", {},
                resumable=is_resumable(row["kind"]))
        return EXIT_FAILED
    seconds = time.monotonic() - started
    if ctx.cancelled():
        ctx.log.info("job cancelled after %.1f s", seconds)
        _finish(store, job_id, "cancelled", EXIT_CANCELLED, f"cancelled after {seconds:.1f} s", result,
                resumable=resumable)
        return EXIT_CANCELLED
    ctx.log.info("job succeeded in %.1f s", seconds)
    _finish(store, job_id, "succeeded", EXIT_OK, f"done in {seconds:.1f} s", result, resumable=False, progress=1.0)
    return EXIT_OK


def _route_logging(path) -> None:
    """Everything logged in this process goes to the job's log (stdout/stderr already point there
    when the scheduler started us; this also covers a worker started by hand)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _finish(store: Store, job_id: int, state: str, code: int, message: str, result: dict, *,
            resumable: bool, progress: float | None = None) -> None:
    store.execute("UPDATE jobs SET state = ?, exit_code = ?, message = ?, result = ?, finished = ?, resumable = ?,"
                  " progress = COALESCE(?, progress) WHERE id = ?",
                  (state, code, message, json.dumps(result, default=str), time.time(), int(resumable),
                   progress, job_id))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
