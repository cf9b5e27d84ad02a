"""What a job's code sees while it runs in its worker process.

The worker builds one JobContext and passes it to the kind's `run(ctx)`. Progress and metrics go
to the store (the pages and the CLI read them from there); the log goes to the job's log file.
Cancel arrives as SIGTERM: the worker sets a flag that `ctx.cancelled()` reads, so a training loop
can save a checkpoint and stop cleanly before the scheduler escalates to SIGKILL.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..settings import Settings
from ..store import Store


@dataclass
class JobContext:
    job_id: int
    kind: str
    params: dict
    settings: Settings
    store: Store
    work_dir: Path                 # settings.jobs_dir / str(job_id): checkpoints, outputs, the log
    resume: bool = False           # True when this run continues an interrupted or cancelled one
    owner: int = 0                 # the user id the job belongs to (its row's owner): whose files it reads
    log: logging.Logger = field(default=None)  # type: ignore[assignment]
    _cancel: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.log is None:
            self.log = logging.getLogger(f"llmos.job.{self.job_id}")

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "job.log"

    def progress(self, fraction: float, message: str = "") -> None:
        """0..1 done, with a short line of what is happening; shown on the Jobs page."""
        self.store.execute("UPDATE jobs SET progress = ?, message = ? WHERE id = ?",
                           (max(0.0, min(float(fraction), 1.0)), message, self.job_id))

    def metric(self, step: int, **values: float) -> None:
        """One row of figures at a step (loss, lr, tokens_per_s, ...); charted live."""
        self.store.execute("INSERT INTO job_metrics (job_id, step, ts, data) VALUES (?, ?, ?, ?)",
                           (self.job_id, int(step), time.time(), json.dumps(values)))

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()
