"""The scheduler on a real two-node Ray cluster (conftest.py: the nodes and the scheduler, shared with
test_cluster_train.py). Run by test_cluster.py inside a network namespace where only `lo` exists
(skipped anywhere else). A job that declares 1.5 GB can only go to node2; two one-CPU jobs at once
take one node each.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(not os.environ.get("LLMOS_TEST_NETNS"),
                                 reason="run by test_cluster.py inside its loopback-only network namespace")]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

import loopback_ray  # noqa: E402
from job_helpers import wait_for  # noqa: E402

from llmos_core import cluster  # noqa: E402
from llmos_core.errors import ClusterError  # noqa: E402
from llmos_core.jobs.scheduler import JobScheduler  # noqa: E402
from llmos_core.settings import Settings  # noqa: E402
from llmos_core.store import Store  # noqa: E402

ADDRESS = loopback_ray.ADDRESS
BIG_MB = 1500          # more than the head's 1 GB: only node2 can take it


def _driver_node(ray_cluster, sched, job_id) -> str | None:
    ray_id = sched.get(job_id)["ray_job_id"]
    return ray_id and ray_cluster["client"].get_job_info(ray_id).driver_node_id


def _holding(sched, job_id) -> bool:
    """Its worker is past start-up: the benchmark has reported progress."""
    return (sched.get(job_id)["progress"] or 0) > 0


def test_a_job_runs_on_the_node_that_has_its_memory(ray_cluster, scheduler):
    job_id = scheduler.submit("benchmark", {"memory_mb": 10, "declare_mb": BIG_MB, "seconds": 1})
    job = wait_for(lambda: (lambda j: j if j["state"] not in ("queued", "running") else None)(scheduler.get(job_id)),
                   120, "the job to end")
    assert job["state"] == "succeeded", job
    assert job["ray_job_id"].startswith("llmos-")
    assert _driver_node(ray_cluster, scheduler, job_id) == ray_cluster["nodes"]["node2"]
    assert "starts in pid" in scheduler.log_tail(job_id)


def test_two_jobs_run_on_two_nodes_at_once_and_a_cancel_frees_its_node(ray_cluster, scheduler):
    first = scheduler.submit("benchmark", {"memory_mb": 10, "declare_mb": BIG_MB, "seconds": 300})
    wait_for(lambda: _holding(scheduler, first), 120, "the first job to run")   # on node2: nothing else fits it
    second = scheduler.submit("benchmark", {"memory_mb": 10, "declare_mb": 200, "seconds": 300})
    wait_for(lambda: _holding(scheduler, first) and _holding(scheduler, second), 120, "both jobs to run")
    nodes = {_driver_node(ray_cluster, scheduler, first), _driver_node(ray_cluster, scheduler, second)}
    assert nodes == set(ray_cluster["nodes"].values())
    # the cluster view (Monitor, Jobs pages) reads the same from Ray: each job on its node, each node's load
    view = {n["node_id"]: n for n in cluster.ClusterMonitor(ADDRESS).snapshot()}
    assert [j["job_id"] for j in view[ray_cluster["nodes"]["node2"]]["jobs"]] == [first]
    assert [j["job_id"] for j in view[ray_cluster["nodes"]["head"]]["jobs"]] == [second]
    assert all(n["mem_total"] > 0 and n["cpu_percent"] is not None and len(n["history"]) == 1 for n in view.values())
    assert cluster.describe(scheduler.settings) == "cluster: 2 nodes, 2 CPUs, 0 GPUs"

    # node2's CPU is taken: a third job that needs node2 waits (in our queue or PENDING in Ray) until the cancel
    third = scheduler.submit("benchmark", {"memory_mb": 10, "declare_mb": BIG_MB, "seconds": 1})
    time.sleep(5)
    assert not _holding(scheduler, third)
    scheduler.cancel(first)
    ended = wait_for(lambda: (lambda j: j if j["state"] != "running" else None)(scheduler.get(first)), 90, "cancel")
    assert ended["state"] == "cancelled", ended
    status = lambda: str(ray_cluster["client"].get_job_status(ended["ray_job_id"]).value)  # noqa: E731
    wait_for(lambda: status() == "STOPPED", 60, "Ray to report the job STOPPED")   # the worker records first
    done = wait_for(lambda: (lambda j: j if j["state"] not in ("queued", "running") else None)(scheduler.get(third)),
                    120, "the third job to run on the freed node")
    assert done["state"] == "succeeded", done
    assert _driver_node(ray_cluster, scheduler, third) == ray_cluster["nodes"]["node2"]
    scheduler.cancel(second)
    wait_for(lambda: scheduler.get(second)["state"] != "running", 90, "the second job to stop")


def test_a_job_asking_for_a_gpu_no_node_has_waits_and_says_why(scheduler):
    job_id = scheduler.submit("benchmark", {"memory_mb": 10, "seconds": 1, "device": "cuda"})
    reason = wait_for(lambda: scheduler.get(job_id)["waiting"], 30, "a waiting reason")
    assert "CUDA" in reason and "Ray cluster" in reason, reason
    assert scheduler.get(job_id)["state"] == "queued"
    scheduler.cancel(job_id)


def test_the_data_folder_probe_refuses_a_node_that_cannot_see_it(ray_cluster):
    settings = Settings(home=ray_cluster["hidden"] / "home", cluster=ADDRESS)
    sched = JobScheduler(settings, Store(settings.db_path))
    with pytest.raises(ClusterError) as refused:
        sched.start()
    assert "1 of 2 node(s) cannot see the data folder" in refused.value.message
    assert "shared" in refused.value.hint
    assert not sched.loop.started_here


def test_a_job_outlives_the_app_and_a_restarted_scheduler_reattaches_it(ray_cluster, tmp_path):
    env = {**os.environ, "LLMOS_HOME": str(tmp_path / "home"), "LLMOS_CLUSTER": ADDRESS, "PYTHONPATH": str(ROOT)}
    settings = Settings(home=tmp_path / "home", cluster=ADDRESS)
    submitter = JobScheduler(settings, Store(settings.db_path))   # submits only: the app below runs the loop
    # long enough to outlive the restarted scheduler's data-folder probe (about 30 s on 2 busy cores)
    job_id = submitter.submit("benchmark", {"memory_mb": 10, "seconds": 60})
    app = subprocess.Popen([sys.executable, "-m", "llmos_core", "jobs", "run"], env=env, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _holding(submitter, job_id), 150, "the job to run")
        ray_id = submitter.get(job_id)["ray_job_id"]
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        assert str(ray_cluster["client"].get_job_status(ray_id).value) == "RUNNING"
        again = subprocess.Popen([sys.executable, "-m", "llmos_core", "jobs", "run", "--exit-when-idle"], env=env,
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = again.communicate(timeout=240)
        assert again.returncode == 0, out
    finally:
        for proc in (app,):
            if proc.poll() is None:
                proc.kill()
    job = submitter.get(job_id)
    assert job["state"] == "succeeded", (job, out)
    assert job["ray_job_id"] == ray_id and job["runs"] == 1
    events = [e["message"] for e in submitter.store.events(kinds=("job_reattach",))]
    assert any(ray_id in message for message in events), events
    assert json.loads(json.dumps(job["result"]))["completed"] is True
