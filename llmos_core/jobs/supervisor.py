"""Supervisors: where job workers run, and how the scheduler starts, watches and stops them.

The scheduler decides (admission.py) and keeps the books (job_store.py); a supervisor executes.
Every worker runs the same entry point, `python -m llmos_core.jobs.worker JOB_ID`, which reads its
job from the store and records its own end; the supervisor only has to start it, tell whether it
still runs, read what it holds, and stop it.

    launch(job, log_path) -> handle         start the worker; JobError with the cause if it cannot
    reattach(job) -> handle | None           a worker recorded in the job row: alive -> handle, else None
    alive(handle) -> bool
    exit_code(handle) -> int | None          None when unknown (not our child, or still running)
    usage(handle) -> dict | None             {"rss_bytes", "cpu_percent", "gpu_bytes", "processes"}; None: unreadable now
    request_stop(handle) -> None             ask the worker to save and return (it sees ctx.cancelled())
    kill(handle) -> None                     the grace is over: stop everything it started, now
    wind_up(handle) -> None                  after it ended: nothing it started may go on running
    stop_now(handle, grace_s) -> dict        blocking request_stop + kill, for callers with no loop

A handle carries `identity`, the columns written to the job row so a later scheduler can reattach
(here `pid` and `pid_started`), `where`, for messages ("pid 123"), and `waiting`: why a launched
worker has not begun yet, or None (the loop shows it as the job's message). LocalProcessSupervisor is
today's behaviour: child processes of this machine. With LLMOS_CLUSTER set,
ray_supervisor.RaySupervisor has the same shape over Ray's Jobs API: its handles carry the Ray
submission id, and its `frees_memory_here = False` tells the loop a cancel frees no memory here.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import psutil

from ..errors import JobError
from ..settings import Settings
from . import resources

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class Supervisor(Protocol):
    def launch(self, job: dict, log_path: Path) -> Any: ...
    def reattach(self, job: dict) -> Any | None: ...
    def alive(self, handle) -> bool: ...
    def exit_code(self, handle) -> int | None: ...
    def usage(self, handle) -> dict | None: ...
    def request_stop(self, handle) -> None: ...
    def kill(self, handle) -> None: ...
    def wind_up(self, handle) -> None: ...
    def stop_now(self, handle, grace_s: float) -> dict: ...


@dataclass
class LocalWorker:
    """A worker process of this machine and what is needed to watch it."""
    proc: psutil.Process
    popen: subprocess.Popen | None          # None when reattached: not our child, no exit code
    meter: resources.UsageMeter
    members: list = field(default_factory=list)   # its tree as it was when the stop was asked

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def pid_started(self) -> float:
        return self.proc.create_time()

    @property
    def identity(self) -> dict:
        """The columns of the job row that let a later scheduler find it again."""
        return {"pid": self.pid, "pid_started": self.pid_started}

    @property
    def where(self) -> str:
        return f"pid {self.pid}"

    waiting = None   # a child process begins at once (a Ray job may wait for a node: RayWorker.waiting)


class LocalProcessSupervisor:
    """Workers as child processes in their own session, so they outlive the scheduler (see resources.py)."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def launch(self, job: dict, log_path: Path) -> LocalWorker:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "llmos_core.jobs.worker", str(job["id"])]
        try:
            with open(log_path, "ab") as log:   # the child keeps its own descriptor
                popen = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self._worker_env(), start_new_session=True, close_fds=True)
            proc = psutil.Process(popen.pid)
            proc.create_time()   # read once now: psutil caches it, and a worker that died at once fails here
        except (OSError, psutil.Error) as exc:
            raise JobError(f"could not start its worker: {exc}", "see the job's log") from exc
        return LocalWorker(proc, popen, resources.UsageMeter(proc))

    def reattach(self, job: dict) -> LocalWorker | None:
        proc = resources.process_if_same(job["pid"], job["pid_started"])
        return None if proc is None else LocalWorker(proc, None, resources.UsageMeter(proc))

    def alive(self, handle: LocalWorker) -> bool:
        return resources.is_alive(handle.proc) and (handle.popen is None or handle.popen.poll() is None)

    def exit_code(self, handle: LocalWorker) -> int | None:
        return handle.popen.poll() if handle.popen is not None else None

    def usage(self, handle: LocalWorker) -> dict | None:
        try:
            return handle.meter.read()
        except psutil.Error:
            return None

    def request_stop(self, handle: LocalWorker) -> None:
        handle.members = resources.tree(handle.proc)
        resources.signal_all([handle.proc], signal.SIGTERM)   # the worker saves and returns

    def kill(self, handle: LocalWorker) -> None:
        resources.signal_all(handle.members + resources.tree(handle.proc), signal.SIGKILL)

    def wind_up(self, handle: LocalWorker) -> None:
        """Kill what is left of its group (children that outlived it, also those deaf to SIGTERM)."""
        leftovers = [p for p in handle.members + resources.group_members(handle.proc.pid) if resources.is_alive(p)]
        if leftovers:
            resources.signal_all(leftovers, signal.SIGTERM)
            resources.signal_all(resources.wait_gone(leftovers, 1.0), signal.SIGKILL)
            resources.wait_gone(leftovers, 2.0)

    def stop_now(self, handle: LocalWorker, grace_s: float) -> dict:
        return resources.kill_tree(handle.proc, grace_s)

    def _worker_env(self) -> dict:
        return {**os.environ, "PYTHONUNBUFFERED": "1", **settings_env(self.settings),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}


def settings_env(settings: Settings) -> dict:
    """LLMOS_* variables that give a worker the same settings, even ones set in code."""
    env = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if value is not None:
            env[f"LLMOS_{f.name.upper()}"] = str(int(value) if isinstance(value, bool) else value)
    return env


def describe_exit(code: int | None) -> str:
    if code is None:
        return "ended (exit code unknown: it was started by an earlier scheduler)"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        hint = " (out of memory, or killed from outside)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"
