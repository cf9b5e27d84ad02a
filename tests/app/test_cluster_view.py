"""The cluster view's drawing (app_pages/_cluster_view.py) on a snapshot shaped as ClusterMonitor returns it;
the snapshot itself is read from a real Ray cluster in tests/cluster/."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest


def script():
    import time

    from app_pages import _cluster_view

    class Monitor:   # what llmos_core.cluster.ClusterMonitor gives: one row per node
        address = "http://head:8265"

        def snapshot(self):
            now = time.time()
            point = {"ts": now, "cpu_percent": 40.0, "mem_used": 2 * 1024**3, "mem_total": 8 * 1024**3, "gpu_percent": None}
            return [{"node_id": "a" * 56, "ip": "10.0.0.1", "is_head": True, "cpus": 4.0, "gpus": 0.0, **point,
                     "gpu_devices": [], "jobs": [{"job_id": 3, "kind": "benchmark", "ray_job_id": "r", "status": "RUNNING"}],
                     "history": [point]},
                    {"node_id": "b" * 56, "ip": "10.0.0.2", "is_head": False, "cpus": 8.0, "gpus": 1.0, **point,
                     "gpu_percent": 75.0, "gpu_devices": [], "jobs": [], "history": [{**point, "gpu_percent": 75.0}]}]

    _cluster_view.draw(None, "none")   # this machine: nothing drawn
    _cluster_view.draw(Monitor(), "test")


def test_each_node_with_its_load_and_jobs_and_charts_over_time():
    at = AppTest.from_function(script, default_timeout=30).run()
    assert not at.exception
    assert at.subheader[0].value == "Cluster (http://head:8265)" and len(at.subheader) == 1
    table = at.dataframe[0].value
    assert list(table["LLM OS jobs"]) == ["3 (benchmark, running)", "none"]
    assert list(table["GPU"]) == ["no GPU", "75%"]
    assert len(at.get("plotly_chart")) == 3   # CPU, memory, and GPU since one node has one
