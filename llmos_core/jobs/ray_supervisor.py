"""The Ray Jobs supervisor: job workers placed on a Ray cluster (LLMOS_CLUSTER) through Ray's Jobs API.

The same worker entry point as on one machine (`python -m llmos_core.jobs.worker JOB_ID`) is submitted
with JobSubmissionClient.submit_job, asking for the job's CPUs, GPUs and memory as entrypoint
resources, so Ray places it on a node that has them (and keeps it PENDING until one does). The
worker reads and writes the data folder as it does locally: the folder must be at the same path on
every node (a shared filesystem; cluster.check_data_folder proves it at start).

    launch      submit_job; the handle carries Ray's submission id, stored in the job row (ray_job_id)
    alive       get_job_status is not SUCCEEDED, FAILED or STOPPED (read at most every STATUS_TTL_S[status])
    exit_code   JobDetails.driver_exit_code
    usage       None: the worker's processes are on another node; the cluster view has node figures
    stop        stop_job (Ray sends SIGTERM, then SIGKILL after its own grace); the loop confirms it
                by the status turning STOPPED
    reattach    get_job_status of the stored id: not terminal -> watched again, else None (interrupted)
The worker's stdout and stderr are copied from tail_job_logs into the job's log, as a local worker's are,
from when Ray says it runs: a PENDING job has no output yet, and each open log stream costs the dashboard.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import shlex
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path

from .. import cluster
from ..errors import JobError, format_bytes
from ..settings import Settings
from .supervisor import PACKAGE_ROOT, settings_env

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# How long a status read stays good, by the status. Every read is a request to the one dashboard process,
# which on a small head shares its cores with the job supervisors Ray is starting, so read no more than
# the loop needs: a PENDING job only waits for Ray to place it (Ray starts it without us), and the end of a
# RUNNING one is recorded by its worker in the store at once; the loop only winds it up (exit code, event).
# With 0.5 s for all, 8 watched jobs made 16 requests a second.
STATUS_TTL_S = {"PENDING": 2.0, "RUNNING": 1.0}
START_TIMEOUT = "JOB_SUPERVISOR_ACTOR_START_TIMEOUT"   # Ray's JobErrorType: no node freed up in time
STOP_WAIT_S = 30.0          # stop_now: how long Ray may take to report STOPPED after its own grace


@dataclass
class RayWorker:
    """A worker submitted to Ray, known by its submission id."""
    ray_job_id: str
    log_path: Path
    asks: str = ""          # what it asked Ray for, in words ("1 CPU and 100 MB of memory")
    status: str = "PENDING"
    status_at: float = 0.0
    log_copier: threading.Thread | None = field(default=None, repr=False)
    gave_up: str | None = None   # Ray failed it before it began (its start timeout): why, in Ray's words
    info: object = field(default=None, repr=False)   # Ray's JobDetails, read once at the end
    pid = None              # on another node: the worker writes its own pid to the row
    pid_started = None

    @property
    def identity(self) -> dict:
        """The columns of the job row that let a later scheduler find it again."""
        return {"ray_job_id": self.ray_job_id}

    @property
    def where(self) -> str:
        return f"Ray job {self.ray_job_id}"

    @property
    def waiting(self) -> str | None:
        """Why a launched job has not begun (as of the last status read): Ray holds it PENDING until a node
        has what it asked for, and starts it without us."""
        if self.status != "PENDING":
            return None
        return f"waits on the Ray cluster for a node with {self.asks or 'room for it'} free (Ray holds it PENDING)"


class RaySupervisor:
    frees_memory_here = False   # a stopped worker frees a node's memory: the loop measures nothing here

    def __init__(self, settings: Settings, client=None):
        self.settings = settings
        self.address = settings.cluster
        self.client = client or cluster.connect(self.address)
        self._tag = hashlib.sha1(str(settings.home.resolve()).encode()).hexdigest()[:6]   # one data folder's jobs

    # ---- the Supervisor protocol (supervisor.py) ----
    def launch(self, job: dict, log_path: Path) -> RayWorker:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        submission_id = f"llmos-{self._tag}-{int(job['id'])}-{uuid.uuid4().hex[:8]}"
        cpus, gpus, memory = resources_of(job)
        entrypoint = " ".join(map(shlex.quote, [sys.executable, "-m", "llmos_core.jobs.worker", str(int(job["id"]))]))
        try:
            self.client.submit_job(entrypoint=entrypoint, submission_id=submission_id,
                                   runtime_env={"env_vars": self.worker_env()}, entrypoint_num_cpus=cpus,
                                   entrypoint_num_gpus=gpus, entrypoint_memory=memory,
                                   metadata={"llmos_job": str(job["id"]), "llmos_kind": str(job["kind"])})
        except Exception as exc:   # Ray raises RuntimeError, ValueError, requests errors: all mean "not taken"
            raise JobError(f"the Ray cluster at {self.address} did not take it: {exc}",
                           "see `ray status` on the head node") from exc
        return RayWorker(submission_id, log_path, describe_resources(cpus, gpus, memory))

    def reattach(self, job: dict) -> RayWorker | None:
        submission_id = job.get("ray_job_id")
        if not submission_id:
            return None
        worker = RayWorker(submission_id, Path(job["log_path"]), describe_resources(*resources_of(job)))
        return None if self._status(worker, fresh=True) in TERMINAL + ("UNKNOWN",) else worker

    def alive(self, handle: RayWorker) -> bool:
        status = self._status(handle)
        # only the loop asks: one copier per watched worker (not per reattach()), once it has output to copy
        if handle.log_copier is None and status != "PENDING":
            self._copy_log(handle)
        return status not in TERMINAL

    def exit_code(self, handle: RayWorker) -> int | None:
        info = handle.info or self._info(handle)
        return getattr(info, "driver_exit_code", None)

    def usage(self, handle: RayWorker) -> dict | None:
        return None

    def request_stop(self, handle: RayWorker) -> None:
        self._stop(handle)

    def kill(self, handle: RayWorker) -> None:
        self._stop(handle)   # Ray has sent SIGKILL after its own grace; asking again is harmless

    def wind_up(self, handle: RayWorker) -> None:
        """Ray has ended the whole process group; let the log copier take the last lines. A job Ray failed
        before it began, because no node freed up within Ray's start timeout (RAY_JOB_START_TIMEOUT_SECONDS
        on the head, 15 min by default), is marked gave_up: the loop queues it again rather than failing
        a job that only waited behind others."""
        if handle.log_copier is not None:
            handle.log_copier.join(5.0)
        info = handle.info = self._info(handle)
        error_type = getattr(info, "error_type", None)   # JobDetails: a str; Ray's JobInfo: a JobErrorType
        if getattr(error_type, "value", error_type) == START_TIMEOUT:
            handle.gave_up = str(getattr(info, "message", "") or "Ray's start timeout passed")

    def stop_now(self, handle: RayWorker, grace_s: float) -> dict:
        self._stop(handle)
        deadline = time.monotonic() + grace_s + STOP_WAIT_S
        while self._status(handle, fresh=True) not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.5)
        return {"signalled": 1, "ray_status": handle.status}

    # ---- what admission sees: the cluster's nodes, not this machine ----
    def measure_free(self, device: str) -> tuple[int, int]:
        """(free, total) bytes for jobs on `device` across the cluster, from Ray's logical resources:
        Ray places by what jobs ask for, so admission counts the same way (running jobs' estimates are
        subtracted by the capacity reader)."""
        totals = cluster.resource_totals(self.address)
        total = int(totals["memory"] if device == "cpu" else totals["gpu_memory"])
        return total, total

    def has_device(self, device: str) -> bool:
        return device != "cuda" or cluster.resource_totals(self.address)["GPU"] > 0

    def largest_node_bytes(self, device: str) -> int:
        return int(cluster.resource_totals(self.address)["largest_memory" if device == "cpu" else "largest_gpu_memory"])

    def worker_env(self) -> dict:
        """What a worker on any node needs: the settings and the package on its path. Not the cluster address,
        and no secret (a field with repr=False, such as the API key): Ray shows a job's environment to
        anyone who can open its dashboard."""
        secret = {f"LLMOS_{f.name.upper()}" for f in fields(Settings) if not f.repr}
        env = {k: v for k, v in settings_env(self.settings).items() if k != "LLMOS_CLUSTER" and k not in secret}
        if os.environ.get("LLMOS_DEV"):   # the benchmark kind's test hooks, as on this machine
            env["LLMOS_DEV"] = os.environ["LLMOS_DEV"]
        return {**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(PACKAGE_ROOT)}

    # ---- helpers ----
    def _status(self, handle: RayWorker, fresh: bool = False) -> str:
        if fresh or time.monotonic() - handle.status_at > STATUS_TTL_S.get(handle.status, 0.0):
            try:
                handle.status = str(self.client.get_job_status(handle.ray_job_id).value)
            except RuntimeError as exc:   # the dashboard answers 404 for an id it does not know
                handle.status = "UNKNOWN" if "404" in str(exc) or "not exist" in str(exc) else handle.status
            except Exception:   # the head is unreachable for a moment: keep the last status
                pass
            handle.status_at = time.monotonic()
        return handle.status

    def _info(self, handle: RayWorker):
        try:
            return self.client.get_job_info(handle.ray_job_id)
        except Exception:   # the head is unreachable for a moment: no exit code, no reason
            return None

    def _stop(self, handle: RayWorker) -> None:
        try:
            self.client.stop_job(handle.ray_job_id)
        except Exception as exc:
            raise JobError(f"Ray did not stop job {handle.ray_job_id}: {exc}", "see `ray job list` on the head") from exc
        handle.status_at = 0.0   # read the status afresh next time

    def _copy_log(self, handle: RayWorker) -> None:
        """Append the worker's stdout and stderr (tail_job_logs) to the job's log, in a thread of its own.
        How much was copied is kept beside the log, so a scheduler that reattaches copies only the rest."""
        log_path = handle.log_path
        copied_file = log_path.parent / "ray_log_copied"

        async def copy() -> None:
            skip = int(copied_file.read_text() or 0) if copied_file.exists() else 0
            seen = 0
            async for chunk in self.client.tail_job_logs(handle.ray_job_id):
                new = chunk[max(0, skip - seen):]
                seen += len(chunk)
                if new:
                    with open(log_path, "a", encoding="utf-8") as log:
                        log.write(new)
                    copied_file.write_text(str(seen))

        def run() -> None:
            try:
                asyncio.run(copy())
            except Exception:   # the head went away: the worker's own log lines are in the file already
                pass

        handle.log_copier = threading.Thread(target=run, name=f"ray-log-{handle.ray_job_id}", daemon=True)
        handle.log_copier.start()


def resources_of(job: dict) -> tuple[float, float, int]:
    """(CPUs, GPUs, memory bytes) a job's worker asks Ray for: one CPU (a worker is one process), a GPU for a
    CUDA job, its estimated memory. A training job on several Ray Train workers asks for nothing here: its
    worker only drives them, and they ask Ray for their CPUs, GPUs and memory themselves (ray_train.py)."""
    if job["kind"] == "train" and int((job.get("params") or {}).get("workers") or 1) > 1:
        return 0.0, 0.0, 0
    return 1.0, 1.0 if job["device"] == "cuda" else 0.0, int(job["est_memory"] or 0)


def describe_resources(cpus: float, gpus: float, memory: int) -> str:
    parts = [f"{n:g} {name}" for n, name in ((cpus, "CPU"), (gpus, "GPU")) if n] + (
        [f"{format_bytes(memory)} of memory"] if memory else [])
    return " and ".join(parts)
