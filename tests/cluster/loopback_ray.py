"""A Ray cluster on this machine that can talk to nothing but itself: for the cluster tests and bench/cluster.py.

run_in_namespace(command) makes a network namespace with only `lo` up, runs `command` in it, then kills
exactly the processes left in that namespace (the Ray nodes it started) and deletes it. Inside,
start_head() / start_node() run `ray start` on 127.0.0.1; Ray cannot advertise an outward address
where there is none, and check_loopback_only() proves it before the first job. Needs root (iproute2).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ADDRESS = "http://127.0.0.1:8265"
GCS = "127.0.0.1:6390"
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0",
           # a loaded 2-core machine starts the node agents slowly; Ray's default gives up after 10 s
           "RAY_agent_register_timeout_ms": "600000", "RAY_worker_register_timeout_seconds": "300",
           # and the dashboard's modules slowly: each gets 30 s to start by default, and the dashboard (so
           # the node list the tests read) dies with the first that misses it (seen at load 20)
           "RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT": "300"}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def run_in_namespace(command: list[str], timeout: float, capture: bool = True) -> subprocess.CompletedProcess:
    """Run `command` in a fresh loopback-only namespace; $LLMOS_RAY_BASE is a short folder for Ray's files,
    removed afterwards with everything the command left running in the namespace."""
    namespace = f"llmos-{os.getpid()}"
    base = tempfile.mkdtemp(prefix="llr", dir="/tmp")   # short: Ray's socket paths must fit in 107 bytes
    _ip("netns", "add", namespace)
    try:
        _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        # LLMOS_DEV: the scenarios and the bench use the benchmark kind's declare_mb (a test hook)
        env = {**os.environ, **RAY_ENV, "LLMOS_TEST_NETNS": namespace, "LLMOS_DEV": "1", "LLMOS_RAY_BASE": base}
        return subprocess.run(["ip", "netns", "exec", namespace, *command], env=env, capture_output=capture,
                              text=True, timeout=timeout, cwd=Path(__file__).resolve().parents[2])
    finally:
        for pid in [int(p) for p in _ip("netns", "pids", namespace, check=False).stdout.split()]:
            try:   # only processes inside our namespace: the Ray nodes and their workers
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _ip("netns", "del", namespace, check=False)
        shutil.rmtree(base, ignore_errors=True)


def check_loopback_only() -> None:
    """Fail unless `lo` is the only interface; then every Ray listener must be on 127.0.0.1 (checked after start)."""
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        raise RuntimeError(f"not in a loopback-only namespace (interfaces: {names})")


def check_listeners() -> list[str]:
    listening = sorted({c.laddr.ip for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN})
    if not listening or any(ip not in ("127.0.0.1", "::ffff:127.0.0.1") for ip in listening):
        raise RuntimeError(f"a listener is not on 127.0.0.1: {listening}")
    return listening


def ray(*args: str, prefix: tuple = ()) -> str:
    """Run `ray ...`; '' when it succeeded, else what it said. `ray start` gives up on a node after a fixed
    30 s wait for the GCS, which a loaded machine can exceed while the node still comes up: the
    callers judge by the nodes that appear (wait_nodes), and show this text if none does."""
    command = [*prefix, str(Path(sys.executable).parent / "ray"), *args]
    done = subprocess.run(command, env={**os.environ, **RAY_ENV}, capture_output=True, text=True, timeout=300)
    return "" if done.returncode == 0 else f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def _agent_ports(first: int) -> list[str]:
    """Fixed ports for a node's agents (the namespace's own port space: no clash with anything outside). With
    port 0 the raylet waits for the agents to write their chosen ports to files, and gives up after a fixed
    time that a loaded machine exceeds; with a port given it does not wait for the file."""
    names = ("metrics-export-port", "dashboard-agent-grpc-port", "dashboard-agent-listen-port", "runtime-env-agent-port")
    return [f"--{name}={first + i}" for i, name in enumerate(names)]


def start_head(memory: int, resources: str = '{"head": 1}') -> None:
    """The head: one CPU, `memory` bytes of Ray memory; Ray's files under $LLMOS_RAY_BASE (run_in_namespace)."""
    check_loopback_only()
    base = os.environ["LLMOS_RAY_BASE"]
    said = ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={GCS.split(':')[1]}", "--dashboard-host=127.0.0.1",
        "--num-cpus=1", f"--memory={memory}", f"--resources={resources}", f"--temp-dir={base}/ray",
        "--disable-usage-stats", *_agent_ports(52000))
    wait_nodes(1, said=said)


def start_node(memory: int, resources: str = '{"node2": 1}', hide: Path | None = None, count: int = 2) -> None:
    """A second node: one CPU. With `hide`, it runs in a mount namespace where a tmpfs covers that folder."""
    prefix = ()
    if hide is not None:
        prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                  f"mount -t tmpfs tmpfs {hide} && exec \"$0\" \"$@\"")
    said = ray("start", f"--address={GCS}", "--node-ip-address=127.0.0.1", "--num-cpus=1", f"--memory={memory}",
               f"--resources={resources}", "--disable-usage-stats", *_agent_ports(52000 + 10 * count), prefix=prefix)
    wait_nodes(count, said=said)


def wait_nodes(count: int, timeout: float = 180.0, said: str = "") -> list[dict]:
    """The alive nodes once there are `count`; RuntimeError with what `ray start` said if they do not come."""
    from llmos_core import cluster
    from llmos_core.errors import ClusterError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            nodes = cluster.nodes(ADDRESS)
        except ClusterError:   # the dashboard is not up yet
            nodes = []
        if len(nodes) == count:
            return nodes
        time.sleep(1.0)
    raise RuntimeError(f"the cluster did not reach {count} node(s) in {timeout:g} s\n{said}")
