"""Drawing the monitor's snapshots: st.metric rows, alerts, GPU holders, the process table, the Home summary.

Shared by app_pages/monitor.py and app_pages/home.py. Reads only what llmos_core.monitor.Sampler returns
(snapshots and compact samples) and the alert events; never samples anything itself. The Monitor's
charts are drawn in the browser (app_pages/_live_chart.py).
"""
from __future__ import annotations

import time
from datetime import datetime

import pandas as pd
import streamlit as st

from llmos_core.alerts import firing_now, recent_alerts
from llmos_core.gpu import attribute_memory
from llmos_core.present import format_bytes, format_rate
from llmos_core.monitor import Sampler
from llmos_core.store import Store
from app_pages import _live_chart as live_chart

MB = 1024**2
GB = 1024**3
ALERT_TOAST_S = 5.0     # how often every open page looks for new alerts (one indexed query)
SORT_KEYS = {"CPU": "CPU %", "RAM": "RAM (MB)", "GPU memory": "GPU memory (MB)"}


def when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts)


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


def firing_alerts(store: Store | None, within_s: float = 86400) -> list[dict]:
    """The alerts still firing (started in the last day, not ended), one warning line each."""
    alerts = firing_now(store, time.time() - within_s)
    for alert in alerts:
        st.warning(f"{when(alert['ts']):%H:%M:%S} {alert['message']}", icon=":material/notifications_active:")
    return alerts


def prefix_caches(snap: dict) -> None:
    """One line per loaded model with a prefix cache: kept prompts, their memory, hit rate, tokens saved."""
    for m in snap.get("models") or []:
        cache = m.get("prefix_cache")
        if not cache:
            continue
        lookup = (f" · prompt lookup kept {cache['accepted']} of {cache['drafted']} guessed tokens"
                  if cache.get("lookup") else " · prompt lookup off")
        state = (f"{cache['entries']} {cache.get('entries_are', 'prompts')} kept, {format_bytes(cache['bytes'])} of "
                 f"{format_bytes(cache['capacity_bytes'])} · hit rate {cache['hit_rate']:.0%} · "
                 f"{cache['tokens_saved']} prompt tokens not read again" if cache.get("enabled") else "off")
        st.caption(f"Prefix cache of {m['name']} ({m.get('backend')}): {state}{lookup}")


def gpu_holders(snap: dict) -> None:
    """Who holds each GPU's memory: process, LLM OS job or model, bytes (from NVML's process lists)."""
    rows = attribute_memory(snap)
    if not rows:
        return
    st.subheader("GPU memory by holder")
    st.dataframe(pd.DataFrame([{"GPU": r["gpu"], "pid": r["pid"], "held by": r["label"],
                                "models": ", ".join(r["models"]), "GPU memory": format_bytes(r["gpu_mem"])}
                               for r in rows]), hide_index=True, key="monitor_gpu_holders")


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
    firing_alerts(sampler.store)
    live_chart.draw(sampler, 300, key="home_live", only=("cpu",), chart_height=150)


@st.fragment(run_every=ALERT_TOAST_S)
def alert_toasts(store: Store) -> None:
    """A toast on whatever page is open when an alert starts (drawn from app.py, so on every page)."""
    seen = st.session_state.setdefault("alerts_seen_ts", time.time())
    for alert in recent_alerts(store, seen):
        if alert["kind"] == "alert":
            st.toast(alert["message"], icon=":material/notifications_active:")
        st.session_state["alerts_seen_ts"] = max(st.session_state["alerts_seen_ts"], alert["ts"] + 1e-3)


def _sum(a, b):
    return None if a is None or b is None else a + b


def _pct(value) -> str:
    return "N/A" if value is None else f"{value:.0f}%"
