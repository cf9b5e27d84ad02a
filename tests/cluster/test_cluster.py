"""A real Ray cluster, loopback only: this test makes a network namespace with nothing but `lo` up and
runs the cluster scenarios inside it (conftest.py: two `ray start` nodes and the scheduler;
test_cluster_scenarios.py: its jobs; test_cluster_train.py: Ray Train), so no packet can leave this
machine whatever address Ray picks. Ray advertises the machine's outward address when it can see one;
in here it cannot.

Needs root (`ip netns`), as CI runs. Every process the scenarios start lives in the namespace: at the
end exactly those are killed (`ip netns pids`, see loopback_ray.py) and the namespace is deleted.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import loopback_ray  # noqa: E402

pytestmark = pytest.mark.cluster
# one pytest session, so one cluster (conftest.py): the scenarios, then Ray Train on the same nodes
SCENARIOS = [str(Path(__file__).parent / name) for name in ("test_cluster_scenarios.py", "test_cluster_train.py")]


def test_cluster_scenarios_run_in_a_loopback_only_namespace():
    pytest.importorskip("ray", reason="pip install 'ray[default]' (requirements-dev.txt)")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the cluster tests make a network namespace: they need root and iproute2 (CI has both)")
    run = loopback_ray.run_in_namespace([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                         "-o", "addopts=--import-mode=importlib", "--durations=8", *SCENARIOS], timeout=900)
    print(run.stdout[-6000:], run.stderr[-3000:])
    assert run.returncode == 0, f"the cluster scenarios failed:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    assert " passed" in run.stdout and " skipped" not in run.stdout
