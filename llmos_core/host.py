"""The host through psutil: CPU per core, load, RAM and swap, disk and network rates, and the process list.

The only module that touches psutil for monitoring. Percentages and rates are computed here from
counter deltas between two readings (psutil's own cpu_percent keeps one baseline per process, which
any other caller would disturb). The first reading has no delta: its rates and percentages are None.
Deltas use the monotonic clock, so a wall-clock jump never makes a rate negative or huge.
"""
from __future__ import annotations

import os
import sys
import time
from types import ModuleType
from typing import Any, Callable

import psutil as _psutil

_PROCESS_ATTRS = ["pid", "ppid", "name", "cpu_times", "memory_info", "create_time"]


class HostReader:
    """Reads the host. Not thread-safe: one sampler thread owns it."""

    def __init__(self, ps: ModuleType | Any = _psutil, clock: Callable[[], float] = time.monotonic):
        self.ps = ps
        self._clock = clock
        self._last_cpu: list | None = None                  # per-core cpu_times of the previous reading
        self._last_io: tuple[float, Any, Any] | None = None  # (t, disk counters, net counters)
        self._last_proc: dict[tuple[int, float], tuple[float, float]] = {}   # (pid, created) -> (t, cpu seconds)
        self._details: dict[tuple[int, float], tuple[str | None, str]] = {}
        self.cores = ps.cpu_count(logical=True) or 1
        self.vanished = 0                                   # processes gone between listing and reading
        # The real psutil on Linux: list processes from /proc/<pid>/stat directly (a third of psutil's cost).
        self._fast = ps is _psutil and sys.platform.startswith("linux") and os.path.isdir("/proc")
        if self._fast:
            self._ticks = os.sysconf("SC_CLK_TCK")
            self._page = os.sysconf("SC_PAGE_SIZE")
            self._boot = _psutil.boot_time()

    def read(self) -> dict:
        """CPU, load, memory, disk and network figures now."""
        now = self._clock()
        cpu = self._cpu()
        vm, sw = self.ps.virtual_memory(), self.ps.swap_memory()
        try:
            load = [round(x, 2) for x in self.ps.getloadavg()]
        except (AttributeError, OSError):
            load = None
        disk = _safe(self.ps.disk_io_counters)
        net = _safe(self.ps.net_io_counters)
        rates = {"disk_read_bps": None, "disk_write_bps": None, "net_sent_bps": None, "net_recv_bps": None}
        if self._last_io is not None:
            t0, disk0, net0 = self._last_io
            dt = now - t0
            if dt > 0:
                if disk is not None and disk0 is not None:
                    rates["disk_read_bps"] = max(disk.read_bytes - disk0.read_bytes, 0) / dt
                    rates["disk_write_bps"] = max(disk.write_bytes - disk0.write_bytes, 0) / dt
                if net is not None and net0 is not None:
                    rates["net_sent_bps"] = max(net.bytes_sent - net0.bytes_sent, 0) / dt
                    rates["net_recv_bps"] = max(net.bytes_recv - net0.bytes_recv, 0) / dt
        self._last_io = (now, disk, net)
        return {"cpu": {**cpu, "load": load, "cores": self.cores},
                "mem": {"total": vm.total, "used": vm.total - vm.available, "available": vm.available,
                        "percent": vm.percent, "swap_total": sw.total, "swap_used": sw.used,
                        "swap_percent": sw.percent},
                "io": rates}

    def processes(self) -> list[dict]:
        """Every process: pid, ppid, name, cpu (% of one core since the last call, None at first), rss."""
        now = self._clock()
        listing = self._proc_stat_listing() if self._fast else self._psutil_listing()
        rows, seen = [], {}
        for pid, ppid, name, created, cpu_s, rss in listing:
            key = (pid, created or 0.0)
            cpu = None
            if cpu_s is not None:
                seen[key] = (now, cpu_s)
                before = self._last_proc.get(key)
                if before is not None and now > before[0]:
                    cpu = max(cpu_s - before[1], 0.0) / (now - before[0]) * 100.0
            rows.append({"pid": pid, "ppid": ppid, "name": name or "?", "created": created, "cpu": cpu,
                         "rss": rss, "_key": key})
        self._last_proc = seen
        self._details = {k: v for k, v in self._details.items() if k in seen}
        return rows

    def details(self, row: dict) -> tuple[str | None, str]:
        """(user, command line) of a listed process, read once per process and cached; (None, '') if it is gone."""
        key = row["_key"]
        if key not in self._details:
            try:
                proc = self.ps.Process(row["pid"])
                self._details[key] = (proc.username(), " ".join(proc.cmdline())[:300])
            except self.ps.NoSuchProcess:
                self.vanished += 1
                self._details[key] = (None, "")
            except (self.ps.AccessDenied, self.ps.ZombieProcess, OSError, KeyError):
                self._details[key] = (None, "")
        return self._details[key]

    def _psutil_listing(self):
        for proc in self.ps.process_iter(_PROCESS_ATTRS, ad_value=None):   # vanished ones are skipped by psutil
            info = proc.info
            times, memory = info["cpu_times"], info["memory_info"]
            yield (info["pid"], info["ppid"], info["name"], info["create_time"],
                   None if times is None else times.user + times.system, None if memory is None else memory.rss)

    def _proc_stat_listing(self):
        """Linux: one read of /proc/<pid>/stat per process gives all we list (psutil reads three files for it)."""
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    data = f.read()
            except OSError:        # ended between listing and reading
                self.vanished += 1
                continue
            close = data.rfind(b")")   # the name may hold spaces and parentheses: it ends at the last ')'
            name = data[data.find(b"(") + 1:close].decode(errors="replace")
            fields = data[close + 2:].split()
            # fields: 0 state, 1 ppid, 11 utime, 12 stime (clock ticks), 19 starttime (ticks after boot), 21 rss (pages)
            yield (int(entry), int(fields[1]), name, round(self._boot + int(fields[19]) / self._ticks, 2),
                   (int(fields[11]) + int(fields[12])) / self._ticks, int(fields[21]) * self._page)

    def _cpu(self) -> dict:
        """Busy share per core and in total from cpu_times deltas (idle and iowait count as not busy)."""
        now = self.ps.cpu_times(percpu=True)
        before, self._last_cpu = self._last_cpu, now
        if before is None or len(before) != len(now):
            return {"total": None, "per_core": None}
        per_core, busy_sum, all_sum = [], 0.0, 0.0
        for a, b in zip(before, now):
            total = _total(b) - _total(a)
            idle = (b.idle - a.idle) + (getattr(b, "iowait", 0.0) - getattr(a, "iowait", 0.0))
            busy = max(total - idle, 0.0)
            per_core.append(round(100.0 * busy / total, 1) if total > 0 else 0.0)
            busy_sum, all_sum = busy_sum + busy, all_sum + max(total, 0.0)
        return {"total": round(100.0 * busy_sum / all_sum, 1) if all_sum > 0 else 0.0, "per_core": per_core}


def _total(times) -> float:
    # Linux counts guest time inside user time as well: subtract it, as psutil does.
    return sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _safe(fn: Callable):
    """psutil counters that a container may not have (no /proc/diskstats): None instead of an error."""
    try:
        return fn()
    except (OSError, RuntimeError, AttributeError):
        return None
