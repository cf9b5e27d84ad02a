"""Scheduler speed against a bare subprocess.Popen of the same worker, measured in the same run.

1. submit-to-start: from submit() (or Popen()) to the job's first progress report in the store,
   with memory free (target: under 1 s).
2. cancel-to-memory-returned: a job holding MEMORY_MB is cancelled (or the bare worker gets SIGTERM);
   time until every process of its tree has exited, so the kernel has taken their memory back
   (target: under 3 s). The machine-wide "available" figure is shared with other users of the
   machine and too noisy to time against; it is printed as a check, when it rose by 90% in 10 s.
Prints each figure and its ratio to the baseline. Usage: python bench/scheduler.py [--runs N]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmos_core.jobs import benchmark, resources  # noqa: E402
from llmos_core.jobs.scheduler import JobScheduler  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402
from llmos_core.store import Store  # noqa: E402

MEMORY_MB = 1024


def first_progress(store: Store, job_id: int, timeout: float = 30.0) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        row = store.query("SELECT message FROM jobs WHERE id = ?", (job_id,))[0]
        if row["message"].endswith(" s") and " of " in row["message"]:
            return time.perf_counter()
        time.sleep(0.002)
    raise TimeoutError(f"job {job_id} never reported progress")


def tree_of(store: Store, job_id: int) -> list[psutil.Process]:
    pid = store.query("SELECT pid FROM jobs WHERE id = ?", (job_id,))[0]["pid"]
    return resources.tree(psutil.Process(pid))


def memory_back(procs: list[psutil.Process], before: int, amount: int, seen: list) -> float:
    """Time when the last process of the tree exited; notes whether the available figure followed."""
    while any(resources.is_alive(p) for p in procs):
        time.sleep(0.002)
    done = time.perf_counter()
    deadline = done + 10
    while time.perf_counter() < deadline and psutil.virtual_memory().available - before < 0.9 * amount:
        time.sleep(0.01)
    seen.append(psutil.virtual_memory().available - before >= 0.9 * amount)
    return done


def bare_job(sched: JobScheduler, params: dict) -> int:
    """A row the worker can run, written directly: the baseline skips the scheduler entirely."""
    clean = benchmark.validate(params)
    return sched.store.execute("INSERT INTO jobs (kind, params, state, created, started) VALUES "
                               "('benchmark', ?, 'running', ?, ?)", (json.dumps(clean), time.time(), time.time())).lastrowid


def bare_popen(sched: JobScheduler, job_id: int) -> subprocess.Popen:
    log = open(sched.settings.jobs_dir / f"bare-{job_id}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "llmos_core.jobs.worker", str(job_id)], stdout=log,
                            stderr=subprocess.STDOUT, env=sched.supervisor._worker_env(), start_new_session=True)


def wait_allocated(store: Store, job_id: int) -> None:
    while not store.query("SELECT 1 FROM job_metrics WHERE job_id = ?", (job_id,)):
        time.sleep(0.01)
    time.sleep(0.3)   # let the figure settle after the allocation


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="llmos-bench-sched-"))
    settings = Settings(home=home)
    settings.jobs_dir.mkdir(parents=True, exist_ok=True)
    sched = JobScheduler(settings, Store(settings.db_path), poll_s=0.25, limits="")
    sched.start()
    start_s, start_base, cancel_s, cancel_base, seen = [], [], [], [], []
    quick = {"memory_mb": 0, "seconds": 0.3}
    holding = {"memory_mb": MEMORY_MB, "seconds": 120}
    for _ in range(args.runs):
        t0 = time.perf_counter()
        job_id = sched.submit("benchmark", quick)
        start_s.append(first_progress(sched.store, job_id) - t0)
        job_id = bare_job(sched, quick)
        t0 = time.perf_counter()
        proc = bare_popen(sched, job_id)
        start_base.append(first_progress(sched.store, job_id) - t0)
        proc.wait()
        time.sleep(0.5)

    for _ in range(max(2, args.runs // 2)):
        job_id = sched.submit("benchmark", holding)
        wait_allocated(sched.store, job_id)
        procs, before = tree_of(sched.store, job_id), psutil.virtual_memory().available
        t0 = time.perf_counter()
        sched.cancel(job_id)
        cancel_s.append(memory_back(procs, before, MEMORY_MB * 1024**2, seen) - t0)
        time.sleep(1.0)
        job_id = bare_job(sched, holding)
        proc = bare_popen(sched, job_id)
        wait_allocated(sched.store, job_id)
        procs, before = tree_of(sched.store, job_id), psutil.virtual_memory().available
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        cancel_base.append(memory_back(procs, before, MEMORY_MB * 1024**2, seen) - t0)
        proc.wait()
        time.sleep(1.0)
    sched.stop()

    def report(name: str, ours: list[float], base: list[float], target: float) -> None:
        a, b = statistics.median(ours), statistics.median(base)
        print(f"{name}: scheduler {a * 1000:.0f} ms, bare Popen {b * 1000:.0f} ms, ratio {a / b:.2f}x "
              f"(target under {target:g} s: {'met' if a < target else 'MISSED'}; runs {len(ours)})")

    print(f"machine: {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 1024**3:.1f} GB, pid {os.getpid()}")
    report("submit-to-start", start_s, start_base, 1.0)
    report(f"cancel-to-memory-returned ({MEMORY_MB} MB)", cancel_s, cancel_base, 3.0)
    print(f"machine-wide available memory rose by 90% of it within 10 s in {sum(seen)} of {len(seen)} cancels")


if __name__ == "__main__":
    main()
