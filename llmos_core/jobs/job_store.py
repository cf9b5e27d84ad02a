"""The job records: every query the scheduler makes about jobs in SQLite, and where their logs are.

Rows are returned decoded (params and result as dicts, flags as bools). A state change is one
guarded UPDATE (`... WHERE state = 'queued'`), so two processes acting at once cannot both win:
the methods that change state say whether they did (rowcount). The tables are in llmos_core/store.py.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import JobError
from ..store import Store


class JobStore:
    def __init__(self, store: Store):
        self.store = store

    # ---- reading ----
    def get(self, job_id: int) -> dict:
        rows = self.store.query("SELECT * FROM jobs WHERE id = ?", (int(job_id),))
        if not rows:
            raise JobError(f"there is no job {job_id}", "see `python -m llmos_core jobs list` or the Jobs page")
        return _decode(rows[0])

    def list(self, states=None, kind: str | None = None, limit: int = 500, owner: int | None = None) -> list[dict]:
        """Newest first; `owner`: only that user's jobs (None: everyone's)."""
        sql, params = "SELECT * FROM jobs WHERE 1 = 1", []
        if owner is not None:
            sql += " AND owner = ?"
            params.append(int(owner))
        if states:
            states = [states] if isinstance(states, str) else list(states)
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params += states
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        return [_decode(r) for r in self.store.query(sql + " ORDER BY id DESC LIMIT ?", (*params, int(limit)))]

    def queued(self) -> list[dict]:
        """Queued jobs in the order they may start: highest priority first, then oldest."""
        return [_decode(r) for r in self.store.query(
            "SELECT * FROM jobs WHERE state = 'queued' ORDER BY priority DESC, created, id")]

    def busy(self) -> bool:
        return bool(self.store.query("SELECT 1 FROM jobs WHERE state IN ('queued', 'running') LIMIT 1"))

    def cancel_requested(self) -> set[int]:
        return {r["id"] for r in self.store.query("SELECT id FROM jobs WHERE state = 'running' AND cancel_requested = 1")}

    def metrics(self, job_id: int) -> list[dict]:
        rows = self.store.query("SELECT step, ts, data FROM job_metrics WHERE job_id = ? ORDER BY step, ts",
                                (int(job_id),))
        return [{"step": r["step"], "ts": r["ts"], **json.loads(r["data"])} for r in rows]

    def usage(self, job_id: int) -> list[dict]:
        return self.store.query("SELECT ts, rss_bytes, cpu_percent, gpu_bytes, processes FROM job_usage"
                                " WHERE job_id = ? ORDER BY ts", (int(job_id),))

    # ---- writing from the API (any process) ----
    def insert(self, kind: str, params: dict, priority: int, device: str, est_memory: int, est_seconds,
               description: str, rerun_of: int | None, log_path_of, owner: int = 0) -> int:
        """Queue a job; `log_path_of(job_id)` names its log, known only once the id is."""
        with self.store.transaction() as conn:
            job_id = conn.execute(
                "INSERT INTO jobs (kind, params, priority, state, device, est_memory, est_seconds, description,"
                " created, rerun_of, owner) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (kind, json.dumps(params, default=str), priority, device, est_memory, est_seconds, description,
                 time.time(), rerun_of, int(owner))).lastrowid
            conn.execute("UPDATE jobs SET log_path = ? WHERE id = ?", (str(log_path_of(job_id)), job_id))
        return job_id

    def cancel_queued(self, job_id: int) -> bool:
        return bool(self.store.execute(
            "UPDATE jobs SET state = 'cancelled', finished = ?, waiting = NULL, message = 'cancelled before it started',"
            " resumable = 0 WHERE id = ? AND state = 'queued'", (time.time(), job_id)).rowcount)

    def request_cancel(self, job_id: int) -> None:
        self.store.execute("UPDATE jobs SET cancel_requested = 1, message = 'cancelling' WHERE id = ?", (job_id,))

    def requeue_to_resume(self, job_id: int, from_state: str) -> bool:
        return bool(self.store.execute(
            "UPDATE jobs SET state = 'queued', resume = 1, cancel_requested = 0, exit_code = NULL, finished = NULL,"
            " pid = NULL, pid_started = NULL, waiting = NULL, message = 'queued to resume' WHERE id = ? AND state = ?",
            (job_id, from_state)).rowcount)

    def delete(self, job_id: int) -> bool:
        return bool(self.store.execute("DELETE FROM jobs WHERE id = ? AND state != 'running'", (int(job_id),)).rowcount)

    # ---- writing from the loop ----
    def set_waiting(self, job_id: int, reason: str) -> None:
        self.store.execute("UPDATE jobs SET waiting = ? WHERE id = ? AND state = 'queued'", (reason, job_id))

    def claim(self, job_id: int) -> bool:
        """queued -> running, before its worker starts; False when it was cancelled or deleted meanwhile."""
        return bool(self.store.execute(
            "UPDATE jobs SET state = 'running', started = ?, runs = runs + 1, waiting = NULL, pid = NULL,"
            " pid_started = NULL, exit_code = NULL, finished = NULL, cancel_requested = 0, message = 'starting'"
            " WHERE id = ? AND state = 'queued'", (time.time(), job_id)).rowcount)

    def requeue_unstarted(self, job_id: int, message: str) -> bool:
        """running -> queued for a job whose worker never began (Ray gave up placing it): admitted again."""
        return bool(self.store.execute(
            "UPDATE jobs SET state = 'queued', started = NULL, ray_job_id = NULL, waiting = NULL, message = ?"
            " WHERE id = ? AND state = 'running' AND pid IS NULL AND cancel_requested = 0", (message, job_id)).rowcount)

    def note_before_start(self, job_id: int, message: str) -> None:
        """A launched job's message until its worker begins (its first act is to write its pid)."""
        self.store.execute("UPDATE jobs SET message = ? WHERE id = ? AND state = 'running' AND pid IS NULL",
                           (message, job_id))

    def set_message(self, job_id: int, message: str) -> None:
        self.store.execute("UPDATE jobs SET message = ? WHERE id = ?", (message, job_id))

    def update(self, job_id: int, **columns) -> None:
        """Set the given columns (names come from this package's code, never from input)."""
        if not columns:
            return
        sets = ", ".join(f"{name} = ?" for name in columns)
        self.store.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*columns.values(), job_id))

    def end_if_running(self, job_id: int, state: str, message: str, resumable: bool) -> bool:
        """Record the end of a job whose worker could not record it; False if it did meanwhile."""
        return bool(self.store.execute(
            "UPDATE jobs SET state = ?, finished = ?, resumable = ?, message = ? WHERE id = ? AND state = 'running'",
            (state, time.time(), int(resumable), message, job_id)).rowcount)

    def fail_to_start(self, job_id: int, message: str) -> None:
        self.store.execute("UPDATE jobs SET state = 'failed', finished = ?, message = ? WHERE id = ?",
                           (time.time(), message, job_id))

    def add_usage(self, job_id: int, reading: dict) -> None:
        self.store.execute("INSERT INTO job_usage (job_id, ts, rss_bytes, cpu_percent, gpu_bytes, processes)"
                           " VALUES (?, ?, ?, ?, ?, ?)", (job_id, time.time(), reading["rss_bytes"],
                                                          reading["cpu_percent"], reading["gpu_bytes"],
                                                          reading["processes"]))
        self.store.execute("UPDATE jobs SET peak_memory = MAX(COALESCE(peak_memory, 0), ?) WHERE id = ?",
                           (reading["rss_bytes"], job_id))

    def add_event(self, kind: str, subject: str, message: str, **data) -> None:
        self.store.add_event(kind, subject, message, **data)


def log_path(jobs_dir: Path, job_id: int) -> Path:
    return jobs_dir / str(int(job_id)) / "job.log"


def read_tail(path: Path, lines: int = 50) -> str:
    """The last `lines` lines of a job's log ("" before it exists), read from its end."""
    if not path.exists():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - max(lines, 1) * 400))   # about 400 bytes a line is plenty
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _decode(row: dict) -> dict:
    row = dict(row)
    row["params"] = json.loads(row["params"] or "{}")
    row["result"] = json.loads(row["result"] or "{}")
    for flag in ("resumable", "cancel_requested", "resume"):
        row[flag] = bool(row[flag])
    return row
