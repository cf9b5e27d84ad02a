"""A real Ray cluster, loopback only: this test makes a network namespace with nothing but `lo` up and
runs the cluster scenarios (test_cluster_scenarios.py: two `ray start` nodes, the scheduler, its jobs)
inside it, so no packet can leave this machine whatever address Ray picks. Ray advertises the
machine's outward address when it can see one; in here it cannot.

Needs root (`ip netns`), as CI runs. Every process the scenarios start lives in the namespace: at the
end this test kills exactly those (`ip netns pids`), then deletes the namespace.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def test_cluster_scenarios_run_in_a_loopback_only_namespace():
    pytest.importorskip("ray", reason="pip install 'ray[default]' (requirements-dev.txt)")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the cluster tests make a network namespace: they need root and iproute2 (CI has both)")
    namespace = f"llmos-test-{os.getpid()}"
    _ip("netns", "add", namespace)
    try:
        _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        env = {**os.environ, "LLMOS_TEST_NETNS": namespace, "RAY_USAGE_STATS_ENABLED": "0"}
        run = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-m", "pytest", "-q", "-x",
                              "-p", "no:cacheprovider", "-o", "addopts=--import-mode=importlib",
                              str(ROOT / "tests" / "cluster" / "test_cluster_scenarios.py")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        print(run.stdout[-6000:], run.stderr[-3000:])
        assert run.returncode == 0, f"the cluster scenarios failed:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
        assert " passed" in run.stdout and " skipped" not in run.stdout
    finally:
        pids = [int(p) for p in _ip("netns", "pids", namespace, check=False).stdout.split()]
        for pid in pids:   # only processes started inside our namespace: the Ray nodes and their workers
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _ip("netns", "del", namespace, check=False)
