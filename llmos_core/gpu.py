"""NVIDIA GPUs through NVML (package nvidia-ml-py, module pynvml): one reading of every GPU, or None.

The only module that touches NVML. A machine without a GPU or without the library gets `None` and a
calm reason ("no GPU found: ..."), never an exception. A failure mid-run (a GPU reset, a driver
reload) is reported in `problem`; NVML is shut down and initialised again after `retry_s`.
A figure a GPU does not support (power on some boards, clocks under MIG) is None on its own.
"""
from __future__ import annotations

import time
from types import ModuleType
from typing import Any, Callable

# NVML error codes (pynvml.NVML_ERROR_*), spelled out so a fake NVML module need not define them.
_NOT_SUPPORTED, _NO_PERMISSION, _NOT_FOUND = 3, 4, 6
_LIBRARY_NOT_FOUND, _DRIVER_NOT_LOADED = 12, 9
_FIGURE_ONLY = (_NOT_SUPPORTED, _NO_PERMISSION, _NOT_FOUND)   # the figure is absent, the GPU is fine
_PERMANENT = (_LIBRARY_NOT_FOUND, _DRIVER_NOT_LOADED)         # no point trying again in this process


class GpuReader:
    """Reads every NVIDIA GPU. Not thread-safe: one sampler thread owns it."""

    def __init__(self, nvml: ModuleType | Any | None = None, retry_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self._nvml = nvml                 # None: import pynvml on first use
        self.retry_s = retry_s
        self._clock = clock
        self._ready = False
        self._gave_up = False             # the library or driver is absent: stop trying
        self._retry_at = 0.0
        self._static: list[dict] = []     # per GPU: handle, name, uuid (read once per init)
        self.reason = ""                  # why there are no GPU figures, for the UI ("no GPU found: ...")
        self.problem = ""                 # the last failure mid-run, for the sampler's "lost" list

    @property
    def available(self) -> bool:
        return self._ready

    def read(self) -> list[dict] | None:
        """A list with one dict per GPU, or None when there is no GPU (or NVML is failing now)."""
        if not self._ready and not self._init():
            return None
        nv = self._nvml
        try:
            count = nv.nvmlDeviceGetCount()
            if count != len(self._static):   # a GPU appeared or vanished: read the static data again
                raise nv.NVMLError(999)
        except Exception as exc:
            self._fail(f"NVML stopped answering ({_text(exc)})")
            return None
        gpus, failures = [], 0
        for static in self._static:
            try:
                gpus.append(self._read_one(static))
            except Exception as exc:         # this GPU failed (lost, reset): keep the others
                failures += 1
                gpus.append({**_blank(static), "error": _text(exc)})
        if failures and failures == len(self._static):
            self._fail(f"every GPU failed to answer ({gpus[0]['error']})")
            return None
        self.problem = "; ".join(f"GPU {g['index']}: {g['error']}" for g in gpus if g.get("error"))
        return gpus

    def close(self) -> None:
        if self._ready:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
        self._ready = False

    # ---- inside ----
    def _init(self) -> bool:
        if self._gave_up or self._clock() < self._retry_at:
            return False
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                self._gave_up = True
                self.reason = "no GPU found: the NVIDIA library (nvidia-ml-py) is not installed"
                return False
            self._nvml = pynvml
        nv = self._nvml
        try:
            nv.nvmlInit()
            static = []
            for index in range(nv.nvmlDeviceGetCount()):
                handle = nv.nvmlDeviceGetHandleByIndex(index)
                static.append({"index": index, "handle": handle,
                               "name": _str(self._figure(nv.nvmlDeviceGetName, handle)) or f"GPU {index}",
                               "uuid": _str(self._figure(nv.nvmlDeviceGetUUID, handle))})
        except Exception as exc:
            code = getattr(exc, "value", None)
            if code in _PERMANENT:
                self._gave_up = True
                self.reason = "no GPU found: " + ("no NVIDIA driver library on this machine"
                                                  if code == _LIBRARY_NOT_FOUND else "the NVIDIA driver is not loaded")
            else:
                self._retry_at = self._clock() + self.retry_s
                self.reason = f"no GPU found: NVML did not start ({_text(exc)})"
            return False
        if not static:
            self.close()
            self._gave_up = True
            self.reason = "no GPU found: NVML sees no device"
            return False
        self._static, self._ready, self.reason = static, True, ""
        return True

    def _fail(self, what: str) -> None:
        self.problem = f"{what}; trying again in {self.retry_s:.0f} s"
        self.reason = f"GPU figures lost: {what}"
        self.close()
        self._retry_at = self._clock() + self.retry_s

    def _figure(self, fn: Callable, *args):
        """One figure; None where the GPU does not support it. Other NVML errors propagate (the GPU is in trouble)."""
        try:
            return fn(*args)
        except Exception as exc:
            if getattr(exc, "value", None) in _FIGURE_ONLY:
                return None
            raise

    def _read_one(self, static: dict) -> dict:
        nv, h, f = self._nvml, static["handle"], self._figure
        util = f(nv.nvmlDeviceGetUtilizationRates, h)
        memory = f(nv.nvmlDeviceGetMemoryInfo, h)
        power = f(nv.nvmlDeviceGetPowerUsage, h)             # milliwatts
        limit = f(nv.nvmlDeviceGetEnforcedPowerLimit, h)     # milliwatts
        used_by: dict[int, int | None] = {}
        for lister in (nv.nvmlDeviceGetComputeRunningProcesses, nv.nvmlDeviceGetGraphicsRunningProcesses):
            for proc in f(lister, h) or []:
                pid, used = int(proc.pid), getattr(proc, "usedGpuMemory", None)  # None: the driver cannot tell
                before = used_by.get(pid)   # a process can be listed as compute and graphics: keep the larger
                used_by[pid] = used if before is None else (before if used is None else max(before, used))
        return {
            "index": static["index"], "name": static["name"], "uuid": static["uuid"],
            "util": _attr(util, "gpu"), "mem_util": _attr(util, "memory"),
            "mem_used": _attr(memory, "used"), "mem_total": _attr(memory, "total"),
            "temp_c": f(nv.nvmlDeviceGetTemperature, h, getattr(nv, "NVML_TEMPERATURE_GPU", 0)),
            "power_w": None if power is None else power / 1000.0,
            "power_limit_w": None if limit is None else limit / 1000.0,
            "clock_sm_mhz": f(nv.nvmlDeviceGetClockInfo, h, getattr(nv, "NVML_CLOCK_SM", 1)),
            "clock_mem_mhz": f(nv.nvmlDeviceGetClockInfo, h, getattr(nv, "NVML_CLOCK_MEM", 2)),
            "processes": [{"pid": pid, "mem_used": used} for pid, used in sorted(used_by.items())],
        }


def _blank(static: dict) -> dict:
    return {"index": static["index"], "name": static["name"], "uuid": static["uuid"], "util": None,
            "mem_util": None, "mem_used": None, "mem_total": None, "temp_c": None, "power_w": None,
            "power_limit_w": None, "clock_sm_mhz": None, "clock_mem_mhz": None, "processes": []}


def _attr(obj, name: str):
    return None if obj is None else getattr(obj, name, None)


def _str(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def attribute_memory(snapshot: dict) -> list[dict]:
    """Who holds each GPU's memory: one row per (GPU, process) from NVML's running-process lists.

    Each row names the process as the monitor does ("training job 12 (LoRA on ...)", "LLM OS server")
    and, for the process that holds the models, which resident models sit on that GPU. A pid NVML
    reports but this machine's process list does not show (another container) keeps its number.
    Rows come largest first; a figure the driver cannot tell (usedGpuMemory None) stays None.
    """
    named = {p["pid"]: p for p in snapshot.get("processes") or []}
    rows = []
    for g in snapshot.get("gpus") or []:
        for holder in g.get("processes") or []:
            proc = named.get(holder["pid"])
            role = proc["role"] if proc else "other"
            models = []
            if role in ("server", "engine"):
                models = [m["name"] for m in snapshot.get("models") or [] if _on_gpu(m.get("device"), g["index"])]
            rows.append({"gpu": g["index"], "pid": holder["pid"], "gpu_mem": holder["mem_used"],
                         "label": proc["label"] if proc else f"pid {holder['pid']} (not visible from here)",
                         "role": role, "job_id": proc.get("job_id") if proc else None, "models": models})
    rows.sort(key=lambda r: (r["gpu"], -(r["gpu_mem"] or 0)))
    return rows


def _on_gpu(device: str | None, index: int) -> bool:
    """Whether a model's device string ("cuda", "cuda:1") is the GPU `index` ("cuda" alone is GPU 0)."""
    if not device or not device.startswith("cuda"):
        return False
    _, _, number = device.partition(":")
    return int(number or 0) == index if (number or "0").isdigit() else False
