"""What admission sees on a device now: measured free memory, less what jobs and models have reserved.

    available = measured free - FREE_MEMORY_RESERVE
                - sum over running jobs of (estimate - what its workers hold now)
                - what the models being loaded have reserved but not yet taken
Resident models' bytes are already out of the measured free; idle ones can be evicted for a job
(admission.py decides when). The figures come in an admission.Capacity.
"""
from __future__ import annotations

from typing import Callable

import psutil

from ..models.manager import FREE_MEMORY_RESERVE
from .admission import Capacity
from .job_store import JobStore

MeasureFree = Callable[[str], "tuple[int, int]"]   # device ("cpu" | "cuda") -> (free, total) bytes


def measure_free(device: str) -> tuple[int, int]:
    if device == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info()
        return int(free), int(total)
    vm = psutil.virtual_memory()
    return int(vm.available), int(vm.total)


def used_from(device: str, reading: dict) -> int:
    """The bytes of a usage reading that count on `device` (GPU memory for a CUDA job, else resident RAM)."""
    return int(reading["gpu_bytes"] or 0) if device == "cuda" else int(reading["rss_bytes"])


class CapacityReader:
    def __init__(self, jobs: JobStore, supervisor, measure: MeasureFree, models=None, model_device: str = "cpu"):
        self.jobs, self.supervisor, self.measure = jobs, supervisor, measure
        self.models = models                 # the primary engine's ModelManager, or None
        self.model_device = model_device     # where those models live ("cpu" | "cuda")

    def read(self, device: str, used: dict[int, int]) -> Capacity:
        """`used`: job id -> bytes its workers hold now (the loop's readings, or held_now())."""
        free, total = self.measure(device)
        held = pending = idle = 0
        if self.models is not None and self.model_device == device:
            resident = self.models.resident()
            held = sum(m["measured_bytes"] for m in resident)
            idle = sum(m["measured_bytes"] for m in resident if not m["in_use"])
            pending = self.models.pending_bytes()
        return Capacity(device, free, total, FREE_MEMORY_RESERVE, self.jobs_reserved(device, used),
                        sum(used.values()), held, pending, idle)

    def jobs_reserved(self, device: str, used: dict[int, int]) -> int:
        """What running jobs on `device` have reserved and not taken yet (a job starting up holds its whole estimate)."""
        running = self.jobs.list(states=["running"])
        return sum(max(0, j["est_memory"] - used.get(j["id"], 0)) for j in running if j["device"] == device)

    def held_now(self) -> dict[int, int]:
        """Each running job's bytes, read through the supervisor: for callers outside the loop."""
        return {job["id"]: self.held_by(job) for job in self.jobs.list(states=["running"])}

    def held_by(self, job: dict) -> int:
        worker = self.supervisor.reattach(job)
        reading = self.supervisor.usage(worker) if worker is not None else None
        return used_from(job["device"], reading) if reading is not None else 0
