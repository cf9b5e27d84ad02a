"""Jobs on a Ray cluster against jobs on this machine, measured in the same run, loopback only.

It makes a network namespace with only `lo` up (root, like the cluster tests), runs itself inside it,
and there starts Ray nodes with `ray start` (one CPU each), so no traffic leaves the machine.
1. submit-to-start: from submit() to the benchmark job's first progress report in the store, through
   Ray Jobs against a local worker process (target: under 2 s more on Ray).
2. makespan of 8 one-CPU benchmark jobs (each sleeps SLEEP_S holding little memory) on two one-CPU
   nodes against the same 8 on one node (target: at least 1.8x shorter).
Not measured: a 2-worker Ray Train step against 1 worker (Ray Train is not wired in yet).
Usage: sudo python bench/cluster.py [--runs N]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

import loopback_ray  # noqa: E402

from llmos_core.jobs.scheduler import JobScheduler  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402
from llmos_core.store import Store  # noqa: E402

SLEEP_S = 6.0
JOBS = 8


def scheduler(home: Path, cluster: str | None) -> JobScheduler:
    settings = Settings(home=home, cluster=cluster)
    sched = JobScheduler(settings, Store(settings.db_path), poll_s=0.1, limits="")
    sched.start()
    return sched


def submit_to_start(sched: JobScheduler) -> float:
    start = time.perf_counter()
    job_id = sched.submit("benchmark", {"memory_mb": 10, "declare_mb": 100, "seconds": 1})
    while (sched.get(job_id)["progress"] or 0) == 0:
        if time.perf_counter() - start > 300:
            raise RuntimeError(f"job {job_id} did not start: {sched.get(job_id)}")
        time.sleep(0.02)
    took = time.perf_counter() - start
    while sched.get(job_id)["state"] in ("queued", "running"):
        time.sleep(0.1)
    return took


def makespan(sched: JobScheduler) -> float:
    start = time.perf_counter()
    ids = [sched.submit("benchmark", {"memory_mb": 10, "declare_mb": 100, "seconds": SLEEP_S}) for _ in range(JOBS)]
    while any(sched.get(i)["state"] in ("queued", "running") for i in ids):
        time.sleep(0.2)
    states = {sched.get(i)["state"] for i in ids}
    assert states == {"succeeded"}, states
    return time.perf_counter() - start


def inside(runs: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="llmos-bench-"))
    loopback_ray.start_head(memory=4 * 10**9)
    local = scheduler(base / "local", None)
    ray = scheduler(base / "ray", loopback_ray.ADDRESS)
    local_s = [submit_to_start(local) for _ in range(runs)]
    ray_s = [submit_to_start(ray) for _ in range(runs)]
    lm, rm = statistics.median(local_s), statistics.median(ray_s)
    print(f"submit-to-start: local {lm:.2f} s, Ray {rm:.2f} s (median of {runs}): Ray adds {rm - lm:.2f} s "
          f"(target under 2 s) {'MET' if rm - lm < 2 else 'NOT MET'}", flush=True)
    one = makespan(ray)
    loopback_ray.start_node(memory=4 * 10**9)
    two = makespan(ray)
    print(f"{JOBS} one-CPU jobs of {SLEEP_S:g} s: one node {one:.1f} s, two nodes {two:.1f} s: {one / two:.2f}x "
          f"shorter (target 1.8x) {'MET' if one / two >= 1.8 else 'NOT MET'}", flush=True)
    ray.stop()
    local.stop()
    shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        loopback_ray.check_loopback_only()
        inside(args.runs)
        return
    done = loopback_ray.run_in_namespace([sys.executable, __file__, "--inside", "--runs", str(args.runs)],
                                         timeout=1800, capture=False)
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
