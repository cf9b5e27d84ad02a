"""The job scheduler: a queue in SQLite, admission by measured free memory, one worker process per job.

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
    is_alive() -> bool              a scheduler loop runs for this data folder (here or elsewhere)
    start() / stop() / step()       the loop (primary engine, or `python -m llmos_core jobs run`)

Any process can submit, cancel, resume and delete: they only write the store. The one loop of the
data folder (file lock `scheduler.lock`) polls the store, starts queued jobs that fit, signals
cancelled ones, watches exits and samples each job's process tree. Workers run in their own
session, so they outlive the scheduler; a new scheduler reattaches those still alive (same pid and
create time) and marks the others interrupted. Admission per device:
    available = measured free - FREE_MEMORY_RESERVE
                - sum over running jobs of (estimate - what its processes use now)
                - what the models being loaded have reserved but not yet taken
Resident models' bytes are already out of the measured free; idle ones may be evicted for a job of
priority >= evict_priority. Queued jobs start highest priority first, then oldest; a job that does not
fit holds back the jobs after it on its device, so a large job is never starved by small ones.
Limits per kind and device come from LLMOS_JOB_LIMITS ("train@cuda=1,*@cpu=4"; default train@cuda=1).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import psutil

from ..errors import InsufficientMemory, InvalidInput, JobError, LLMOSError, format_bytes
from ..locks import is_held, take_lock
from ..models.manager import FREE_MEMORY_RESERVE
from ..settings import Settings
from ..store import Store
from . import resources
from .kinds import KINDS, is_resumable, kind_module

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")
RESUMABLE_STATES = ("interrupted", "cancelled", "failed")
DEFAULT_LIMITS = "train@cuda=1"
# A running row without a pid may be a worker that has not written it yet (it does so at once).
_PID_GRACE_S = 15.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]

MeasureFree = Callable[[str], "tuple[int, int]"]   # device ("cpu" | "cuda") -> (free, total) bytes


@dataclass
class _Running:
    """A job whose worker this loop watches (started here, or reattached after a restart)."""
    job_id: int
    kind: str
    device: str
    est_memory: int
    proc: psutil.Process
    popen: subprocess.Popen | None          # None when reattached: not our child, no exit code
    meter: resources.UsageMeter
    used: int = 0                           # bytes its tree held at the last reading
    read_at: float = 0.0
    cancel_deadline: float | None = None    # when SIGTERM was sent + grace: SIGKILL after this
    cancel_free_before: int | None = None
    cancel_held: int = 0
    cancel_sent_at: float = 0.0
    members: list = field(default_factory=list)   # the tree as it was at cancel time


def parse_limits(text: str) -> dict[tuple[str, str], int]:
    """'train@cuda=1,*@cpu=4' -> {('train', 'cuda'): 1, ('*', 'cpu'): 4}."""
    limits = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            key, number = part.split("=")
            kind, device = key.split("@")
            limits[(kind.strip(), device.strip())] = int(number)
        except ValueError as exc:
            raise InvalidInput(f"cannot read job limit {part!r}", "write it like train@cuda=1,*@cpu=4") from exc
    return limits


def measure_free(device: str) -> tuple[int, int]:
    if device == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info()
        return int(free), int(total)
    vm = psutil.virtual_memory()
    return int(vm.available), int(vm.total)


class JobScheduler:
    def __init__(self, settings: Settings, store: Store, *, models=None, model_device: str = "cpu",
                 measure: MeasureFree | None = None, limits: str | None = None, poll_s: float = 0.25,
                 cancel_grace_s: float = 10.0, sample_s: float = 2.0, evict_priority: int = 1,
                 cuda_available: bool | None = None):
        self.settings, self.store = settings, store
        self.models = models                 # the primary engine's ModelManager, or None
        self.model_device = model_device     # where those models live ("cpu" | "cuda")
        self.measure = measure or measure_free
        self.limits = parse_limits(limits if limits is not None else os.environ.get("LLMOS_JOB_LIMITS", DEFAULT_LIMITS))
        self.poll_s, self.cancel_grace_s, self.sample_s = poll_s, cancel_grace_s, sample_s
        self.evict_priority = evict_priority
        self._cuda = cuda_available
        self._running: dict[int, _Running] = {}   # touched by the loop thread only
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_handle = None
        self._sampled_at = 0.0

    # ================= the API: any process, any thread =================
    def submit(self, kind: str, params: dict, priority: int = 0, *, rerun_of: int | None = None) -> int:
        module = kind_module(kind)
        if not isinstance(params, dict):
            raise InvalidInput("job parameters must be a mapping of names to values")
        try:
            priority = int(priority)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"priority must be a whole number, got {priority!r}") from exc
        clean = module.validate(dict(params), self.settings)
        estimate = module.estimate(clean, self.settings)
        device = "cuda" if str(estimate.get("device", "cpu")).startswith("cuda") else "cpu"
        memory = int(estimate.get("memory_bytes") or 0)
        self._check_device(kind, device)
        self._check_possible(kind, memory, device)
        now = time.time()
        with self.store.transaction() as conn:
            job_id = conn.execute(
                "INSERT INTO jobs (kind, params, priority, state, device, est_memory, est_seconds, description,"
                " created, rerun_of) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                (kind, json.dumps(clean, default=str), priority, device, memory, estimate.get("seconds"),
                 module.describe(clean), now, rerun_of)).lastrowid
            conn.execute("UPDATE jobs SET log_path = ? WHERE id = ?", (str(self._log_path(job_id)), job_id))
        self.store.add_event("job_submit", str(job_id), f"job {job_id} ({kind}) queued, needs "
                             f"{format_bytes(memory)} of {device.upper()}", job_kind=kind, priority=priority)
        self._wake.set()
        return job_id

    def cancel(self, job_id: int) -> dict:
        job = self.get(job_id)
        if job["state"] == "queued":
            cursor = self.store.execute("UPDATE jobs SET state = 'cancelled', finished = ?, waiting = NULL,"
                                        " message = 'cancelled before it started', resumable = 0"
                                        " WHERE id = ? AND state = 'queued'", (time.time(), job_id))
            if cursor.rowcount:
                self.store.add_event("job_end", str(job_id), f"job {job_id} cancelled before it started",
                                     state="cancelled")
                return {"id": job_id, "state": "cancelled"}
            job = self.get(job_id)   # it started meanwhile: cancel the running job below
        if job["state"] != "running":
            raise JobError(f"job {job_id} has already {_past(job['state'])}; there is nothing to cancel",
                           "resume or re-run it from the Jobs page if you want it again")
        self.store.execute("UPDATE jobs SET cancel_requested = 1, message = 'cancelling' WHERE id = ?", (job_id,))
        if self._thread is not None:
            self._wake.set()
        elif not self.is_alive():
            return self._cancel_without_scheduler(job)
        return {"id": job_id, "state": "cancelling"}

    def resume(self, job_id: int) -> None:
        job = self.get(job_id)
        if job["state"] not in RESUMABLE_STATES:
            raise JobError(f"job {job_id} is {job['state']}; only an interrupted, cancelled or failed job can be "
                           f"resumed", "re-run it instead to start it over")
        _refuse_if_stopping(job)
        if not is_resumable(job["kind"]):
            raise JobError(f"{job['kind']} jobs cannot be resumed from a checkpoint",
                           "re-run it instead: it starts over with the same parameters")
        cursor = self.store.execute(
            "UPDATE jobs SET state = 'queued', resume = 1, cancel_requested = 0, exit_code = NULL, finished = NULL,"
            " pid = NULL, pid_started = NULL, waiting = NULL, message = 'queued to resume' WHERE id = ? AND state = ?",
            (job_id, job["state"]))
        if not cursor.rowcount:
            raise JobError(f"job {job_id} changed state meanwhile", "look at it again")
        self.store.add_event("job_submit", str(job_id), f"job {job_id} queued to resume", job_kind=job["kind"])
        self._wake.set()

    def get(self, job_id: int) -> dict:
        rows = self.store.query("SELECT * FROM jobs WHERE id = ?", (int(job_id),))
        if not rows:
            raise JobError(f"there is no job {job_id}", "see `python -m llmos_core jobs list` or the Jobs page")
        return _decode(rows[0])

    def list(self, states=None, kind: str | None = None, limit: int = 500) -> list[dict]:
        sql, params = "SELECT * FROM jobs WHERE 1 = 1", []
        if states:
            states = [states] if isinstance(states, str) else list(states)
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params += states
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        return [_decode(r) for r in self.store.query(sql + " ORDER BY id DESC LIMIT ?", (*params, int(limit)))]

    def queue(self) -> list[dict]:
        """Queued jobs in the order they will start, each with its position and a rough ETA in seconds."""
        queued = [_decode(r) for r in self.store.query(
            "SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority DESC, created, id")]
        running = self.list(states=["running"])
        soonest = min((j["eta_s"] for j in map(with_eta, running) if j["eta_s"] is not None), default=0.0)
        wait = 0.0 if not running else soonest
        for position, job in enumerate(queued, start=1):
            job["position"] = position
            job["eta_s"] = round(wait, 1) if wait is not None else None
            wait = None if wait is None or job["est_seconds"] is None else wait + job["est_seconds"]
        return queued

    def metrics(self, job_id: int) -> list[dict]:
        rows = self.store.query("SELECT step, ts, data FROM job_metrics WHERE job_id = ? ORDER BY step, ts",
                                (int(job_id),))
        return [{"step": r["step"], "ts": r["ts"], **json.loads(r["data"])} for r in rows]

    def usage(self, job_id: int) -> list[dict]:
        return self.store.query("SELECT ts, rss_bytes, cpu_percent, gpu_bytes, processes FROM job_usage"
                                " WHERE job_id = ? ORDER BY ts", (int(job_id),))

    def log_tail(self, job_id: int, lines: int = 50) -> str:
        path = Path(self.get(job_id)["log_path"] or self._log_path(job_id))
        if not path.exists():
            return ""
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max(lines, 1) * 400))   # about 400 bytes a line is plenty
            text = handle.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def delete(self, job_id: int, remove_files: bool = True) -> None:
        job = self.get(job_id)
        if job["state"] == "running":
            raise JobError(f"job {job_id} is running", "cancel it first, then delete it")
        _refuse_if_stopping(job)
        cursor = self.store.execute("DELETE FROM jobs WHERE id = ? AND state != 'running'", (int(job_id),))
        if not cursor.rowcount:
            raise JobError(f"job {job_id} started meanwhile", "cancel it first, then delete it")
        if remove_files:
            shutil.rmtree(self.settings.jobs_dir / str(int(job_id)), ignore_errors=True)

    def waiting_reason(self, job_id: int) -> str | None:
        job = self.get(job_id)
        if job["state"] != "queued":
            return None
        if not self.is_alive():
            return "no scheduler is running: start the app or `python -m llmos_core jobs run`"
        return job["waiting"] or "about to start"

    def capacity(self, device: str = "cpu") -> dict:
        """What admission sees now on `device`: measured free, reservations, what a new job may take."""
        return self._capacity(device, self._used_now())

    def reserved_by_jobs(self, device: str = "cpu") -> int:
        """Memory running jobs have reserved on `device` and not taken yet (a job starting up holds its whole
        estimate): the model manager keeps it out of the room it gives models."""
        return self._jobs_reserved(device, self._used_now())

    def _used_now(self) -> dict[int, int]:
        if self._thread is not None and threading.current_thread() is self._thread:
            return {r.job_id: self._used(r) for r in self._running.values()}
        return {j["id"]: _tree_used(j) for j in self.list(states=["running"])}

    def _jobs_reserved(self, device: str, used: dict[int, int]) -> int:
        running = self.list(states=["running"])
        return sum(max(0, j["est_memory"] - used.get(j["id"], 0)) for j in running if j["device"] == device)

    def is_alive(self) -> bool:
        if self._thread is not None:
            return True
        self.settings.home.mkdir(parents=True, exist_ok=True)
        return is_held(self._lock_file)

    def busy(self) -> bool:
        """Jobs queued or running: a server started on demand must not exit."""
        return bool(self.store.query("SELECT 1 FROM jobs WHERE state IN ('queued', 'running') LIMIT 1"))

    # ================= the loop: one per data folder =================
    def start(self) -> bool:
        """Take the data folder's scheduler lock and start the loop thread; False if another holds it."""
        if self._thread is not None:
            return True
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self._lock_handle = take_lock(self._lock_file)
        if self._lock_handle is None:
            return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="llmos-scheduler", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop the loop. Running workers go on; the next scheduler reattaches them."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(30)
        self._thread = None
        self._running.clear()
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:   # one bad tick must not stop every job; the event log keeps it
                self.store.add_event("scheduler_error", "scheduler", f"{type(exc).__name__}: {exc}")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def step(self) -> None:
        """One pass: reap exits, act on cancels, reattach or interrupt strays, sample, start what fits."""
        for run in list(self._running.values()):
            if not resources.is_alive(run.proc) or (run.popen is not None and run.popen.poll() is not None):
                self._finish(run)
        self._act_on_cancels()
        self._adopt_strays()
        if time.monotonic() - self._sampled_at >= self.sample_s:
            self._sample()
        self._admit()

    # ---- cancel ----
    def _act_on_cancels(self) -> None:
        wanted = {r["id"] for r in self.store.query("SELECT id FROM jobs WHERE state = 'running' AND cancel_requested = 1")}
        now = time.monotonic()
        for run in self._running.values():
            if run.job_id in wanted and run.cancel_deadline is None:
                run.members = resources.tree(run.proc)
                run.cancel_held = self._used(run, fresh=True)
                run.cancel_free_before = self.measure(run.device)[0]
                run.cancel_sent_at = now
                run.cancel_deadline = now + self.cancel_grace_s
                resources.signal_all([run.proc], signal.SIGTERM)   # the worker saves and returns
            elif run.cancel_deadline is not None and now >= run.cancel_deadline:
                members = run.members + resources.tree(run.proc)
                resources.signal_all(members, signal.SIGKILL)
                self.store.execute("UPDATE jobs SET message = ? WHERE id = ?",
                                   (f"did not stop within {self.cancel_grace_s:g} s of SIGTERM: killed", run.job_id))
                run.cancel_deadline = float("inf")   # killed once; _finish sees it gone next pass

    def _cancel_without_scheduler(self, job: dict) -> dict:
        """No loop anywhere (app and `jobs run` both down): stop the tree from here, record the end."""
        proc = resources.process_if_same(job["pid"], job["pid_started"])
        outcome = resources.kill_tree(proc, self.cancel_grace_s) if proc else {"signalled": 0}
        time.sleep(0.2)   # the worker records its own end on a clean stop
        self.store.execute("UPDATE jobs SET state = 'cancelled', finished = ?, message = ?, resumable = ?"
                           " WHERE id = ? AND state = 'running'",
                           (time.time(), "cancelled (no scheduler was running; stopped by the canceller)",
                            int(is_resumable(job["kind"])), job["id"]))
        self.store.add_event("job_end", str(job["id"]), f"job {job['id']} cancelled", state="cancelled", **outcome)
        return {"id": job["id"], "state": "cancelled", **outcome}

    # ---- exits ----
    def _finish(self, run: _Running) -> None:
        """The worker is gone: kill what is left of its group, record the end and the memory that came back."""
        del self._running[run.job_id]
        leftovers = [p for p in run.members + resources.group_members(run.proc.pid) if resources.is_alive(p)]
        if leftovers:
            resources.signal_all(leftovers, signal.SIGTERM)
            resources.signal_all(resources.wait_gone(leftovers, 1.0), signal.SIGKILL)
            resources.wait_gone(leftovers, 2.0)
        code = run.popen.poll() if run.popen is not None else None
        job = self.get(run.job_id)
        free_after = self.measure(run.device)[0]
        freed = None if run.cancel_free_before is None else free_after - run.cancel_free_before
        updates: dict = {"freed_memory": freed}
        if job["state"] == "running":   # the worker died before recording its end
            tail = self.log_tail(run.job_id, 1).strip()
            if job["cancel_requested"]:
                updates.update(state="cancelled", message=f"cancelled: the worker was stopped ({_describe_exit(code)})")
            else:
                updates.update(state="failed", message=f"the worker {_describe_exit(code)} without recording a "
                                                       f"result" + (f"; last log line: {tail}" if tail else ""))
            updates.update(finished=time.time(), resumable=int(is_resumable(job["kind"])), exit_code=code)
        elif code is not None:
            updates["exit_code"] = code
        if job["cancel_requested"] and freed is not None:
            took = time.monotonic() - run.cancel_sent_at
            # The processes being gone is the certain part; the free figure is machine-wide and noisy.
            updates["message"] = (updates.get("message") or job["message"]) + (
                f"; all its processes gone {took:.1f} s after the cancel, releasing the "
                f"{format_bytes(run.cancel_held)} they held (measured free memory {_signed(freed)})")
        sets = ", ".join(f"{k} = ?" for k in updates)
        self.store.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*updates.values(), run.job_id))
        end = self.get(run.job_id)
        self.store.add_event("job_end", str(run.job_id), f"job {run.job_id} ({end['kind']}) {end['state']}: "
                             f"{end['message']}", state=end["state"], exit_code=end["exit_code"], freed_bytes=freed)
        self._wake.set()   # memory came back: look at the queue again now

    def _adopt_strays(self) -> None:
        """Running rows this loop does not watch: left by an earlier scheduler. Alive: reattach; else interrupted."""
        for job in self.list(states=["running"]):
            if job["id"] in self._running or job["started"] is None:
                continue   # watched already, or not launched by any scheduler (a row written by hand)
            proc = resources.process_if_same(job["pid"], job["pid_started"])
            if proc is not None:
                self._running[job["id"]] = self._watch(job, proc, None)
                self.store.add_event("job_reattach", str(job["id"]), f"job {job['id']} reattached (pid {job['pid']})")
                continue
            if job["pid"] is None and time.time() - (job["started"] or 0) < _PID_GRACE_S:
                continue
            cursor = self.store.execute(
                "UPDATE jobs SET state = 'interrupted', finished = ?, resumable = ?, message = ? WHERE id = ? AND state = 'running'",
                (time.time(), int(is_resumable(job["kind"])), f"interrupted: its worker (pid {job['pid']}) was "
                 f"gone when the scheduler restarted", job["id"]))
            if cursor.rowcount:
                self.store.add_event("job_end", str(job["id"]), f"job {job['id']} interrupted", state="interrupted")

    # ---- sampling ----
    def _sample(self) -> None:
        self._sampled_at = time.monotonic()
        for run in self._running.values():
            try:
                reading = run.meter.read()
            except psutil.Error:
                continue
            run.used, run.read_at = self._used_from(run, reading), time.monotonic()
            self.store.execute("INSERT INTO job_usage (job_id, ts, rss_bytes, cpu_percent, gpu_bytes, processes)"
                               " VALUES (?, ?, ?, ?, ?, ?)", (run.job_id, time.time(), reading["rss_bytes"],
                                                              reading["cpu_percent"], reading["gpu_bytes"],
                                                              reading["processes"]))
            self.store.execute("UPDATE jobs SET peak_memory = MAX(COALESCE(peak_memory, 0), ?) WHERE id = ?",
                               (reading["rss_bytes"], run.job_id))

    def _used(self, run: _Running, fresh: bool = False) -> int:
        if fresh or time.monotonic() - run.read_at > 0.5:
            try:
                run.used, run.read_at = self._used_from(run, run.meter.read()), time.monotonic()
            except psutil.Error:
                pass
        return run.used

    @staticmethod
    def _used_from(run: _Running, reading: dict) -> int:
        return int(reading["gpu_bytes"] or 0) if run.device == "cuda" else int(reading["rss_bytes"])

    # ---- admission ----
    def _capacity(self, device: str, used: dict[int, int]) -> dict:
        free, total = self.measure(device)
        jobs_reserved = self._jobs_reserved(device, used)
        models_held = models_pending = 0
        if self.models is not None and self.model_device == device:
            models_held = sum(m["measured_bytes"] for m in self.models.resident())
            models_pending = self.models.pending_bytes()
        available = free - FREE_MEMORY_RESERVE - jobs_reserved - models_pending
        return {"device": device, "free_bytes": free, "total_bytes": total, "reserve_bytes": FREE_MEMORY_RESERVE,
                "jobs_reserved_bytes": jobs_reserved, "jobs_used_bytes": sum(used.values()),
                "models_held_bytes": models_held, "models_pending_bytes": models_pending,
                "available_bytes": max(0, available),
                # the most a job could ever get here: everything we run stopped and unloaded
                "ceiling_bytes": max(0, free - FREE_MEMORY_RESERVE + sum(used.values()) + models_held)}

    def _admit(self) -> None:
        queued = self.store.query("SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority DESC, created, id")
        if not queued:
            return
        used = {r.job_id: self._used(r) for r in self._running.values()}
        capacity = {d: self._capacity(d, used) for d in {j["device"] for j in queued}}
        blocked_by: dict[str, dict] = {}   # device -> the first job that did not fit there
        for job in queued:
            device, need = job["device"], job["est_memory"]
            reason = self._limit_reason(job)
            if job["id"] in self._running:   # resumed while its last run is still being wound up
                reason = "its previous run is still stopping"
            if reason is None and device in blocked_by:
                first = blocked_by[device]
                reason = f"waits behind job {first['id']} (priority {first['priority']}), which needs " \
                         f"{format_bytes(first['est_memory'])} first"
            if reason is None and need > capacity[device]["available_bytes"]:
                if job["priority"] >= self.evict_priority:
                    self._evict_for(need, capacity[device])
                    capacity[device] = self._capacity(device, used)
                if need > capacity[device]["available_bytes"]:
                    reason = self._memory_reason(need, capacity[device])
                    blocked_by[device] = job
            if reason is not None:
                if job["waiting"] != reason:
                    self.store.execute("UPDATE jobs SET waiting = ? WHERE id = ? AND state = 'queued'", (reason, job["id"]))
                continue
            if self._launch(job):
                capacity[device]["available_bytes"] -= need
                used[job["id"]] = 0

    def _limit_reason(self, job: dict) -> str | None:
        for (kind, device), limit in self.limits.items():
            if device != job["device"] or kind not in ("*", job["kind"]):
                continue
            running = [r for r in self._running.values() if r.device == device and kind in ("*", r.kind)]
            if len(running) >= limit:
                what = "job" if kind == "*" else f"{kind} job"
                return (f"waits for a free {device.upper()} slot: at most {limit} {what}(s) at a time there "
                        f"(LLMOS_JOB_LIMITS); running: {', '.join(str(r.job_id) for r in running)}")
        return None

    def _memory_reason(self, need: int, cap: dict) -> str:
        memory = "GPU memory" if cap["device"] == "cuda" else "RAM"
        parts = [f"waits for {format_bytes(need)} of {memory}; {format_bytes(cap['available_bytes'])} free"]
        if cap["jobs_reserved_bytes"]:
            parts.append(f"running jobs have {format_bytes(cap['jobs_reserved_bytes'])} more reserved")
        if cap["models_held_bytes"]:
            parts.append(f"models hold {format_bytes(cap['models_held_bytes'])} (a job of priority "
                         f"{self.evict_priority}+ may evict idle ones)")
        return "; ".join(parts)

    def _evict_for(self, need: int, cap: dict) -> None:
        """Unload idle models, least recently used first, until `need` would fit (it is measured again after)."""
        if self.models is None or self.model_device != cap["device"]:
            return
        short = need - cap["available_bytes"]
        for model in sorted((m for m in self.models.resident() if not m["in_use"]), key=lambda m: -m["idle_s"]):
            if short <= 0:
                break
            try:
                if self.models.unload(model["name"], model["backend"], reason="evict"):
                    short -= model["measured_bytes"]
            except LLMOSError:   # pinned since we looked: leave it
                continue

    # ---- launch ----
    def _launch(self, job: dict) -> bool:
        claimed = self.store.execute(
            "UPDATE jobs SET state = 'running', started = ?, runs = runs + 1, waiting = NULL, pid = NULL,"
            " pid_started = NULL, exit_code = NULL, finished = NULL, cancel_requested = 0, message = 'starting'"
            " WHERE id = ? AND state = 'queued'", (time.time(), job["id"])).rowcount
        if not claimed:   # cancelled or deleted since we read the queue
            return False
        log_path = self._log_path(job["id"])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "llmos_core.jobs.worker", str(job["id"])]
        try:
            with open(log_path, "ab") as log:   # the child keeps its own descriptor
                popen = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self._worker_env(), start_new_session=True, close_fds=True)
            proc = psutil.Process(popen.pid)
            started = proc.create_time()
        except (OSError, psutil.Error) as exc:
            self.store.execute("UPDATE jobs SET state = 'failed', finished = ?, message = ? WHERE id = ?",
                               (time.time(), f"could not start its worker: {exc}", job["id"]))
            return False
        self.store.execute("UPDATE jobs SET pid = ?, pid_started = ? WHERE id = ?", (popen.pid, started, job["id"]))
        self._running[job["id"]] = self._watch(job, proc, popen)
        self.store.add_event("job_start", str(job["id"]), f"job {job['id']} ({job['kind']}) started in pid "
                             f"{popen.pid}, reserving {format_bytes(job['est_memory'])}", job_kind=job["kind"],
                             est_memory=job["est_memory"], resume=bool(job["resume"]))
        return True

    @staticmethod
    def _watch(job: dict, proc: psutil.Process, popen: subprocess.Popen | None) -> _Running:
        return _Running(job["id"], job["kind"], job["device"], job["est_memory"], proc, popen,
                        resources.UsageMeter(proc))

    def _worker_env(self) -> dict:
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
        for f in fields(Settings):   # the worker sees the same settings, even ones set in code
            value = getattr(self.settings, f.name)
            if value is not None:
                env[f"LLMOS_{f.name.upper()}"] = str(int(value) if isinstance(value, bool) else value)
        return env

    # ---- checks at submit ----
    def _check_device(self, kind: str, device: str) -> None:
        if device != "cuda":
            return
        if self._cuda is None:
            try:
                import torch

                self._cuda = bool(torch.cuda.is_available())
            except ImportError:
                self._cuda = False
        if not self._cuda:
            raise InvalidInput(f"this {kind} job wants a CUDA GPU, and this machine has none",
                               "choose the CPU in its settings")

    def _check_possible(self, kind: str, memory: int, device: str) -> None:
        used = {j["id"]: _tree_used(j) for j in self.list(states=["running"])}
        cap = self._capacity(device, used)
        ceiling = cap["ceiling_bytes"]
        if self.models is None:   # another process may hold models: ask the primary what it could unload
            ceiling += _primary_models_bytes(self.settings)
        if memory > ceiling:
            where = "GPU memory" if device == "cuda" else "RAM"
            error = InsufficientMemory(f"this {kind} job", memory, ceiling, cap["total_bytes"],
                                       f"even with every job stopped and every model unloaded this machine has "
                                       f"{format_bytes(ceiling)} of {where} for it; make the job smaller")
            self.store.add_event("job_refused", kind, str(error), needed=memory, free=ceiling)
            raise error

    # ---- paths ----
    @property
    def _lock_file(self) -> Path:
        return self.settings.home / "scheduler.lock"

    def _log_path(self, job_id: int) -> Path:
        return self.settings.jobs_dir / str(int(job_id)) / "job.log"


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


def _decode(row: dict) -> dict:
    row = dict(row)
    row["params"] = json.loads(row["params"] or "{}")
    row["result"] = json.loads(row["result"] or "{}")
    for flag in ("resumable", "cancel_requested", "resume"):
        row[flag] = bool(row[flag])
    return row


def _refuse_if_stopping(job: dict) -> None:
    """Its worker has recorded the end but not exited yet: the scheduler still has to wind it up."""
    if resources.process_if_same(job["pid"], job["pid_started"]) is not None:
        raise JobError(f"job {job['id']} is still stopping (pid {job['pid']})", "try again in a moment")


def _tree_used(job: dict) -> int:
    proc = resources.process_if_same(job["pid"], job["pid_started"])
    if proc is None:
        return 0
    reading = resources.UsageMeter(proc).read()
    return int(reading["gpu_bytes"] or 0) if job["device"] == "cuda" else reading["rss_bytes"]


def _primary_models_bytes(settings: Settings) -> int:
    from .. import control

    try:
        return sum(m["measured_bytes"] for m in control.call(settings.home / "engine.sock", "ps", timeout=2))
    except (ConnectionError, OSError, LLMOSError):
        return 0


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "ended (exit code unknown: it was started by an earlier scheduler)"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        hint = " (out of memory, or killed from outside)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


def _signed(n: int) -> str:
    return ("+" if n >= 0 else "-") + format_bytes(abs(n))


def _past(state: str) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "cancelled": "been cancelled",
            "interrupted": "been interrupted"}.get(state, state)


__all__ = ["JobScheduler", "STATES", "FINISHED", "KINDS", "parse_limits", "with_eta"]
