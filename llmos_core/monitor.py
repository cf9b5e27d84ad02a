"""The monitor: one sampler thread per server, a ring buffer of the last hour, and a history in SQLite.

Every second the Sampler reads the host (host.py, psutil) and the GPUs (gpu.py, NVML), names the
processes of LLM OS (the server and the models it holds, each job and its children, from the jobs
table), and keeps:
  - `latest()`: the full snapshot, with the process table;
  - a ring buffer of compact samples (no process table), an hour at full rate;
  - a downsampled history in the table monitor_samples: 10 s rows for a day, 1 min rows for a week.
Nothing here raises into the thread: a GPU that fails, a process that vanishes, a locked or full
database, a clock that jumps are each noted in `lost` (shown by the page) and sampling goes on.
"""
from __future__ import annotations

import collections
import json
import logging
import math
import sqlite3
import threading
import time
from typing import Any, Callable

from .downsample import average
from .errors import format_bytes
from .gpu import GpuReader
from .host import HostReader
from .store import Store

log = logging.getLogger("llmos.monitor")

WINDOWS: dict[str, int] = {"5 min": 300, "1 h": 3600, "1 day": 86400, "1 week": 7 * 86400}
# (seconds per row, seconds kept): a day at 10 s, a week at 1 min.
RESOLUTIONS: tuple[tuple[int, int], ...] = ((10, 86400), (60, 7 * 86400))
# Events drawn as markers on the charts.
MARKER_KINDS = ("job_start", "job_end", "load", "unload", "evict", "idle_unload", "refuse", "load_failed",
                "api_request")
# Job states after which a pid in the jobs table no longer belongs to the job.
_JOB_DONE_STATES = ("done", "succeeded", "completed", "failed", "cancelled", "canceled", "interrupted", "error")
_KIND_NOUN = {"train": "training job", "translate": "translation job", "benchmark": "benchmark job"}
_TOP_N = 15                 # processes per ranking (CPU, RAM, GPU memory) kept in the table
_CLOCK_JUMP_S = 2.0         # wall and monotonic clocks disagreeing by more than this is a jump
_UNSAVED_MAX = 2000         # history rows kept in memory while the database refuses writes
_LOST_MAX = 50
_BACKOFF_MAX_S = 60.0       # longest pause after failures in a row (disk full, database locked for minutes)
HOUSEKEEPING_S = 3600.0     # how often the housekeeping callback (retention) runs


class Sampler:
    """Samples at `interval_s` in one daemon thread; readers call latest(), history(), markers()."""

    def __init__(self, store: Store | None = None, *, host: HostReader | None = None, gpu: GpuReader | None = None,
                 interval_s: float = 1.0, capacity: int = 3600, server_pid: int | None = None,
                 resident: Callable[[], list[dict]] | None = None, primary_pid: Callable[[], int | None] | None = None,
                 persist: bool = True, wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic,
                 housekeeping: Callable[[], object] | None = None):
        self.store = store
        self.host = host or HostReader(clock=mono)
        self.gpu = gpu or GpuReader(clock=mono)
        self.interval_s = interval_s
        self.server_pid = server_pid
        self.resident = resident or (lambda: [])
        self.primary_pid = primary_pid or (lambda: None)
        self.persist = persist and store is not None
        self.housekeeping = housekeeping   # run from this thread every HOUSEKEEPING_S (the primary's pruning)
        self._wall, self._mono = wall, mono
        self._ring: collections.deque[dict] = collections.deque(maxlen=capacity)
        self._latest: dict | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._buckets: dict[int, list[dict]] = {res: [] for res, _ in RESOLUTIONS}
        self._unsaved: list[tuple[int, float, str]] = []
        self._last_prune = 0.0
        self._last_tick: tuple[float, float] | None = None   # (wall, mono) of the previous sample
        self._jobs: dict[int, dict] = {}                       # pid -> job row, refreshed every sample
        self._job_labels: dict[int, str] = {}                  # job id -> "training job 12 (LoRA on ...)"
        self.lost: collections.deque[dict] = collections.deque(maxlen=_LOST_MAX)
        self.samples_taken = 0
        self.failures_in_row = 0
        self.cpu_seconds = 0.0                                 # the sampler thread's own CPU time, for the bench
        self.listeners: list[Callable[[dict], Any]] = []       # called with each snapshot (alerts.AlertTracker.check)

    # ---- the thread ----
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="llmos-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.gpu.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        if self.store is not None:
            # This thread's own connection: a locked database must cost a sample 0.2 s, not the 30 s default.
            try:
                self.store.connection().execute("PRAGMA busy_timeout=200")
            except sqlite3.Error as exc:
                self._note(f"the database could not be opened: {exc}")
        next_at = self._mono()
        housekeeping_at = next_at + 60.0   # not in the engine's busy first minute
        try:
            while not self._stop.is_set():
                started = time.thread_time()
                try:
                    self.sample_once()
                    self.failures_in_row = 0
                except Exception as exc:   # a bug, a full disk, a locked database: say it, keep going
                    self.failures_in_row += 1
                    self._report(f"a sample failed: {type(exc).__name__}: {exc}", exc)
                if self.housekeeping is not None and self._mono() >= housekeeping_at:
                    housekeeping_at = self._mono() + HOUSEKEEPING_S
                    try:
                        self.housekeeping()
                    except Exception as exc:
                        self._report(f"housekeeping failed: {type(exc).__name__}: {exc}", exc)
                self.cpu_seconds += time.thread_time() - started
                # Fixed-rate schedule on the monotonic clock; after a stall (suspend, overload) skip, never catch up.
                # Failures in a row back off (2, 4, 8... intervals, at most a minute) instead of spinning.
                pause = min(self.interval_s * 2 ** min(self.failures_in_row, 16), _BACKOFF_MAX_S) \
                    if self.failures_in_row else self.interval_s
                next_at += pause
                now = self._mono()
                if next_at < now:
                    next_at = now + pause
                self._stop.wait(next_at - now)
        finally:
            if self.store is not None:
                self.store.close()   # closes this thread's connection only

    # ---- one sample ----
    def sample_once(self) -> dict:
        """Read everything now; update latest, the ring buffer and the history. Returns the full snapshot."""
        wall, mono = self._wall(), self._mono()
        self._check_clock(wall, mono)
        host = self.host.read()
        gpus = self.gpu.read()
        if self.gpu.problem:
            self._note(self.gpu.problem, once=True)
        vanished_before = self.host.vanished
        processes = self._process_table(gpus)
        if self.host.vanished > vanished_before:
            self._note(f"{self.host.vanished - vanished_before} process(es) ended while being read", once=True,
                       routine=True)
        llmos = _llmos_totals(processes)
        sample = {"ts": wall, "cpu": host["cpu"], "mem": host["mem"], "io": host["io"],
                  "gpus": None if gpus is None else [{k: v for k, v in g.items() if k != "processes"} for g in gpus],
                  "llmos": llmos}
        snapshot = {**sample, "gpus": gpus, "gpu_status": self.gpu.reason or "ok", "processes": processes,
                    "models": self._resident_models(), "lost": list(self.lost)}
        with self._lock:
            self._ring.append(sample)
            self._latest = snapshot
        self.samples_taken += 1
        if self.persist:
            self._downsample(sample)
        for listener in self.listeners:
            try:
                listener(snapshot)
            except Exception as exc:   # a listener's bug must not cost the sample
                self._note(f"a listener failed: {type(exc).__name__}: {exc}", once=True)
        return snapshot

    def latest(self) -> dict | None:
        with self._lock:
            return self._latest

    def history(self, window_s: float, max_points: int | None = None) -> list[dict]:
        """Compact samples of the last `window_s` seconds, oldest first: the ring buffer, and before it SQLite.

        `max_points` averages neighbouring samples so a long window stays light to draw.
        """
        now = self._wall()
        since = now - window_s
        with self._lock:
            recent = [s for s in self._ring if s["ts"] >= since]
        older: list[dict] = []
        first = recent[0]["ts"] if recent else now
        if self.store is not None and first - since > 2 * self.interval_s:
            resolution = RESOLUTIONS[0][0] if window_s <= RESOLUTIONS[0][1] else RESOLUTIONS[-1][0]
            older = self._read_history(resolution, since, first)
        samples = older + recent
        if max_points and len(samples) > max_points:
            step = math.ceil(len(samples) / max_points)
            samples = [average(samples[i:i + step]) for i in range(0, len(samples), step)]
        return samples

    def recent(self, count: int) -> list[dict]:
        """The last `count` compact samples, oldest first (the ring buffer only: no database read)."""
        with self._lock:
            return list(self._ring)[-count:]

    def markers(self, window_s: float) -> list[dict]:
        """Events of the window (job start/end, model load/unload/evict...) to draw on the charts, oldest first."""
        if self.store is None:
            return []
        try:
            rows = self.store.events(since=self._wall() - window_s, kinds=MARKER_KINDS, limit=200)
        except sqlite3.Error:
            return []
        return [{"ts": r["ts"], "kind": r["kind"], "subject": r["subject"], "message": r["message"]}
                for r in reversed(rows)]

    def status(self) -> dict:
        return {"running": self.running, "interval_s": self.interval_s, "samples": self.samples_taken,
                "buffered": len(self._ring), "gpu": self.gpu.reason or "ok", "lost": list(self.lost)[-5:],
                "unsaved_rows": len(self._unsaved)}

    # ---- problems ----
    def _report(self, message: str, exc: BaseException) -> None:
        """Log and remember a failure; never raises, since logging itself may be what fails (a full disk)."""
        try:
            log.error("monitor: %s", message, exc_info=exc)
            self._note(message, once=True)
        except Exception:   # nothing is left to tell it to; the next sample tries again
            pass

    def _note(self, message: str, once: bool = False, routine: bool = False) -> None:
        """Remember what was lost; with `once`, a message equal to the last one is not repeated. `routine`:
        expected on a live machine (a process ending mid-read), kept for the page but not logged as a warning."""
        if once and self.lost and self.lost[-1]["message"] == message:
            self.lost[-1]["count"] += 1
            self.lost[-1]["ts"] = self._wall()
            return
        self.lost.append({"ts": self._wall(), "message": message, "count": 1})
        (log.debug if routine else log.warning)("monitor: %s", message)

    def _check_clock(self, wall: float, mono: float) -> None:
        if self._last_tick is not None:
            jump = (wall - self._last_tick[0]) - (mono - self._last_tick[1])
            if abs(jump) > _CLOCK_JUMP_S:
                self._note(f"the clock jumped {'forward' if jump > 0 else 'back'} by {abs(jump):.0f} s; "
                           "the history around it may show a gap or an overlap")
                with self._lock:
                    if jump < 0:   # samples stamped "in the future" would sit wrongly in every window
                        kept = [s for s in self._ring if s["ts"] <= wall]
                        self._ring.clear()
                        self._ring.extend(kept)
                for res in self._buckets:
                    self._buckets[res] = []
        self._last_tick = (wall, mono)

    # ---- attribution ----
    def _process_table(self, gpus: list[dict] | None) -> list[dict]:
        rows = self.host.processes()
        gpu_mem: dict[int, int] = {}
        for g in gpus or []:
            for p in g.get("processes", []):
                if p["mem_used"] is not None:
                    gpu_mem[p["pid"]] = gpu_mem.get(p["pid"], 0) + p["mem_used"]
        gpu_pids = {p["pid"] for g in gpus or [] for p in g.get("processes", [])}
        self._refresh_jobs()
        owners = self._owners(rows)
        for row in rows:
            row["gpu_mem"] = gpu_mem.get(row["pid"], 0 if gpus is not None else None)
            owner = owners.get(row["pid"])
            row["role"], row["label"], row["job_id"] = owner or ("other", row["name"], None)
        chosen: set[int] = {r["pid"] for r in rows if r["role"] != "other" or r["pid"] in gpu_pids}
        for key in ("cpu", "rss", "gpu_mem"):
            ranked = sorted(rows, key=lambda r: r[key] or 0, reverse=True)[:_TOP_N]
            chosen.update(r["pid"] for r in ranked if r[key])
        table = []
        for row in rows:
            if row["pid"] in chosen:
                user, command = self.host.details(row)
                table.append({k: v for k, v in row.items() if k != "_key"} | {"user": user, "command": command})
        table.sort(key=lambda r: r["cpu"] or 0, reverse=True)
        return table

    def _owners(self, rows: list[dict]) -> dict[int, tuple[str, str, int | None]]:
        """pid -> (role, label, job id) for the processes of LLM OS and their children."""
        direct: dict[int, tuple[str, str, int | None]] = {}
        if self.server_pid:
            direct[self.server_pid] = ("server", self._server_label(), None)
        primary = self.primary_pid()
        if primary and primary != self.server_pid:
            direct[primary] = ("engine", f"LLM OS engine (pid {primary}, holds the models)", None)
        created = {r["pid"]: r["created"] for r in rows}
        for pid, job in self._jobs.items():
            started = job.get("pid_started")
            # A pid can be reused after the job ended: trust it only if the process began when the job's did.
            if started and created.get(pid) and abs(created[pid] - started) > 5.0:
                continue
            direct[pid] = ("job", self._job_label(job), job["id"])
        parent = {r["pid"]: r["ppid"] for r in rows}
        owners = dict(direct)
        for pid in parent:
            if pid in owners:
                continue
            seen, up = 0, parent.get(pid)
            while up and seen < 64:   # walk the ancestors: a job's data loaders belong to the job
                if up in direct:
                    role, label, job_id = direct[up]
                    owners[pid] = (f"{role} child", f"{label} · child", job_id)
                    break
                up, seen = parent.get(up), seen + 1
        return owners

    def _server_label(self) -> str:
        models = self._resident_models()
        if not models:
            return "LLM OS server"
        held = ", ".join(f"{m['name']} {format_bytes(m.get('measured_bytes'))}" for m in models)
        return f"LLM OS server: holds {held}"

    def _resident_models(self) -> list[dict]:
        try:
            return [{"name": m["name"], "backend": m.get("backend"), "device": m.get("device"),
                     "measured_bytes": m.get("measured_bytes"), "in_use": m.get("in_use"),
                     "prefix_cache": m.get("prefix_cache")} for m in self.resident()]
        except Exception as exc:   # the manager is closing, or the CLI's engine went away
            self._note(f"the models in memory could not be read: {exc}", once=True)
            return []

    def _refresh_jobs(self) -> None:
        if self.store is None:
            return
        try:
            rows = self.store.query(
                "SELECT * FROM jobs WHERE pid IS NOT NULL AND state NOT IN "
                f"({','.join('?' * len(_JOB_DONE_STATES))}) ORDER BY id", _JOB_DONE_STATES)
        except sqlite3.Error as exc:   # locked or broken: keep the last known jobs
            self._note(f"the jobs table could not be read ({exc}); job names may be stale", once=True)
            return
        self._jobs = {int(r["pid"]): r for r in rows}

    def _job_label(self, job: dict) -> str:
        if job["id"] not in self._job_labels:
            self._job_labels[job["id"]] = describe_job(job["id"], job["kind"], job.get("params") or "{}")
        return self._job_labels[job["id"]]

    # ---- history ----
    def _downsample(self, sample: dict) -> None:
        rows = []
        for res, _ in RESOLUTIONS:
            bucket = self._buckets[res]
            if bucket and int(bucket[0]["ts"] // res) != int(sample["ts"] // res):
                row = average(bucket)
                row["ts"] = (bucket[0]["ts"] // res) * res
                rows.append((res, row["ts"], json.dumps(row)))
                bucket.clear()
            bucket.append(sample)
        if rows or self._unsaved:
            self._save(rows)

    def _save(self, rows: list[tuple[int, float, str]]) -> None:
        pending = self._unsaved + rows
        try:
            with self.store.transaction() as conn:
                conn.executemany("INSERT OR REPLACE INTO monitor_samples (resolution, ts, data) VALUES (?, ?, ?)",
                                 pending)
                now = self._wall()
                if now - self._last_prune > 600:
                    for res, keep in RESOLUTIONS:
                        conn.execute("DELETE FROM monitor_samples WHERE resolution = ? AND ts < ?", (res, now - keep))
                    self._last_prune = now
        except (sqlite3.Error, OSError) as exc:   # locked, full, read-only: keep the rows and try again next time
            dropped = max(len(pending) - _UNSAVED_MAX, 0)
            self._unsaved = pending[dropped:]
            self._note(f"history not saved ({exc}); {len(self._unsaved)} row(s) waiting"
                       + (f", {dropped} dropped" if dropped else ""), once=True)
            return
        if self._unsaved:
            self._note(f"history saved again after {len(self._unsaved)} row(s) waited")
        self._unsaved = []

    def _read_history(self, resolution: int, since: float, until: float) -> list[dict]:
        try:
            rows = self.store.query("SELECT data FROM monitor_samples WHERE resolution = ? AND ts >= ? AND ts < ? "
                                    "ORDER BY ts", (resolution, since, until))
        except sqlite3.Error:
            return []
        return [json.loads(r["data"]) for r in rows]


def describe_job(job_id: int, kind: str, params: str | dict) -> str:
    """'training job 12 (LoRA on gemma-3-270m)': the kind's own describe(), else what the params say."""
    noun = _KIND_NOUN.get(kind, f"{kind} job")
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            params = {}
    detail = ""
    try:
        from .jobs.kinds import kind_module

        detail = kind_module(kind).describe(params)
    except Exception:   # the kind is not installed here, or its describe() failed: the params still say a lot
        method, model = params.get("method"), params.get("model")
        detail = " on ".join(str(x) for x in (method, model) if x) or str(params.get("name") or "")
    return f"{noun} {job_id}" + (f" ({detail})" if detail else "")


def _llmos_totals(processes: list[dict]) -> dict:
    """CPU, RSS and GPU memory per LLM OS part ('server', 'job 12'), children included: the per-job series."""
    totals: dict[str, dict] = {}
    for p in processes:
        if p["role"] == "other":
            continue
        part = f"job {p['job_id']}" if p["job_id"] is not None else p["role"].split()[0]
        t = totals.setdefault(part, {"cpu": 0.0, "rss": 0, "gpu_mem": 0, "label": p["label"].split(" · ")[0]})
        t["cpu"] += p["cpu"] or 0.0
        t["rss"] += p["rss"] or 0
        t["gpu_mem"] += p["gpu_mem"] or 0
    return totals
