"""The cluster view of the Monitor and Jobs pages: each Ray node's CPU, memory and GPU load over time
and the LLM OS jobs on it. Draws what llmos_core.cluster.ClusterMonitor reads from Ray; nothing when
jobs run on this machine (LLMOS_CLUSTER unset)."""
from __future__ import annotations

from datetime import datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from llmos_core.present import format_bytes

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _name(node: dict) -> str:
    return f"{'head' if node['is_head'] else 'node'} {node['node_id'][:8]} ({node['ip']})"


def _history_figure(nodes: list[dict], key: str, title: str, y_title: str) -> go.Figure:
    fig = go.Figure()
    for i, node in enumerate(nodes):
        points = [p for p in node["history"] if p[key] is not None]
        fig.add_trace(go.Scatter(x=[datetime.fromtimestamp(p["ts"]) for p in points], y=[p[key] for p in points],
                                 name=_name(node), mode="lines", line={"color": COLORS[i % len(COLORS)]}))
    fig.update_layout(title={"text": title, "font": {"size": 14}}, height=240, yaxis={"title": y_title, "range": [0, 100]},
                      margin={"l": 40, "r": 10, "t": 36, "b": 30}, legend={"orientation": "h", "y": -0.25})
    return fig


def draw(monitor, key: str) -> None:
    """One table of nodes (resources, load now, LLM OS jobs) and their CPU and memory load since the page opened."""
    if monitor is None:
        return
    st.subheader(f"Cluster ({monitor.address})")
    nodes = monitor.snapshot()
    st.dataframe(pd.DataFrame([{
        "node": _name(n), "CPUs": n["cpus"], "GPUs": n["gpus"], "CPU %": n["cpu_percent"],
        "memory": f"{format_bytes(n['mem_used'])} of {format_bytes(n['mem_total'])}",
        "GPU": "no GPU" if n["gpu_percent"] is None else f"{n['gpu_percent']:.0f}%",   # one type per column
        "LLM OS jobs": ", ".join(f"{j['job_id']} ({j['kind']}, {j['status'].lower()})" for j in n["jobs"]) or "none",
    } for n in nodes]), hide_index=True, width="stretch", key=f"{key}_cluster_nodes")
    for n in nodes:
        n["history"] = [{**p, "mem_percent": 100 * p["mem_used"] / p["mem_total"] if p["mem_total"] else None}
                        for p in n["history"]]
    left, right = st.columns(2)
    left.plotly_chart(_history_figure(nodes, "cpu_percent", "CPU per node", "%"), key=f"{key}_cluster_cpu")
    right.plotly_chart(_history_figure(nodes, "mem_percent", "Memory per node", "%"), key=f"{key}_cluster_mem")
    if any(n["gpu_percent"] is not None for n in nodes):
        st.plotly_chart(_history_figure(nodes, "gpu_percent", "GPU per node", "%"), key=f"{key}_cluster_gpu")
