"""The scheduler loop of one data folder: one thread that polls the job store and acts.

Each pass (step): reap workers that ended, act on cancels, reattach or interrupt jobs left running
by an earlier scheduler, sample each job's workers, then start what admission (admission.py, a pure
function) lets in, evicting idle models first where it says so. Workers are started, read and
stopped through a supervisor (supervisor.py). Only one loop runs per data folder (file lock
`scheduler.lock`); any process can still submit and cancel, since those only write the store.

A pass that fails (the store locked past its timeout, a full disk, a bug) is kept for health()
and retried after a backoff that doubles up to `max_backoff_s`; only stop() ends the thread. A
loop counts as alive while its thread runs and a pass has succeeded within `stale_after_s`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import JobError, LLMOSError, format_bytes
from ..locks import is_held, take_lock
from ..settings import Settings
from .admission import Decision, JobRequest, Limits, RunningJob, admit, memory_reason
from .capacity import CapacityReader, used_from
from .job_store import JobStore, log_path, read_tail
from .kinds import is_resumable
from .supervisor import describe_exit

# A running row without a pid may be a worker that has not written it yet (it does so at once).
_PID_GRACE_S = 15.0


@dataclass
class _Running:
    """A job whose worker this loop watches (started here, or reattached after a restart)."""
    job_id: int
    kind: str
    device: str
    est_memory: int
    worker: object                          # the supervisor's handle
    used: int = 0                           # bytes its workers held at the last reading
    read_at: float = 0.0
    cancel_deadline: float | None = None    # when the stop was asked + grace: kill after this
    cancel_free_before: int | None = None
    cancel_held: int = 0
    cancel_sent_at: float = 0.0
    waiting: str | None = None              # why its launched worker has not begun, as last noted


class SchedulerLoop:
    def __init__(self, settings: Settings, jobs: JobStore, supervisor, capacity: CapacityReader, *,
                 limits: Limits, has_device: Callable[[str], bool], poll_s: float, cancel_grace_s: float,
                 sample_s: float, evict_priority: int, max_backoff_s: float, stale_after_s: float,
                 where: str = "on this machine"):
        self.settings, self.jobs, self.supervisor, self.capacity = settings, jobs, supervisor, capacity
        self.limits, self.has_device = limits, has_device
        self.where = where   # whose devices admission counts, for its reasons
        self.poll_s, self.cancel_grace_s, self.sample_s = poll_s, cancel_grace_s, sample_s
        self.evict_priority = evict_priority
        self.max_backoff_s, self.stale_after_s = max_backoff_s, stale_after_s
        self.running: dict[int, _Running] = {}   # touched by the loop thread only
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_handle = None
        self._sampled_at = 0.0
        # Written by the loop thread, read by any (single assignments).
        self._started_at = 0.0
        self.last_step_at: float | None = None   # the end of the last pass that succeeded
        self.last_error: str | None = None       # the newest failure, kept after recovery
        self.last_error_at: float | None = None
        self.failures = 0                        # passes failed in a row

    # ---- the thread ----
    @property
    def started_here(self) -> bool:
        return self._thread is not None

    def on_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def start(self) -> bool:
        """Take the data folder's scheduler lock and start the thread; False if another holds it."""
        if self._thread is not None and self._thread.is_alive():
            return True
        self.settings.home.mkdir(parents=True, exist_ok=True)
        if self._lock_handle is None:
            self._lock_handle = take_lock(self._lock_file)
            if self._lock_handle is None:
                return False
        self._stop.clear()
        self._started_at, self.last_step_at, self.failures = time.time(), None, 0
        self._thread = threading.Thread(target=self._run, name="llmos-scheduler", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop the thread. Running workers go on; the next scheduler reattaches them."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(30)
        self._thread = None
        self.running.clear()
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def wake(self) -> None:
        self._wake.set()

    def is_alive(self) -> bool:
        """A loop runs for this data folder: here (thread alive and making progress) or in another process."""
        if self._thread is not None:
            last = self.last_step_at or self._started_at
            return self._thread.is_alive() and time.time() - last < self.stale_after_s
        self.settings.home.mkdir(parents=True, exist_ok=True)
        return is_held(self._lock_file)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:   # one bad pass must not stop every job: kept, then retried
                self._note_failure(exc)
            else:
                if self.failures:
                    self._log(f"the scheduler works again after {self.failures} failed pass(es); the last: "
                              f"{self.last_error}", "scheduler_recovered")
                self.last_step_at, self.failures = time.time(), 0
            if self.failures:   # back off, so a locked or full store is not hammered; stop() still ends it
                self._stop.wait(min(self.poll_s * 2 ** min(self.failures, 20), self.max_backoff_s))
            else:
                self._wake.wait(self.poll_s)
            self._wake.clear()

    def _note_failure(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error, self.last_error_at = f"{type(exc).__name__}: {exc}", time.time()
        self._log(self.last_error, "scheduler_error")

    def _log(self, message: str, kind: str) -> None:
        try:
            self.jobs.add_event(kind, "scheduler", message, failures=self.failures)
        except Exception:   # the store may be what fails (locked past its timeout, disk full): health() tells
            pass

    # ---- one pass ----
    def step(self) -> None:
        """Reap exits, act on cancels, reattach or interrupt strays, sample, start what fits."""
        for run in list(self.running.values()):
            if not self.supervisor.alive(run.worker):
                self._finish(run)
            elif run.worker.waiting != run.waiting:   # launched, not begun: say why (Ray holds it PENDING)
                run.waiting = run.worker.waiting
                if run.waiting:
                    self.jobs.note_before_start(run.job_id, run.waiting)
        self._act_on_cancels()
        self._adopt_strays()
        if time.monotonic() - self._sampled_at >= self.sample_s:
            self._sample()
        self._admit()

    def _act_on_cancels(self) -> None:
        wanted = self.jobs.cancel_requested()
        now = time.monotonic()
        for run in self.running.values():
            if run.job_id in wanted and run.cancel_deadline is None:
                run.cancel_held = self._used(run, fresh=True)
                if getattr(self.supervisor, "frees_memory_here", True):   # else nothing here to measure
                    run.cancel_free_before = self.capacity.measure(run.device)[0]
                run.cancel_sent_at = now
                run.cancel_deadline = now + self.cancel_grace_s
                self.supervisor.request_stop(run.worker)   # the worker saves and returns
            elif run.cancel_deadline is not None and now >= run.cancel_deadline:
                self.supervisor.kill(run.worker)
                self.jobs.set_message(run.job_id, f"did not stop within {self.cancel_grace_s:g} s of SIGTERM: killed")
                run.cancel_deadline = float("inf")   # killed once; _finish sees it gone next pass

    def _finish(self, run: _Running) -> None:
        """The worker is gone: wind up what it left, record the end and the memory that came back."""
        self.supervisor.wind_up(run.worker)
        code = self.supervisor.exit_code(run.worker)
        try:
            job = self.jobs.get(run.job_id)
        except JobError:   # its row was deleted once the worker had recorded its end: nothing to record
            del self.running[run.job_id]
            return
        # Only a cancel measured free memory before (and only here: on a cluster, a node's came back).
        # Measuring on every end cost a Ray cluster two dashboard requests while the next job started.
        freed = None if run.cancel_free_before is None else self.capacity.measure(run.device)[0] - run.cancel_free_before
        updates: dict = {"freed_memory": freed}
        gave_up = getattr(run.worker, "gave_up", None)
        if gave_up and job["state"] == "running" and self.jobs.requeue_unstarted(
                run.job_id, f"queued again: the Ray cluster gave up placing it ({gave_up})"):
            del self.running[run.job_id]
            self.jobs.add_event("job_requeue", str(run.job_id), f"job {run.job_id} queued again: Ray gave up "
                                "placing it before it began", reason=gave_up)
            self._wake.set()
            return
        if job["state"] == "running":   # the worker died before recording its end
            tail = read_tail(Path(job["log_path"] or log_path(self.settings.jobs_dir, run.job_id)), 1).strip()
            if job["cancel_requested"]:
                updates.update(state="cancelled", message=f"cancelled: the worker was stopped ({describe_exit(code)})")
            else:
                updates.update(state="failed", message=f"the worker {describe_exit(code)} without recording a "
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
        self.jobs.update(run.job_id, **updates)
        del self.running[run.job_id]   # only once recorded: if the store failed, the next pass does it again
        end = self.jobs.get(run.job_id)
        self.jobs.add_event("job_end", str(run.job_id), f"job {run.job_id} ({end['kind']}) {end['state']}: "
                            f"{end['message']}", state=end["state"], exit_code=end["exit_code"], freed_bytes=freed)
        self._wake.set()   # memory came back: look at the queue again now

    def _adopt_strays(self) -> None:
        """Running rows this loop does not watch: left by an earlier scheduler. Alive: reattach; else interrupted."""
        for job in self.jobs.list(states=["running"]):
            if job["id"] in self.running or job["started"] is None:
                continue   # watched already, or not launched by any scheduler (a row written by hand)
            worker = self.supervisor.reattach(job)
            if worker is not None:
                self.running[job["id"]] = _watch(job, worker)
                self.jobs.add_event("job_reattach", str(job["id"]), f"job {job['id']} reattached ({worker.where})")
                continue
            if job["pid"] is None and time.time() - (job["started"] or 0) < _PID_GRACE_S:
                continue
            message = f"interrupted: its worker (pid {job['pid']}) was gone when the scheduler restarted"
            if self.jobs.end_if_running(job["id"], "interrupted", message, is_resumable(job["kind"])):
                self.jobs.add_event("job_end", str(job["id"]), f"job {job['id']} interrupted", state="interrupted")

    # ---- what the workers hold ----
    def _sample(self) -> None:
        self._sampled_at = time.monotonic()
        for run in list(self.running.values()):
            reading = self.supervisor.usage(run.worker)
            if reading is None:
                continue
            run.used, run.read_at = used_from(run.device, reading), time.monotonic()
            self.jobs.add_usage(run.job_id, reading)

    def _used(self, run: _Running, fresh: bool = False) -> int:
        if fresh or time.monotonic() - run.read_at > 0.5:
            reading = self.supervisor.usage(run.worker)
            if reading is not None:
                run.used, run.read_at = used_from(run.device, reading), time.monotonic()
        return run.used

    def used_now(self) -> dict[int, int]:
        """job id -> bytes; from the loop's own readings (call on the loop thread)."""
        return {r.job_id: self._used(r) for r in self.running.values()}

    # ---- admission: measure, decide (admission.admit), execute ----
    def _admit(self) -> None:
        queued = self.jobs.queued()
        if not queued:
            return
        used = self.used_now()
        # A device this machine lacks gets no figures: admission keeps its jobs waiting, with the reason.
        capacity = {d: self.capacity.read(d, used) for d in {j["device"] for j in queued} if self.has_device(d)}
        running = [RunningJob(r.job_id, r.kind, r.device) for r in self.running.values()]
        by_id = {job["id"]: job for job in queued}
        short_after_evict: set[str] = set()   # devices where eviction freed less than admission counted on
        for decision in admit([JobRequest.from_row(j) for j in queued], capacity, self.limits, running,
                              self.evict_priority, self.where):
            job = by_id[decision.job_id]
            if decision.start and job["device"] in short_after_evict:
                continue   # it was counted on room that did not come: the next pass decides again
            if decision.start and decision.evict_bytes:
                self._evict(decision.evict_bytes, job["device"])
                fresh = self.capacity.read(job["device"], used)
                if job["est_memory"] > fresh.available_bytes:
                    short_after_evict.add(job["device"])
                    decision = Decision(job["id"], False, memory_reason(job["est_memory"], fresh.available_bytes,
                                                                        fresh, self.evict_priority))
            if not decision.start:
                if job["waiting"] != decision.reason:
                    self.jobs.set_waiting(job["id"], decision.reason)
                continue
            if self._launch(job):
                used[job["id"]] = 0
            else:
                self._wake.set()   # its room is still free: the next pass may give it to another job

    def _evict(self, short: int, device: str) -> None:
        """Unload idle models, least recently used first, until `short` bytes are freed (measured again after)."""
        models = self.capacity.models
        if models is None or self.capacity.model_device != device:
            return
        for model in sorted((m for m in models.resident() if not m["in_use"]), key=lambda m: -m["idle_s"]):
            if short <= 0:
                break
            try:
                if models.unload(model["name"], model["backend"], reason="evict"):
                    short -= model["measured_bytes"]
            except LLMOSError:   # pinned since we looked: leave it
                continue

    def _launch(self, job: dict) -> bool:
        if not self.jobs.claim(job["id"]):   # cancelled or deleted since we read the queue
            return False
        try:
            worker = self.supervisor.launch(job, log_path(self.settings.jobs_dir, job["id"]))
        except JobError as exc:
            self.jobs.fail_to_start(job["id"], exc.message)
            return False
        self.running[job["id"]] = _watch(job, worker)   # watched before anything else can fail
        self.jobs.update(job["id"], **worker.identity)
        self.jobs.add_event("job_start", str(job["id"]), f"job {job['id']} ({job['kind']}) started as "
                            f"{worker.where}, reserving {format_bytes(job['est_memory'])}", job_kind=job["kind"],
                            est_memory=job["est_memory"], resume=bool(job["resume"]))
        return True

    @property
    def _lock_file(self) -> Path:
        return self.settings.home / "scheduler.lock"


def _watch(job: dict, worker) -> _Running:
    return _Running(job["id"], job["kind"], job["device"], job["est_memory"], worker)


def _signed(n: int) -> str:
    return ("+" if n >= 0 else "-") + format_bytes(abs(n))
