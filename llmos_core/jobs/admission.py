"""Admission: which queued jobs start now, and why the others wait. A pure function of its inputs.

    admit(queued, capacity, limits, running, evict_priority) -> one Decision per queued job

The scheduler measures (free memory, reservations, models) and executes (evict, launch); this module
only decides, so every rule can be table-tested without a process or a database. The rules, in
the order they apply to each job of the queue (highest priority first, then oldest):
  - a job whose previous run is still being wound up waits for it;
  - per kind and device limits (LLMOS_JOB_LIMITS, "train@cuda=1,*@cpu=4") count running jobs,
    including those this pass starts;
  - a job on a device with no capacity figures (a CUDA job and no GPU) waits;
  - a job that does not fit holds back every later job on its device, so a large job is never
    starved by small ones;
  - a job that does not fit may start if unloading idle models would make room and its priority
    is at least evict_priority: the decision then says how many bytes to evict first.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import InvalidInput, format_bytes

DEFAULT_LIMITS = "train@cuda=1"

Limits = dict  # (kind or "*", device) -> how many may run at once


@dataclass(frozen=True)
class Capacity:
    """What one device has for jobs now. Resident models' bytes are already out of free_bytes."""
    device: str                       # "cpu" | "cuda"
    free_bytes: int                   # measured
    total_bytes: int
    reserve_bytes: int                # kept free for the system
    jobs_reserved_bytes: int = 0      # running jobs' estimates minus what they use now
    jobs_used_bytes: int = 0          # what running jobs' processes hold now
    models_held_bytes: int = 0        # resident models (in use or idle)
    models_pending_bytes: int = 0     # models being loaded: reserved, not yet taken
    models_idle_bytes: int = 0        # of models_held, what idle models hold (eviction can free it)

    @property
    def available_bytes(self) -> int:
        return max(0, self.free_bytes - self.reserve_bytes - self.jobs_reserved_bytes - self.models_pending_bytes)

    @property
    def ceiling_bytes(self) -> int:
        """The most a job could ever get here: everything we run stopped and every model unloaded."""
        return max(0, self.free_bytes - self.reserve_bytes + self.jobs_used_bytes + self.models_held_bytes)

    def as_dict(self) -> dict:
        return {**asdict(self), "available_bytes": self.available_bytes, "ceiling_bytes": self.ceiling_bytes}


@dataclass(frozen=True)
class JobRequest:
    """A queued job as admission sees it."""
    id: int
    kind: str
    device: str
    need_bytes: int
    priority: int = 0

    @classmethod
    def from_row(cls, job: dict) -> "JobRequest":
        return cls(job["id"], job["kind"], job["device"], int(job["est_memory"] or 0), int(job["priority"]))


@dataclass(frozen=True)
class RunningJob:
    id: int
    kind: str
    device: str


@dataclass(frozen=True)
class Decision:
    job_id: int
    start: bool
    reason: str | None = None   # why it waits, with figures (None when it starts)
    evict_bytes: int = 0        # start only after idle models have freed this much


def admit(queued: list[JobRequest], capacity: dict[str, Capacity], limits: Limits, running: list[RunningJob],
          evict_priority: int = 1, where: str = "on this machine") -> list[Decision]:
    """Decide for each queued job, in the given order, whether it starts now or why it waits.
    `where` names the place whose devices are counted, for the reasons ("on this machine", a cluster)."""
    running = list(running)
    available = {device: cap.available_bytes for device, cap in capacity.items()}
    idle = {device: cap.models_idle_bytes for device, cap in capacity.items()}
    blocked_by: dict[str, JobRequest] = {}   # device -> the first job that did not fit there
    decisions = []
    for job in queued:
        device, evict = job.device, 0
        reason = limit_reason(job, limits, running)
        if any(r.id == job.id for r in running):   # resumed while its last run is still being wound up
            reason = "its previous run is still stopping"
        if reason is None and device not in capacity:
            reason = f"waits for a {device.upper()} device: none is visible to the scheduler {where}"
        if reason is None and device in blocked_by:
            first = blocked_by[device]
            reason = (f"waits behind job {first.id} (priority {first.priority}), which needs "
                      f"{format_bytes(first.need_bytes)} first")
        if reason is None and job.need_bytes > available[device]:
            short = job.need_bytes - available[device]
            if job.priority >= evict_priority and short <= idle[device]:
                evict = short
            else:
                reason = memory_reason(job.need_bytes, available[device], capacity[device], evict_priority)
                blocked_by[device] = job
        if reason is not None:
            decisions.append(Decision(job.id, False, reason))
            continue
        decisions.append(Decision(job.id, True, evict_bytes=evict))
        available[device] += evict - job.need_bytes
        idle[device] -= evict
        running.append(RunningJob(job.id, job.kind, device))
    return decisions


def limit_reason(job: JobRequest, limits: Limits, running: list[RunningJob]) -> str | None:
    for (kind, device), limit in limits.items():
        if device != job.device or kind not in ("*", job.kind):
            continue
        counted = [r for r in running if r.device == device and kind in ("*", r.kind)]
        if len(counted) >= limit:
            what = "job" if kind == "*" else f"{kind} job"
            return (f"waits for a free {device.upper()} slot: at most {limit} {what}(s) at a time there "
                    f"(LLMOS_JOB_LIMITS); running: {', '.join(str(r.id) for r in counted)}")
    return None


def memory_reason(need: int, available: int, cap: Capacity, evict_priority: int) -> str:
    memory = "GPU memory" if cap.device == "cuda" else "RAM"
    parts = [f"waits for {format_bytes(need)} of {memory}; {format_bytes(available)} free"]
    if cap.jobs_reserved_bytes:
        parts.append(f"running jobs have {format_bytes(cap.jobs_reserved_bytes)} more reserved")
    if cap.models_held_bytes:
        parts.append(f"models hold {format_bytes(cap.models_held_bytes)} (a job of priority "
                     f"{evict_priority}+ may evict idle ones)")
    return "; ".join(parts)


def parse_limits(text: str) -> Limits:
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
