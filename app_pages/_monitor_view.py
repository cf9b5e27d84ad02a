"""Drawing the monitor's samples: plotly charts, st.metric rows, the process table, the Home summary.

Shared by app_pages/monitor.py and app_pages/home.py. Reads only what llmos_core.monitor.Sampler returns
(snapshots and compact samples); never samples anything itself.
"""
from __future__ import annotations

from datetime import datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from llmos_core.present import format_bytes, format_rate
from llmos_core.monitor import Sampler

MB = 1024**2
GB = 1024**3
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
SORT_KEYS = {"CPU": "CPU %", "RAM": "RAM (MB)", "GPU memory": "GPU memory (MB)"}


def when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts)


def _figure(title: str, height: int, y_title: str, y_range: list | None = None) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title={"text": title, "font": {"size": 14}}, height=height, margin={"l": 40, "r": 10, "t": 36, "b": 30},
                      legend={"orientation": "h", "y": -0.2}, yaxis={"title": y_title, "range": y_range},
                      hovermode="x unified", uirevision=title)   # uirevision: zoom survives the refresh
    return fig


def add_markers(fig: go.Figure, markers: list[dict], y: float) -> None:
    """Events (job start/end, model load/unload/evict) as dotted lines with a hoverable triangle on top."""
    if not markers:
        return
    # Plain layout shapes: add_vline validates and relayouts once per line, far slower for many events.
    fig.update_layout(shapes=[{"type": "line", "xref": "x", "yref": "paper", "x0": when(m["ts"]), "x1": when(m["ts"]),
                               "y0": 0, "y1": 1, "line": {"width": 1, "dash": "dot", "color": "#888"}}
                              for m in markers[-50:]])
    fig.add_trace(go.Scatter(x=[when(m["ts"]) for m in markers], y=[y] * len(markers), mode="markers",
                             marker={"symbol": "triangle-down", "size": 10, "color": "#555"}, name="events",
                             text=[f"{m['kind']}: {m['message']}" for m in markers], hoverinfo="text"))


def cpu_figure(samples: list[dict], markers: list[dict], height: int = 300) -> go.Figure:
    fig = _figure("CPU", height, "% busy", [0, 105])
    x = [when(s["ts"]) for s in samples]
    cores = max((len(s["cpu"]["per_core"] or []) for s in samples), default=0)
    if cores > 16:   # many lines are unreadable: one row per core, colour for load
        z = [[_per_core(s, cores)[i] for s in samples] for i in range(cores)]
        heat = go.Figure(go.Heatmap(x=x, y=[f"core {i}" for i in range(cores)], z=z, zmin=0, zmax=100,
                                    colorscale="Blues", colorbar={"title": "%"}))
        heat.update_layout(fig.layout)
        heat.update_layout(yaxis={"range": None, "title": None})
        return heat
    for i in range(cores):
        fig.add_trace(go.Scatter(x=x, y=[_per_core(s, cores)[i] for s in samples],
                                 mode="lines", name=f"core {i}", line={"width": 1}, opacity=0.6))
    fig.add_trace(go.Scatter(x=x, y=[s["cpu"]["total"] for s in samples], mode="lines", name="total",
                             line={"width": 3, "color": "black"}))
    add_markers(fig, markers, 102)
    return fig


def _per_core(sample: dict, cores: int) -> list:
    values = sample["cpu"]["per_core"]
    return values if values and len(values) == cores else [None] * cores


def memory_figure(samples: list[dict], markers: list[dict], height: int = 300) -> go.Figure:
    total = max((s["mem"]["total"] or 0 for s in samples), default=0) / GB
    fig = _figure("Memory", height, "GB", [0, max(total, 0.1) * 1.05])
    x = [when(s["ts"]) for s in samples]
    fig.add_trace(go.Scatter(x=x, y=[_div(s["mem"]["used"], GB) for s in samples], mode="lines", name="RAM used",
                             fill="tozeroy"))
    if any(s["mem"].get("swap_total") for s in samples):
        fig.add_trace(go.Scatter(x=x, y=[_div(s["mem"]["swap_used"], GB) for s in samples], mode="lines",
                                 name="swap used"))
    for i, (part, series) in enumerate(_llmos_series(samples, "rss").items()):
        fig.add_trace(go.Scatter(x=x, y=[_div(v, GB) for v in series], mode="lines", name=part,
                                 line={"dash": "dash", "color": COLORS[i % len(COLORS)]}))
    add_markers(fig, markers, total)
    return fig


def gpu_figure(samples: list[dict], index: int, markers: list[dict], height: int = 300) -> go.Figure:
    name = next((g["name"] for s in reversed(samples) for g in s["gpus"] or [] if g["index"] == index), f"GPU {index}")
    fig = _figure(f"GPU {index}: {name}", height, "%", [0, 105])
    x, util, mem = [], [], []
    for s in samples:
        g = next((g for g in s["gpus"] or [] if g["index"] == index), None)
        x.append(when(s["ts"]))
        util.append(None if g is None else g["util"])
        mem.append(None if g is None or not g["mem_total"] or g["mem_used"] is None
                   else 100.0 * g["mem_used"] / g["mem_total"])
    fig.add_trace(go.Scatter(x=x, y=util, mode="lines", name="utilization %", line={"width": 2}))
    fig.add_trace(go.Scatter(x=x, y=mem, mode="lines", name="memory used %", fill="tozeroy", line={"width": 1}))
    add_markers(fig, markers, 102)
    return fig


def llmos_cpu_figure(samples: list[dict], markers: list[dict], height: int = 260) -> go.Figure:
    """CPU of each part of LLM OS (the server, each job with its children), % of one core."""
    fig = _figure("LLM OS: CPU per part", height, "% of one core")
    x = [when(s["ts"]) for s in samples]
    for i, (part, series) in enumerate(_llmos_series(samples, "cpu").items()):
        fig.add_trace(go.Scatter(x=x, y=series, mode="lines", name=part, line={"color": COLORS[i % len(COLORS)]}))
    add_markers(fig, markers, 0)
    return fig


def _llmos_series(samples: list[dict], key: str) -> dict[str, list]:
    parts: dict[str, str] = {}
    for s in samples:
        for part, t in (s.get("llmos") or {}).items():
            parts[part] = t.get("label") or part
    return {label[:50]: [((s.get("llmos") or {}).get(part) or {}).get(key) for s in samples]
            for part, label in parts.items()}


def _div(value, by: float):
    return None if value is None else value / by


def metrics(snap: dict) -> None:
    """Current figures as st.metric: CPU, load, RAM, swap, disk, network, then one per GPU."""
    cpu, mem, io = snap["cpu"], snap["mem"], snap["io"]
    cols = st.columns(6)
    cols[0].metric("CPU", _pct(cpu["total"]), help=f"{cpu['cores']} cores, busy share of all of them")
    load = cpu["load"]
    cols[1].metric("Load (1 min)", "N/A" if not load else f"{load[0]:.1f}",
                   help=None if not load else f"1, 5, 15 minutes: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}")
    cols[2].metric("RAM used", format_bytes(mem["used"]), help=f"{mem['percent']:.0f}% of {format_bytes(mem['total'])}")
    cols[3].metric("Swap used", format_bytes(mem["swap_used"]) if mem["swap_total"] else "none",
                   help=f"of {format_bytes(mem['swap_total'])}" if mem["swap_total"] else "this machine has no swap")
    cols[4].metric("Disk I/O", format_rate(_sum(io["disk_read_bps"], io["disk_write_bps"])),
                   help=f"read {format_rate(io['disk_read_bps'])}, write {format_rate(io['disk_write_bps'])}")
    cols[5].metric("Network", format_rate(_sum(io["net_recv_bps"], io["net_sent_bps"])),
                   help=f"in {format_rate(io['net_recv_bps'])}, out {format_rate(io['net_sent_bps'])}")
    if snap["gpus"] is None:
        status = snap["gpu_status"]
        st.caption(f":material/info: {status[:1].upper()}{status[1:]}. CPU and memory are shown.")
        return
    for g in snap["gpus"]:
        cols = st.columns(6)
        cols[0].metric(f"GPU {g['index']}", _pct(g["util"]), help=g["name"])
        cols[1].metric(f"GPU {g['index']} memory", f"{format_bytes(g['mem_used'])}",
                       help=f"of {format_bytes(g['mem_total'])}")
        cols[2].metric(f"GPU {g['index']} temperature", "N/A" if g["temp_c"] is None else f"{g['temp_c']} °C")
        cols[3].metric(f"GPU {g['index']} power", "N/A" if g["power_w"] is None else f"{g['power_w']:.0f} W",
                       help=None if g["power_limit_w"] is None else f"limit {g['power_limit_w']:.0f} W")
        cols[4].metric(f"GPU {g['index']} SM clock", "N/A" if g["clock_sm_mhz"] is None else f"{g['clock_sm_mhz']} MHz")
        cols[5].metric(f"GPU {g['index']} memory clock",
                       "N/A" if g["clock_mem_mhz"] is None else f"{g['clock_mem_mhz']} MHz")
        if g.get("error"):
            st.warning(f"GPU {g['index']} did not answer: {g['error']}", icon=":material/warning:")


def process_frame(snap: dict, sort_by: str = "CPU") -> pd.DataFrame:
    rows = [{"pid": p["pid"], "what": p["label"], "role": p["role"],
             "CPU %": None if p["cpu"] is None else round(p["cpu"], 1),
             "RAM (MB)": None if p["rss"] is None else round(p["rss"] / MB),
             "GPU memory (MB)": None if p["gpu_mem"] is None else round(p["gpu_mem"] / MB),
             "user": p["user"], "command": p["command"]} for p in snap["processes"]]
    frame = pd.DataFrame(rows, columns=["pid", "what", "role", "CPU %", "RAM (MB)", "GPU memory (MB)", "user", "command"])
    if snap["gpus"] is None:
        frame = frame.drop(columns=["GPU memory (MB)"])
    column = SORT_KEYS.get(sort_by, "CPU %")
    if column in frame:
        frame = frame.sort_values(column, ascending=False, na_position="last")
    return frame.reset_index(drop=True)


def lost_notes(snap: dict) -> None:
    if snap["lost"]:
        with st.expander(f"What the monitor could not read ({len(snap['lost'])})", icon=":material/report:"):
            for lost in reversed(snap["lost"]):
                times = f" (x{lost['count']})" if lost["count"] > 1 else ""
                st.caption(f"{when(lost['ts']):%H:%M:%S} {lost['message']}{times}")


def compact(sampler: Sampler) -> None:
    """The Home page's summary: current figures, what LLM OS runs, and the last five minutes of CPU."""
    snap = sampler.latest()
    if snap is None:
        st.caption("The monitor is taking its first sample...")
        return
    cols = st.columns(4)
    cols[0].metric("CPU", _pct(snap["cpu"]["total"]))
    cols[1].metric("RAM used", format_bytes(snap["mem"]["used"]), help=f"of {format_bytes(snap['mem']['total'])}")
    if snap["gpus"] is None:
        cols[2].metric("GPU", "none", help=snap["gpu_status"])
    else:
        busiest = max(snap["gpus"], key=lambda g: g["util"] or 0)
        cols[2].metric(f"GPUs ({len(snap['gpus'])})", _pct(busiest["util"]), help="the busiest GPU's utilization")
    cols[3].metric("LLM OS parts running", len(snap["llmos"]))
    for part in snap["llmos"].values():
        st.caption(f":material/memory: {part['label']} · CPU {part['cpu']:.0f}% · RAM {format_bytes(part['rss'])}")
    samples = sampler.history(300)
    fig = _figure("CPU, last 5 minutes", 160, "%", [0, 105])
    fig.add_trace(go.Scatter(x=[when(s["ts"]) for s in samples], y=[s["cpu"]["total"] for s in samples],
                             mode="lines", fill="tozeroy", name="CPU"))
    fig.update_layout(showlegend=False, title=None, margin={"l": 30, "r": 10, "t": 10, "b": 20})
    st.plotly_chart(fig, key="home_monitor_cpu", config={"displayModeBar": False})


def _sum(a, b):
    return None if a is None or b is None else a + b


def _pct(value) -> str:
    return "N/A" if value is None else f"{value:.0f}%"
