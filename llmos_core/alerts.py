"""Alerts: thresholds over the monitor's snapshots that become events in the store.

A rule fires when its figure crosses its threshold and ends when the figure falls back below the
threshold less a margin (hysteresis: a figure hovering at the line does not fire every second).
Firing writes an "alert" event and ending an "alert_end" event; the Monitor page draws them as
markers, open pages show a toast, Home lists the ones still firing, `monitor --watch` prints them.

Thresholds come from the environment (LLMOS_ALERT_<FIELD>, like every setting); 0 turns a rule off.
`evaluate` is a pure function of a snapshot; `AlertTracker` keeps what fires and writes the events.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field, fields
from typing import Callable

from .errors import SettingsError, format_bytes
from .store import Store

log = logging.getLogger("llmos.alerts")

ALERT_KINDS = ("alert", "alert_end")
_HYSTERESIS = 0.05        # a firing rule ends below 95% of its threshold
_REFIRE_S = 60.0          # a rule that ended fires again no sooner than this


@dataclass
class AlertThresholds:
    memory_percent: float = field(default=90.0, metadata={
        "help": "alert when RAM in use passes this % of the total (LLMOS_ALERT_MEMORY_PERCENT; 0: off)"})
    gpu_temp_c: float = field(default=85.0, metadata={
        "help": "alert when a GPU is hotter than this, in °C (LLMOS_ALERT_GPU_TEMP_C; 0: off)"})
    gpu_memory_percent: float = field(default=95.0, metadata={
        "help": "alert when a GPU's memory in use passes this % (LLMOS_ALERT_GPU_MEMORY_PERCENT; 0: off)"})
    swap_mb: float = field(default=256.0, metadata={
        "help": "alert when swap in use passes this many MB (LLMOS_ALERT_SWAP_MB; 0: off)"})
    job_over_estimate: float = field(default=1.0, metadata={
        "help": "alert when a job's memory passes its estimate times this (LLMOS_ALERT_JOB_OVER_ESTIMATE; 0: off)"})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value < 0 or value != value:
                raise SettingsError(f"alert threshold {f.name} must be a number, 0 or more, got {value!r}",
                                    f"set LLMOS_ALERT_{f.name.upper()} to a number, or 0 to turn the rule off")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "AlertThresholds":
        env = dict(os.environ if env is None else env)
        values = {}
        for f in fields(cls):
            raw = env.get(f"LLMOS_ALERT_{f.name.upper()}", "").strip()
            if raw:
                try:
                    values[f.name] = float(raw)
                except ValueError as exc:
                    raise SettingsError(f"LLMOS_ALERT_{f.name.upper()}={raw!r} is not a number",
                                        "write a number like 90, or 0 to turn the rule off") from exc
        return cls(**values)


@dataclass(frozen=True)
class Alert:
    key: str          # what fires: "memory", "gpu0 temperature", "job 12 memory"
    message: str      # for people: "RAM 93% in use (threshold 90%)"
    value: float
    threshold: float


def evaluate(snapshot: dict, limits: AlertThresholds, jobs: dict[int, dict] | None = None,
             firing: frozenset[str] | set[str] = frozenset()) -> dict[str, Alert]:
    """The alerts a snapshot sets off, by key. `jobs` maps a running job's id to its row (est_memory,
    device); `firing` holds the keys that fire now, which end only below the lower, hysteresis line."""
    found: dict[str, Alert] = {}

    def check(key: str, value: float | None, threshold: float, message: Callable[[], str]) -> None:
        if not threshold or value is None:
            return
        line = threshold * (1 - _HYSTERESIS) if key in firing else threshold
        if value > line:
            found[key] = Alert(key, message(), float(value), float(threshold))

    mem = snapshot.get("mem") or {}
    check("memory", mem.get("percent"), limits.memory_percent,
          lambda: f"RAM {mem['percent']:.0f}% in use ({format_bytes(mem.get('used'))}), "
                  f"threshold {limits.memory_percent:.0f}%")
    swap = mem.get("swap_used")
    check("swap", None if swap is None else swap / 1024**2, limits.swap_mb,
          lambda: f"swap in use: {format_bytes(swap)}, threshold {limits.swap_mb:.0f} MB")
    for g in snapshot.get("gpus") or []:
        name = f"GPU {g['index']}"
        check(f"gpu{g['index']} temperature", g.get("temp_c"), limits.gpu_temp_c,
              lambda: f"{name} at {g['temp_c']} °C, threshold {limits.gpu_temp_c:.0f} °C")
        used, total = g.get("mem_used"), g.get("mem_total")
        share = None if used is None or not total else 100.0 * used / total
        check(f"gpu{g['index']} memory", share, limits.gpu_memory_percent,
              lambda: f"{name} memory {share:.0f}% in use ({format_bytes(used)} of {format_bytes(total)}), "
                      f"threshold {limits.gpu_memory_percent:.0f}%")
    for part, totals in (snapshot.get("llmos") or {}).items():
        job_id = _job_id(part)
        job = (jobs or {}).get(job_id) if job_id is not None else None
        if not job or not job.get("est_memory"):
            continue
        on_gpu = str(job.get("device", "cpu")).startswith("cuda")
        used = (totals.get("gpu_mem") if on_gpu else totals.get("rss")) or 0
        estimate = job["est_memory"]
        check(f"job {job_id} memory", used / estimate, limits.job_over_estimate,
              lambda: f"{totals.get('label') or part} uses {format_bytes(used)} of "
                      f"{'GPU memory' if on_gpu else 'RAM'}, above its estimate of {format_bytes(estimate)}")
    return found


def _job_id(part: str) -> int | None:
    """'job 12' -> 12 (the monitor's name for a job's process tree); anything else -> None."""
    head, _, tail = part.partition(" ")
    return int(tail) if head == "job" and tail.isdigit() else None


class AlertTracker:
    """Turns each snapshot's alerts into events: "alert" when a rule starts firing, "alert_end" when it stops.

    Called from the sampler thread after every sample (Sampler.listeners), so alerts are recorded
    whether or not anyone watches. Store failures are logged and skipped: an alert is never worth
    stopping the monitor for.
    """

    def __init__(self, store: Store | None, limits: AlertThresholds | None = None,
                 clock: Callable[[], float] = time.time, record: bool = True):
        self.store = store
        self.record = record      # False: only say what fires (the CLI's --watch; the engine records)
        self.limits = limits or AlertThresholds.from_env()
        self._clock = clock
        self.firing: dict[str, Alert] = {}
        self._ended_at: dict[str, float] = {}

    def check(self, snapshot: dict) -> tuple[list[Alert], list[Alert]]:
        """Evaluate one snapshot; returns (alerts that started, alerts that ended) and records both."""
        now = self._clock()
        found = evaluate(snapshot, self.limits, self._running_jobs(), frozenset(self.firing))
        started = [a for key, a in found.items()
                   if key not in self.firing and now - self._ended_at.get(key, -_REFIRE_S) >= _REFIRE_S]
        ended = [a for key, a in self.firing.items() if key not in found]
        for alert in ended:
            self._ended_at[alert.key] = now
            self._record("alert_end", alert, f"ended: {alert.key}")
        for alert in started:
            self._record("alert", alert, alert.message)
        self.firing = {k: a for k, a in found.items() if k in self.firing or a in started}
        return started, ended

    def _running_jobs(self) -> dict[int, dict]:
        if self.store is None:
            return {}
        try:
            rows = self.store.query("SELECT id, est_memory, device FROM jobs WHERE state = 'running'")
        except sqlite3.Error:
            return {}
        return {int(r["id"]): r for r in rows}

    def _record(self, kind: str, alert: Alert, message: str) -> None:
        if self.store is None or not self.record:
            return
        try:
            self.store.add_event(kind, alert.key, message, value=alert.value, threshold=alert.threshold)
        except sqlite3.Error as exc:
            log.warning("alert not recorded (%s): %s", exc, message)


def recent_alerts(store: Store | None, since: float, limit: int = 50) -> list[dict]:
    """Alert events since `since`, oldest first: {"ts", "kind", "subject", "message"}."""
    if store is None:
        return []
    try:
        rows = store.events(since=since, kinds=ALERT_KINDS, limit=limit)
    except sqlite3.Error:
        return []
    return [{"ts": r["ts"], "kind": r["kind"], "subject": r["subject"], "message": r["message"]}
            for r in reversed(rows)]


def firing_now(store: Store | None, since: float) -> list[dict]:
    """The alerts that started since `since` and have not ended: the last event per subject is an "alert"."""
    last: dict[str, dict] = {}
    for event in recent_alerts(store, since, limit=500):
        last[event["subject"]] = event
    return [e for e in last.values() if e["kind"] == "alert"]
