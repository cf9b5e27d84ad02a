"""The job scheduler: a queue in SQLite, admission by measured free memory, one worker per job.

API (`engine.scheduler`; every engine of a data folder has one, only the primary's runs the loop):
    submit(kind, params: dict, priority: int = 0, *, rerun_of: int | None = None) -> int job id
        validates and estimates through the kind module (llmos_core/jobs/kinds.py); a job that could
        never fit on this machine is refused with errors.InsufficientMemory; bad params: InvalidInput
    cancel(job_id) -> dict          queued: cancelled at once; running: SIGTERM to the worker, SIGKILL
                                    of the whole process tree after `cancel_grace_s`; done: JobError
    resume(job_id) -> None          re-queue an interrupted/cancelled/failed job of a RESUMABLE kind;
                                    its next run gets ctx.resume = True and the same checkpoint_dir
    get(job_id) -> dict             the row, params/result decoded; missing: JobError
    list(states=None, kind=None, limit=500) -> list[dict]    newest first
    queue() -> list[dict]           queued jobs in start order, with "position" and "eta_s"
    metrics(job_id) -> list[dict]   {"step", "ts", **values} written by ctx.metric()
    usage(job_id) -> list[dict]     {"ts", "rss_bytes", "cpu_percent", "gpu_bytes", "processes"}
    log_tail(job_id, lines=50) -> str
    delete(job_id, remove_files=True) -> None   not while running
    waiting_reason(job_id) -> str | None        "waits for 1.8 GB of RAM; 0.9 GB free ..."
    capacity(device="cpu") -> dict  free, reserved by running jobs and models, available, total
    is_alive() -> bool              a scheduler loop runs for this data folder (here or elsewhere) and,
                                    when it is here, has finished a pass within `stale_after_s`
    health() -> dict                alive, last_step_at, last_error, failures: what Home can show
    start() / stop() / step()       the loop (primary engine, or `python -m llmos_core jobs run`)

Any process can submit, cancel, resume and delete: they only write the store. The parts:
    job_store.py    the SQL (rows of the jobs tables) and the log files
    admission.py    who starts now and why the others wait: a pure function, table-tested
    capacity.py     what admission sees: measured free memory less what jobs and models reserve
    supervisor.py   where workers run: LocalProcessSupervisor (child processes), behind a Protocol
    loop.py         the one loop of the data folder (file lock `scheduler.lock`): measure, decide, act;
                    it survives its own failures and reports them in health()
Workers outlive the scheduler; a new scheduler reattaches those still alive and marks the others
interrupted. Limits per kind and device come from LLMOS_JOB_LIMITS ("train@cuda=1,*@cpu=4").
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..access import LOCAL, check_job_params
from ..accounts import LOCAL_ADMIN, User
from ..errors import InsufficientMemory, InvalidInput, JobError, LLMOSError, format_bytes
from ..cluster import check_data_folder
from ..paths import remove_tree
from ..settings import Settings
from ..store import Store
from .admission import DEFAULT_LIMITS, parse_limits
from .capacity import CapacityReader, MeasureFree, measure_free
from .job_store import JobStore, log_path, read_tail
from .kinds import KINDS, is_resumable, kind_module
from .loop import SchedulerLoop
from .ray_supervisor import RaySupervisor
from .scoped import UserJobs
from .supervisor import LocalProcessSupervisor, Supervisor

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")
RESUMABLE_STATES = ("interrupted", "cancelled", "failed")


class JobScheduler:
    def __init__(self, settings: Settings, store: Store, *, models=None, model_device: str = "cpu",
                 measure: MeasureFree | None = None, limits: str | None = None, poll_s: float = 0.25,
                 cancel_grace_s: float = 10.0, sample_s: float = 2.0, evict_priority: int = 1,
                 cuda_available: bool | None = None, supervisor: Supervisor | None = None,
                 max_backoff_s: float = 30.0, stale_after_s: float = 60.0):
        self.settings, self.store = settings, store
        self.jobs = JobStore(store)
        self.limits_for = None   # the engine sets it to Accounts.limits_for: the queued-jobs limit per user
        if supervisor is None:   # LLMOS_CLUSTER set: workers go to that Ray cluster, else child processes here
            supervisor = RaySupervisor(settings) if settings.cluster else LocalProcessSupervisor(settings)
        self.supervisor = supervisor
        self.on_cluster = isinstance(supervisor, RaySupervisor)
        self.cancel_grace_s = cancel_grace_s
        self._cuda = cuda_available
        where = "on this machine"
        if self.on_cluster:   # jobs run on the nodes: their resources count, not this machine's memory or models
            measure, models, where = supervisor.measure_free, None, f"on any node of the Ray cluster at {settings.cluster}"
        self.capacity_reader = CapacityReader(self.jobs, self.supervisor, measure or measure_free, models, model_device)
        limits = parse_limits(limits if limits is not None else os.environ.get("LLMOS_JOB_LIMITS", DEFAULT_LIMITS))
        self.loop = SchedulerLoop(settings, self.jobs, self.supervisor, self.capacity_reader, limits=limits,
                                  has_device=self._has_device, poll_s=poll_s, cancel_grace_s=cancel_grace_s,
                                  sample_s=sample_s, evict_priority=evict_priority, max_backoff_s=max_backoff_s,
                                  stale_after_s=stale_after_s, where=where)

    @property
    def limits(self) -> dict:
        """{(kind or "*", device): how many at once}, from LLMOS_JOB_LIMITS unless given."""
        return self.loop.limits

    @limits.setter
    def limits(self, value: dict) -> None:
        self.loop.limits = value

    # ================= the API: any process, any thread =================
    def submit(self, kind: str, params: dict, priority: int = 0, *, rerun_of: int | None = None,
               origin: str = LOCAL, actor: User = LOCAL_ADMIN) -> int:
        """Queue a job. `origin` "web" (the pages) limits file parameters to the data folder (access.py).
        `actor` owns it: the engine's own callers; what a person does goes through `for_user` (scoped.py)."""
        module = kind_module(kind)
        if not isinstance(params, dict):
            raise InvalidInput("job parameters must be a mapping of names to values")
        check_job_params(module, params, self.settings, origin)   # before validate(), which reads the files
        try:
            priority = int(priority)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"priority must be a whole number, got {priority!r}") from exc
        clean = module.validate(dict(params), self.settings)
        estimate = module.estimate(clean, self.settings)
        device = "cuda" if str(estimate.get("device", "cpu")).startswith("cuda") else "cpu"
        memory = int(estimate.get("memory_bytes") or 0)
        self._check_device(kind, device)
        # the largest part that must fit on one node: a Ray Train worker's share, or the whole job
        self._check_possible(kind, int(estimate.get("worker_memory_bytes") or memory), device)
        job_id = self.jobs.insert(kind, clean, priority, device, memory, estimate.get("seconds"),
                                  module.describe(clean), rerun_of, self._log_path, owner=actor.id)
        self.jobs.add_event("job_submit", str(job_id), f"job {job_id} ({kind}) queued, needs "
                            f"{format_bytes(memory)} of {device.upper()}", job_kind=kind, priority=priority)
        self.loop.wake()
        return job_id

    def cancel(self, job_id: int) -> dict:
        job = self.get(job_id)
        if job["state"] == "queued":
            if self.jobs.cancel_queued(job_id):
                self.jobs.add_event("job_end", str(job_id), f"job {job_id} cancelled before it started",
                                    state="cancelled")
                return {"id": job_id, "state": "cancelled"}
            job = self.get(job_id)   # it started meanwhile: cancel the running job below
        if job["state"] != "running":
            raise JobError(f"job {job_id} has already {_past(job['state'])}; there is nothing to cancel",
                           "resume or re-run it from the Jobs page if you want it again")
        self.jobs.request_cancel(job_id)
        if self.loop.started_here:
            self.loop.wake()
        elif not self.is_alive():
            return self._cancel_without_scheduler(job)
        return {"id": job_id, "state": "cancelling"}

    def resume(self, job_id: int) -> None:
        job = self.get(job_id)
        if job["state"] not in RESUMABLE_STATES:
            raise JobError(f"job {job_id} is {job['state']}; only an interrupted, cancelled or failed job can be "
                           f"resumed", "re-run it instead to start it over")
        self._refuse_if_stopping(job)
        if not is_resumable(job["kind"]):
            raise JobError(f"{job['kind']} jobs cannot be resumed from a checkpoint",
                           "re-run it instead: it starts over with the same parameters")
        if not self.jobs.requeue_to_resume(job_id, job["state"]):
            raise JobError(f"job {job_id} changed state meanwhile", "look at it again")
        self.jobs.add_event("job_submit", str(job_id), f"job {job_id} queued to resume", job_kind=job["kind"])
        self.loop.wake()

    def get(self, job_id: int) -> dict:
        return self.jobs.get(job_id)

    def for_user(self, actor: User) -> "UserJobs":
        """The scheduler as `actor` sees it: their jobs only (an admin: all); another's id reads as missing."""
        return UserJobs(self, actor)

    def list(self, states=None, kind: str | None = None, limit: int = 500) -> list[dict]:
        return self.jobs.list(states, kind, limit)

    def queue(self) -> list[dict]:
        """Queued jobs in the order they will start, each with its position and a rough ETA in seconds."""
        queued = self.jobs.queued()
        running = self.list(states=["running"])
        soonest = min((j["eta_s"] for j in map(with_eta, running) if j["eta_s"] is not None), default=0.0)
        wait = 0.0 if not running else soonest
        for position, job in enumerate(queued, start=1):
            job["position"] = position
            job["eta_s"] = round(wait, 1) if wait is not None else None
            wait = None if wait is None or job["est_seconds"] is None else wait + job["est_seconds"]
        return queued

    def metrics(self, job_id: int) -> list[dict]:
        return self.jobs.metrics(job_id)

    def usage(self, job_id: int) -> list[dict]:
        return self.jobs.usage(job_id)

    def log_tail(self, job_id: int, lines: int = 50) -> str:
        return read_tail(Path(self.get(job_id)["log_path"] or self._log_path(job_id)), lines)

    def delete(self, job_id: int, remove_files: bool = True) -> None:
        job = self.get(job_id)
        if job["state"] == "running":
            raise JobError(f"job {job_id} is running", "cancel it first, then delete it")
        self._refuse_if_stopping(job)
        if not self.jobs.delete(job_id):
            raise JobError(f"job {job_id} started meanwhile", "cancel it first, then delete it")
        if remove_files:
            remove_tree(self.settings.jobs_dir / str(int(job_id)), self.settings.jobs_dir)

    def waiting_reason(self, job_id: int) -> str | None:
        job = self.get(job_id)
        if job["state"] != "queued":
            return None
        if not self.is_alive():
            if self.loop.started_here and self.loop.last_error:
                return f"the scheduler is failing ({self.loop.last_error}); it retries by itself"
            return "no scheduler is running: start the app or `python -m llmos_core jobs run`"
        return job["waiting"] or "about to start"

    def capacity(self, device: str = "cpu") -> dict:
        """What admission sees now on `device`: measured free, reservations, what a new job may take."""
        return self.capacity_reader.read(device, self._used_now()).as_dict()

    def reserved_by_jobs(self, device: str = "cpu") -> int:
        """Memory running jobs have reserved on `device` and not taken yet (a job starting up holds its whole
        estimate): the model manager keeps it out of the room it gives models."""
        if self.on_cluster:   # the jobs run on the cluster's nodes, not beside the models
            return 0
        return self.capacity_reader.jobs_reserved(device, self._used_now())

    def _used_now(self) -> dict[int, int]:
        """job id -> bytes its workers hold: the loop's readings on its own thread, else read afresh."""
        return self.loop.used_now() if self.loop.on_loop_thread() else self.capacity_reader.held_now()

    def is_alive(self) -> bool:
        """A loop runs for this data folder: here (its thread alive, a pass done within stale_after_s) or elsewhere."""
        return self.loop.is_alive()

    def health(self) -> dict:
        """The loop's state for a status line. last_step_at: the end of the last pass that succeeded;
        last_error: the newest failure (kept after recovery, with its time); failures: failed in a row."""
        loop = self.loop
        return {"alive": loop.is_alive(), "running_here": loop.started_here, "last_step_at": loop.last_step_at,
                "last_error": loop.last_error, "last_error_at": loop.last_error_at, "failures": loop.failures}

    def busy(self) -> bool:
        """Jobs queued or running: a server started on demand must not exit."""
        return self.jobs.busy()

    # ================= the loop: one per data folder (loop.py) =================
    def start(self) -> bool:
        """Take the data folder's scheduler lock and start the loop thread; False if another holds it.
        On a cluster, first prove every node sees the data folder (cluster.ClusterError if one does not)."""
        if self.on_cluster and not self.loop.started_here:
            check_data_folder(self.supervisor.client, self.settings.home)
        return self.loop.start()

    def stop(self) -> None:
        """Stop the loop. Running workers go on; the next scheduler reattaches them."""
        self.loop.stop()

    def step(self) -> None:
        """One pass of the loop: reap exits, act on cancels, reattach or interrupt strays, sample, start what fits."""
        self.loop.step()

    # ---- cancel ----
    def _cancel_without_scheduler(self, job: dict) -> dict:
        """No loop anywhere (app and `jobs run` both down): stop the workers from here, record the end."""
        worker = self.supervisor.reattach(job)
        outcome = self.supervisor.stop_now(worker, self.cancel_grace_s) if worker else {"signalled": 0}
        time.sleep(0.2)   # the worker records its own end on a clean stop
        self.jobs.end_if_running(job["id"], "cancelled", "cancelled (no scheduler was running; stopped by the "
                                 "canceller)", is_resumable(job["kind"]))
        self.jobs.add_event("job_end", str(job["id"]), f"job {job['id']} cancelled", state="cancelled", **outcome)
        return {"id": job["id"], "state": "cancelled", **outcome}

    # ---- checks ----
    def _has_device(self, device: str) -> bool:
        if self.on_cluster:
            return self.supervisor.has_device(device)
        if device != "cuda":
            return True
        if self._cuda is None:
            try:
                import torch

                self._cuda = bool(torch.cuda.is_available())
            except ImportError:
                self._cuda = False
        return self._cuda

    def _check_device(self, kind: str, device: str) -> None:
        if self.on_cluster:   # a node with a GPU may join: the job waits, and says why
            return
        if not self._has_device(device):
            raise InvalidInput(f"this {kind} job wants a CUDA GPU, and this machine has none",
                               "choose the CPU in its settings")

    def _check_possible(self, kind: str, memory: int, device: str) -> None:
        if self.on_cluster:
            largest = self.supervisor.largest_node_bytes(device)
            if device == "cpu" and memory > largest:
                raise InsufficientMemory(f"this {kind} job", memory, largest, largest,
                                         "no node of the Ray cluster has that much memory; make the job smaller")
            return
        cap = self.capacity_reader.read(device, self.capacity_reader.held_now())
        ceiling = cap.ceiling_bytes
        if self.capacity_reader.models is None:   # another process may hold models: ask the primary what it could unload
            ceiling += _primary_models_bytes(self.settings)
        if memory > ceiling:
            where = "GPU memory" if device == "cuda" else "RAM"
            error = InsufficientMemory(f"this {kind} job", memory, ceiling, cap.total_bytes,
                                       f"even with every job stopped and every model unloaded this machine has "
                                       f"{format_bytes(ceiling)} of {where} for it; make the job smaller")
            self.jobs.add_event("job_refused", kind, str(error), needed=memory, free=ceiling)
            raise error

    def _refuse_if_stopping(self, job: dict) -> None:
        """Its worker has recorded the end but not exited yet: the scheduler still has to wind it up."""
        if self.supervisor.reattach(job) is not None:
            raise JobError(f"job {job['id']} is still stopping (pid {job['pid']})", "try again in a moment")

    def _log_path(self, job_id: int) -> Path:
        return log_path(self.settings.jobs_dir, job_id)


def with_eta(job: dict) -> dict:
    """Add eta_s (seconds left) to a running job: from its progress rate, else from its estimate."""
    elapsed = time.time() - (job["started"] or time.time())
    progress = job["progress"] or 0.0
    if progress >= 0.02:
        job["eta_s"] = round(elapsed * (1 - progress) / progress, 1)
    elif job.get("est_seconds") is not None:
        job["eta_s"] = round(max(job["est_seconds"] - elapsed, 0.0), 1)
    else:
        job["eta_s"] = None
    return job


def _primary_models_bytes(settings: Settings) -> int:
    from .. import control

    try:
        return sum(m["measured_bytes"] for m in control.call(settings.home / "engine.sock", "ps", timeout=2))
    except (ConnectionError, OSError, LLMOSError):
        return 0


def _past(state: str) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "cancelled": "been cancelled",
            "interrupted": "been interrupted"}.get(state, state)


__all__ = ["JobScheduler", "STATES", "FINISHED", "KINDS", "parse_limits", "with_eta"]
