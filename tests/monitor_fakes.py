"""Fake psutil and NVML for monitor tests: a machine whose cores, processes and GPUs a test controls.

They implement only what llmos_core/host.py and llmos_core/gpu.py call, with psutil's and pynvml's
real exception classes, so the code under test takes the same paths as on a real machine.
"""
from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

import psutil
import pynvml

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
ProcTimes = namedtuple("ProcTimes", "user system")
MemInfo = namedtuple("MemInfo", "rss vms")


class FakeClock:
    def __init__(self, start: float = 1_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


class FakeProcess:
    def __init__(self, machine: "FakePsutil", pid: int):
        self.machine, self.pid = machine, pid
        if pid not in machine.procs:
            raise psutil.NoSuchProcess(pid)

    @property
    def info(self) -> dict:
        p = self.machine.procs[self.pid]
        return {"pid": self.pid, "ppid": p["ppid"], "name": p["name"],
                "cpu_times": ProcTimes(p["cpu_s"], 0.0), "memory_info": MemInfo(p["rss"], p["rss"] * 2),
                "create_time": p["created"]}

    def username(self) -> str:
        return "tester"

    def cmdline(self) -> list[str]:
        if self.pid in self.machine.vanish_on_read or self.pid not in self.machine.procs:
            raise psutil.NoSuchProcess(self.pid)
        return self.machine.procs[self.pid]["cmdline"]


class FakePsutil:
    """A machine with `cores` cores. advance(dt, busy=[...]) moves every counter on by dt seconds."""

    NoSuchProcess, AccessDenied, ZombieProcess = psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess

    def __init__(self, cores: int = 2, total_ram: int = 16 * 1024**3):
        self.cores = cores
        self.times = [[0.0] * 10 for _ in range(cores)]
        self.total_ram, self.used_ram = total_ram, 4 * 1024**3
        self.disk = SimpleNamespace(read_bytes=0, write_bytes=0)
        self.net = SimpleNamespace(bytes_sent=0, bytes_recv=0)
        self.procs: dict[int, dict] = {}
        self.vanish_on_read: set[int] = set()
        self.load = (0.5, 0.4, 0.3)

    def add_process(self, pid: int, name: str = "python", ppid: int = 1, rss: int = 100 * 1024**2,
                    created: float = 1_000_000.0, cmdline: list[str] | None = None) -> None:
        self.procs[pid] = {"ppid": ppid, "name": name, "rss": rss, "cpu_s": 0.0, "created": created,
                           "cmdline": cmdline or [name]}

    def advance(self, dt: float, busy: list[float] | None = None, proc_cpu: dict[int, float] | None = None,
                disk_read: int = 0, net_recv: int = 0) -> None:
        """Cores busy `busy[i]` (0..1) of dt; process pid used proc_cpu[pid] cores."""
        busy = busy or [0.0] * self.cores
        for i, share in enumerate(busy):
            self.times[i][0] += dt * share        # user
            self.times[i][3] += dt * (1 - share)  # idle
        for pid, cores in (proc_cpu or {}).items():
            self.procs[pid]["cpu_s"] += dt * cores
        self.disk.read_bytes += disk_read
        self.net.bytes_recv += net_recv

    # ---- the psutil surface host.py uses ----
    def cpu_count(self, logical: bool = True) -> int:
        return self.cores

    def cpu_times(self, percpu: bool = False):
        return [CpuTimes(*t) for t in self.times]

    def virtual_memory(self):
        available = self.total_ram - self.used_ram
        return SimpleNamespace(total=self.total_ram, available=available,
                               percent=round(100 * self.used_ram / self.total_ram, 1))

    def swap_memory(self):
        return SimpleNamespace(total=0, used=0, percent=0.0)

    def getloadavg(self):
        return self.load

    def disk_io_counters(self):
        return SimpleNamespace(**vars(self.disk))

    def net_io_counters(self):
        return SimpleNamespace(**vars(self.net))

    def process_iter(self, attrs=None, ad_value=None):
        for pid in list(self.procs):
            yield FakeProcess(self, pid)

    def Process(self, pid: int) -> FakeProcess:   # noqa: N802 (psutil's name)
        return FakeProcess(self, pid)


class FakeNVML:
    """NVML with the given GPUs: dicts of name, util, mem_used, mem_total, processes {pid: bytes}.

    `fail` (an NVML error code) makes every device call raise it (a GPU reset); `fail_gpu` only that
    index's calls; `unsupported` names functions that raise NOT_SUPPORTED.
    """

    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2

    def __init__(self, gpus: list[dict], init_error: int | None = None):
        self.gpus = gpus
        self.init_error = init_error
        self.fail: int | None = None
        self.fail_gpu: int | None = None
        self.unsupported: set[str] = set()
        self.init_calls = 0

    def _check(self, name: str, handle: int | None = None) -> dict | None:
        if self.fail is not None or (handle is not None and handle == self.fail_gpu):
            raise pynvml.NVMLError(self.fail or pynvml.NVML_ERROR_GPU_IS_LOST)
        if name in self.unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return None if handle is None else self.gpus[handle]

    def nvmlInit(self):   # noqa: N802 (NVML's names)
        self.init_calls += 1
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self._check("nvmlInit")

    def nvmlShutdown(self):   # noqa: N802
        pass

    def nvmlDeviceGetCount(self):   # noqa: N802
        self._check("count")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):   # noqa: N802
        return index

    def nvmlDeviceGetName(self, h):   # noqa: N802
        return self._check("name", h)["name"]

    def nvmlDeviceGetUUID(self, h):   # noqa: N802
        return f"GPU-fake-{h}"

    def nvmlDeviceGetUtilizationRates(self, h):   # noqa: N802
        g = self._check("nvmlDeviceGetUtilizationRates", h)
        return SimpleNamespace(gpu=g["util"], memory=g.get("mem_util", 0))

    def nvmlDeviceGetMemoryInfo(self, h):   # noqa: N802
        g = self._check("nvmlDeviceGetMemoryInfo", h)
        return SimpleNamespace(used=g["mem_used"], total=g["mem_total"], free=g["mem_total"] - g["mem_used"])

    def nvmlDeviceGetTemperature(self, h, sensor):   # noqa: N802
        return self._check("nvmlDeviceGetTemperature", h).get("temp", 50)

    def nvmlDeviceGetPowerUsage(self, h):   # noqa: N802
        return self._check("nvmlDeviceGetPowerUsage", h).get("power_mw", 100_000)

    def nvmlDeviceGetEnforcedPowerLimit(self, h):   # noqa: N802
        return self._check("nvmlDeviceGetEnforcedPowerLimit", h).get("limit_mw", 300_000)

    def nvmlDeviceGetClockInfo(self, h, which):   # noqa: N802
        self._check("nvmlDeviceGetClockInfo", h)
        return 1500 if which == self.NVML_CLOCK_SM else 2600

    def nvmlDeviceGetComputeRunningProcesses(self, h):   # noqa: N802
        g = self._check("nvmlDeviceGetComputeRunningProcesses", h)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in g.get("processes", {}).items()]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):   # noqa: N802
        self._check("nvmlDeviceGetGraphicsRunningProcesses", h)
        return []


def two_gpu_machine(server_pid: int, job_pid: int) -> FakeNVML:
    """Two 80 GB GPUs: the server holds 6 GB on GPU 0, a job 20 GB on GPU 1 (and 1 GB on GPU 0)."""
    gb = 1024**3
    return FakeNVML([
        {"name": "Fake H100 A", "util": 35, "mem_used": 8 * gb, "mem_total": 80 * gb,
         "processes": {server_pid: 6 * gb, job_pid: 1 * gb}},
        {"name": "Fake H100 B", "util": 90, "mem_used": 21 * gb, "mem_total": 80 * gb,
         "processes": {job_pid: 20 * gb}},
    ])
