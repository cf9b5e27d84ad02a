"""What a job's processes are and hold, and how to stop all of them (psutil, NVML for GPU bytes).

A worker runs in its own session (start_new_session=True), so its process group id is its pid: a
child that escaped the tree (re-parented after its parent died) is still found by its group.
A process is identified by pid AND create time, so a recycled pid is never mistaken for a job.
"""
from __future__ import annotations

import os
import signal
import time

import psutil

# Two readings of one process's create time agree to the tick; a recycled pid differs by far more.
_CREATE_TIME_TOLERANCE_S = 0.05


def process_if_same(pid: int | None, started: float | None) -> psutil.Process | None:
    """The live process `pid` if it is the one that started at `started`, else None (gone, zombie, reused)."""
    if not pid:
        return None
    try:
        proc = psutil.Process(int(pid))
        if started is not None and abs(proc.create_time() - float(started)) > _CREATE_TIME_TOLERANCE_S:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def tree(root: psutil.Process) -> list[psutil.Process]:
    """The root, its descendants, and any process left in its process group (orphans of a dead child)."""
    members: dict[int, psutil.Process] = {}
    try:
        members[root.pid] = root
        for child in root.children(recursive=True):
            members[child.pid] = child
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    for proc in group_members(root.pid):
        members.setdefault(proc.pid, proc)
    return [p for p in members.values() if is_alive(p)]


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes whose process group is `pgid` (the worker's own group, see module docstring)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and os.getpgid(proc.pid) == pgid and is_alive(proc):
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return found


def signal_all(procs: list[psutil.Process], sig: int) -> int:
    """Send `sig` to each process still alive; returns how many got it."""
    sent = 0
    for proc in procs:
        try:
            proc.send_signal(sig)
            sent += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sent


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` s for the processes to end; returns those still alive (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if is_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if is_alive(p)]
    return alive


def kill_tree(root: psutil.Process, grace_s: float = 10.0) -> dict:
    """SIGTERM the whole tree, SIGKILL what is left after `grace_s`. Blocking; for callers with no loop."""
    members = tree(root)
    signal_all(members, signal.SIGTERM)
    left = wait_gone(members, grace_s)
    members += [p for p in tree(root) if p.pid not in {m.pid for m in members}]
    if left:
        signal_all(left + tree(root), signal.SIGKILL)
        left = wait_gone(left, 5.0)
    return {"signalled": len(members), "killed": len(left) == 0, "escalated": bool(left)}


class UsageMeter:
    """Resident memory, CPU and GPU bytes of one job's process tree. Keeps psutil handles between
    readings because cpu_percent() measures since the previous call on the same handle."""

    def __init__(self, root: psutil.Process):
        self.root = root
        self._procs: dict[int, psutil.Process] = {}

    def read(self) -> dict:
        current = tree(self.root)
        rss = cpu = 0.0
        for proc in current:
            known = self._procs.setdefault(proc.pid, proc)
            try:
                rss += known.memory_info().rss
                cpu += known.cpu_percent(None)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self._procs = {p.pid: self._procs[p.pid] for p in current if p.pid in self._procs}
        return {"rss_bytes": int(rss), "cpu_percent": round(cpu, 1),
                "gpu_bytes": gpu_bytes({p.pid for p in current}), "processes": len(current)}


_nvml_absent = False


def gpu_bytes(pids: set[int]) -> int | None:
    """GPU memory the given processes hold, over every GPU; None when there is no NVML or no GPU."""
    global _nvml_absent
    if _nvml_absent:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:   # no library, no driver, no GPU: the figure does not exist here; do not ask again
        _nvml_absent = True
        return None
    try:
        total = 0
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid in pids and proc.usedGpuMemory:
                    total += int(proc.usedGpuMemory)
        return total
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
