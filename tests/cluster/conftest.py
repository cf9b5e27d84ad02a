"""The two-node Ray cluster and the scheduler on it, started once for every cluster scenario file
(test_cluster_scenarios.py, test_cluster_train.py), which test_cluster.py runs in one pytest session
inside a network namespace where only `lo` exists. Before the first job the fixture proves every
listening socket is on 127.0.0.1 and `lo` is the only interface.

The nodes (`ray start`, one CPU each, a custom resource each so placement is visible):
    head   1 CPU, 1 GB of Ray memory, {"head": 1}
    node2  1 CPU, 3 GB of Ray memory, {"node2": 1}; started in a mount namespace of its own where a
           tmpfs hides HIDDEN, so a data folder under HIDDEN is one node2 cannot see.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import loopback_ray  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    from llmos_core import cluster

    hidden = Path(os.environ["LLMOS_RAY_BASE"]) / "hidden"   # removed with the namespace (test_cluster.py)
    hidden.mkdir(parents=True)
    loopback_ray.start_head(memory=10**9)
    loopback_ray.start_node(memory=3 * 10**9, hide=hidden)
    nodes = loopback_ray.wait_nodes(2)
    loopback_ray.check_listeners()   # before the first job: every Ray listener is on 127.0.0.1
    ids = {("node2" if "node2" in n["custom"] else "head"): n["node_id"] for n in nodes}
    return {"nodes": ids, "hidden": hidden, "client": cluster.connect(loopback_ray.ADDRESS)}


@pytest.fixture(scope="session")
def scheduler(ray_cluster, tmp_path_factory):
    from llmos_core.jobs.scheduler import JobScheduler
    from llmos_core.settings import Settings
    from llmos_core.store import Store

    # one thread a job (one CPU a node); no GGUF export after the training scenario (it tests Ray Train)
    settings = Settings(home=tmp_path_factory.mktemp("home"), cluster=loopback_ray.ADDRESS, threads=1,
                        export_gguf=False)
    sched = JobScheduler(settings, Store(settings.db_path), poll_s=0.2, cancel_grace_s=5.0)
    assert sched.on_cluster
    assert sched.start()   # probes the data folder on both nodes first
    yield sched
    sched.stop()
