"""What the devices are, which one a model goes on, in which dtype, and how much memory is free there."""
from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class DeviceChoice:
    kind: str            # "cuda" | "mps" | "cpu"
    index: int | None    # CUDA ordinal, else None
    dtype: str           # "float32" | "bfloat16" | "float16"
    name: str            # human name: "NVIDIA H200" or "CPU (2 cores)"
    reason: str          # why this choice, shown in the UI

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" else self.kind


def choose_device(policy: str = "auto", dtype: str = "auto") -> DeviceChoice:
    """CUDA (bf16 where supported, else fp16), else Apple MPS (fp16), else CPU (fp32). `policy` overrides."""
    import torch

    want_cuda = policy.startswith("cuda") or policy == "auto"
    if want_cuda and torch.cuda.is_available():
        index = int(policy.split(":")[1]) if ":" in policy else 0
        if index >= torch.cuda.device_count():
            index = 0
        chosen = dtype if dtype != "auto" else ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
        name = torch.cuda.get_device_name(index)
        return DeviceChoice("cuda", index, chosen, name, f"CUDA GPU found: {name}")
    mps = getattr(torch.backends, "mps", None)
    if policy in ("auto", "mps") and mps is not None and mps.is_available():
        return DeviceChoice("mps", None, dtype if dtype != "auto" else "float16", "Apple GPU (MPS)", "Apple MPS found")
    reason = "no GPU found" if policy == "auto" else ("CPU chosen in settings" if policy == "cpu"
                                                      else f"{policy} asked for but not available")
    # bf16 brings no speed on the CPUs we measured, and fp32 keeps small models' text stable.
    return DeviceChoice("cpu", None, dtype if dtype != "auto" else "float32",
                        f"CPU ({psutil.cpu_count(logical=True)} cores)", reason)


def free_memory(device: DeviceChoice) -> tuple[int, int]:
    """(free, total) bytes on the device, measured now."""
    if device.kind == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info(device.index or 0)
        return int(free), int(total)
    vm = psutil.virtual_memory()
    return int(vm.available), int(vm.total)


def dtype_size(dtype: str) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2}.get(dtype, 4)


def release_memory(device: DeviceChoice) -> None:
    """Give freed tensors back: Python's collector, then CUDA's cache (the allocator keeps blocks otherwise)."""
    import gc

    gc.collect()
    if device.kind == "cuda":
        import torch

        torch.cuda.empty_cache()
    else:
        _trim_malloc()


def _trim_malloc() -> None:
    # glibc keeps freed arenas; malloc_trim hands them back so RSS reflects the unload.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
