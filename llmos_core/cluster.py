"""The Ray cluster named by LLMOS_CLUSTER, read through Ray's public interfaces; Ray is imported only here
(and in jobs/ray_supervisor.py), and only when LLMOS_CLUSTER is set: one machine needs no Ray.

    connect(address) -> JobSubmissionClient          ClusterError (with a hint) when Ray or the head is missing
    nodes(address) -> [dict]                          the state API: each node's id, address and resources
    resource_totals(address) -> dict                  CPUs, GPUs, memory of the alive nodes (cached briefly)
    check_data_folder(client, home)                   a probe job reads a marker file on every node
    describe(settings) -> str                         "cluster: 2 nodes, 4 CPUs, 1 GPU" or "this machine"
    ClusterMonitor(address).snapshot() -> [dict]      each node's CPU, memory and GPU load now, the LLM OS
                                                      jobs on it, and a short history kept since the first read
Node load comes from the dashboard's node summary (`/nodes?view=summary`, what Ray's own dashboard
draws, fed by Ray's agent on each node): LLM OS runs nothing of its own on the nodes.
"""
from __future__ import annotations

import json
import shlex
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque
from pathlib import Path

from .errors import ClusterError

MB = 1024**2
TOTALS_TTL_S = 2.0
HISTORY_POINTS = 600          # per node: ten minutes of 1 s reads
PROBE_TIMEOUT_S = 180.0

_totals_cache: dict[str, tuple[float, dict]] = {}
_totals_lock = threading.Lock()


def connect(address: str):
    """A Jobs API client of the cluster, or a ClusterError that says what is missing."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise ClusterError(f"LLMOS_CLUSTER={address} is set, and Ray is not installed here",
                           "pip install 'ray[default]', or unset LLMOS_CLUSTER to run jobs on this machine") from exc
    try:
        return JobSubmissionClient(address)
    except Exception as exc:   # ConnectionError, RuntimeError: the head is down or the address wrong
        raise ClusterError(f"cannot reach the Ray dashboard at {address}: {exc}") from exc


def nodes(address: str) -> list[dict]:
    """The alive nodes from Ray's state API, head first."""
    from ray.util.state import list_nodes

    try:
        found = list_nodes(address=address, detail=True)
    except Exception as exc:
        raise ClusterError(f"cannot read the nodes of the Ray cluster at {address}: {exc}") from exc
    rows = []
    for node in found:
        if node.state != "ALIVE":
            continue
        res = dict(node.resources_total or {})
        rows.append({"node_id": node.node_id, "ip": node.node_ip, "name": node.node_name, "is_head": node.is_head_node,
                     "cpus": float(res.get("CPU", 0)), "gpus": float(res.get("GPU", 0)),
                     "memory_bytes": int(res.get("memory", 0)),
                     "custom": {k: v for k, v in res.items() if k not in ("CPU", "GPU", "memory", "object_store_memory")
                                and not k.startswith("node:") and not k.startswith("accelerator_type")}})
    return sorted(rows, key=lambda n: (not n["is_head"], n["node_id"]))


def resource_totals(address: str) -> dict:
    """What the alive nodes have, summed and largest: CPU, GPU, memory and GPU memory bytes (2 s cache)."""
    with _totals_lock:
        cached = _totals_cache.get(address)
        if cached and time.monotonic() - cached[0] < TOTALS_TTL_S:
            return cached[1]
    found = nodes(address)
    gpu_memory = {row["node_id"]: sum(g["memory_total"] for g in row["gpus"]) for row in node_metrics(address)}
    totals = {"nodes": len(found), "CPU": sum(n["cpus"] for n in found), "GPU": sum(n["gpus"] for n in found),
              "memory": sum(n["memory_bytes"] for n in found),
              "largest_memory": max((n["memory_bytes"] for n in found), default=0),
              "gpu_memory": sum(gpu_memory.values()), "largest_gpu_memory": max(gpu_memory.values(), default=0)}
    with _totals_lock:
        _totals_cache[address] = (time.monotonic(), totals)
    return totals


def node_metrics(address: str) -> list[dict]:
    """Each node's load now, from the dashboard's node summary (Ray's agent on the node measures it)."""
    try:
        with urllib.request.urlopen(address.rstrip("/") + "/nodes?view=summary", timeout=10) as reply:
            summary = json.load(reply)["data"]["summary"]
    except Exception as exc:
        raise ClusterError(f"cannot read node metrics from the Ray dashboard at {address}: {exc}") from exc
    rows = []
    for entry in summary:
        raylet = entry.get("raylet") or {}
        mem = entry.get("mem") or [0, 0, 0, 0]   # total, available, percent, used
        rows.append({"node_id": raylet.get("nodeId"), "hostname": entry.get("hostname"), "ip": entry.get("ip"),
                     "cpu_percent": float(entry.get("cpu") or 0.0), "mem_total": int(mem[0]),
                     "mem_used": int(mem[0] - mem[1]),
                     "gpus": [{"name": g.get("name"), "util_percent": g.get("utilizationGpu"),
                               "memory_used": int((g.get("memoryUsed") or 0) * MB),
                               "memory_total": int((g.get("memoryTotal") or 0) * MB)} for g in entry.get("gpus") or []]})
    return rows


def describe(settings) -> str:
    """One line for Home: where jobs run."""
    if not settings.cluster:
        return "this machine"
    try:
        totals = resource_totals(settings.cluster)
    except ClusterError as exc:
        return f"cluster {settings.cluster}: unreachable ({exc.message})"
    return (f"cluster: {totals['nodes']} node{'s' * (totals['nodes'] != 1)}, {totals['CPU']:g} CPUs, "
            f"{totals['GPU']:g} GPU{'s' * (totals['GPU'] != 1)}")


# ---- the data folder must be the same on every node ----
# Run by a probe job on the cluster: a zero-CPU task pinned to each alive node reads the marker file.
_PROBE = """
import json, sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
@ray.remote(num_cpus=0)
def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as exc:
        return 'cannot read it: ' + str(exc)
alive = [n for n in ray.nodes() if n['Alive']]
refs = [read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n['NodeID'], soft=False)).remote(sys.argv[1])
        for n in alive]
found = ray.get(refs, timeout=120)
print('LLMOS_PROBE ' + json.dumps([{'node': n['NodeID'], 'ip': n['NodeManagerAddress'], 'read': r}
                                   for n, r in zip(alive, found)]))
"""


def check_data_folder(client, home: Path, timeout_s: float = PROBE_TIMEOUT_S) -> list[dict]:
    """Prove every node sees the data folder at the same path: write a marker there, have a probe job
    read it on each node. ClusterError naming the nodes that cannot; else the nodes' answers."""
    marker = Path(home) / "cluster-marker"
    token = uuid.uuid4().hex
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(token)
    entrypoint = " ".join(map(shlex.quote, [sys.executable, "-c", _PROBE, str(marker)]))
    try:
        probe_id = client.submit_job(entrypoint=entrypoint, submission_id=f"llmos-probe-{token[:12]}",
                                     runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}})
    except Exception as exc:
        raise ClusterError(f"the Ray cluster did not take the data-folder probe: {exc}") from exc
    deadline = time.monotonic() + timeout_s
    while str(client.get_job_status(probe_id).value) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        if time.monotonic() > deadline:
            client.stop_job(probe_id)
            raise ClusterError(f"the data-folder probe did not finish within {timeout_s:g} s",
                               "see `ray job logs " + probe_id + "` on the head; is every node's Python the same?")
        time.sleep(0.5)
    logs = client.get_job_logs(probe_id)
    line = next((l for l in logs.splitlines() if l.startswith("LLMOS_PROBE ")), None)
    if line is None:
        raise ClusterError(f"the data-folder probe failed: {logs.strip()[-500:]}",
                           f"LLM OS runs {sys.executable} on every node: install it at the same path there")
    answers = json.loads(line[len("LLMOS_PROBE "):])
    blind = [a for a in answers if a["read"] != token]
    if blind:
        raise ClusterError(
            f"{len(blind)} of {len(answers)} node(s) cannot see the data folder {home}: "
            + "; ".join(f"node {a['ip']} ({a['node'][:8]}): {a['read'][:120]}" for a in blind),
            "the data folder must be on a filesystem shared by every node, mounted at the same path")
    return answers


class ClusterMonitor:
    """The cluster view: each node's load and the LLM OS jobs on it. Thread-safe; history grows per read."""

    def __init__(self, address: str, client=None):
        self.address = address
        self._client = client
        self._history: dict[str, deque] = {}
        self._lock = threading.Lock()

    def snapshot(self) -> list[dict]:
        """One row per alive node: id, address, resources, load now, jobs on it, and its history so far."""
        now = time.time()
        metrics = {m["node_id"]: m for m in node_metrics(self.address)}
        on_node = self._llmos_jobs_by_node()
        rows = []
        with self._lock:
            for node in nodes(self.address):
                load = metrics.get(node["node_id"], {})
                gpus = load.get("gpus") or []
                point = {"ts": now, "cpu_percent": load.get("cpu_percent"),
                         "mem_used": load.get("mem_used"), "mem_total": load.get("mem_total"),
                         "gpu_percent": (sum(g["util_percent"] or 0 for g in gpus) / len(gpus)) if gpus else None}
                history = self._history.setdefault(node["node_id"], deque(maxlen=HISTORY_POINTS))
                history.append(point)
                rows.append({**node, **point, "gpu_devices": gpus, "jobs": on_node.get(node["node_id"], []),
                             "history": list(history)})
        return rows

    def _llmos_jobs_by_node(self) -> dict[str, list[dict]]:
        if self._client is None:
            self._client = connect(self.address)
        by_node: dict[str, list[dict]] = {}
        try:
            listed = self._client.list_jobs()
        except Exception as exc:
            raise ClusterError(f"cannot list the jobs of the Ray cluster at {self.address}: {exc}") from exc
        for job in listed:
            meta = job.metadata or {}
            if "llmos_job" in meta and str(job.status.value) in ("PENDING", "RUNNING") and job.driver_node_id:
                by_node.setdefault(job.driver_node_id, []).append(
                    {"job_id": int(meta["llmos_job"]), "kind": meta.get("llmos_kind"), "ray_job_id": job.submission_id,
                     "status": str(job.status.value)})
        return by_node
