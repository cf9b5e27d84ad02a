"""Monitor: live CPU, memory and GPU load, per process, per job and per model, as charts that refresh in place.

The engine's one sampler does the reading (1 Hz, one thread for every browser); this page only draws
its snapshots. The charts sit in a fragment that reruns by itself, so the rest of the page stays put.
"""
from __future__ import annotations

import streamlit as st

from llmos_core.present import format_bytes
from llmos_core.monitor import WINDOWS
from app_pages import _monitor_view as view
from app_pages._shared import engine, error_boundary

# Seconds between redraws per window: a week of minutes need not be redrawn every second.
REFRESH_S = {"5 min": 1.0, "1 h": 5.0, "1 day": 30.0, "1 week": 60.0}
MAX_POINTS = 720

eng = engine()
sampler = eng.sampler
st.title(":material/monitoring: Monitor")

left, right = st.columns([3, 1])
window = left.radio("Window", list(WINDOWS), horizontal=True, key="monitor_window")
sort_by = right.selectbox("Sort processes by", list(view.SORT_KEYS), key="monitor_sort")
if not sampler.running:
    st.info("The sampler is not running in this engine, so the figures below do not move.", icon=":material/info:")


@st.fragment(run_every=REFRESH_S[window])
def live() -> None:
    with error_boundary("Drawing the monitor"):
        snap = sampler.latest()
        if snap is None:
            st.caption("Taking the first sample...")
            return
        view.metrics(snap)
        samples = sampler.history(WINDOWS[window], max_points=MAX_POINTS)
        markers = sampler.markers(WINDOWS[window])
        charts = st.columns(2)
        with charts[0]:
            st.plotly_chart(view.cpu_figure(samples, markers), key="monitor_chart_cpu")
        with charts[1]:
            st.plotly_chart(view.memory_figure(samples, markers), key="monitor_chart_memory")
        for i, gpu in enumerate(snap["gpus"] or []):
            with charts[i % 2]:
                st.plotly_chart(view.gpu_figure(samples, gpu["index"], markers), key=f"monitor_chart_gpu{gpu['index']}")

        st.subheader("LLM OS")
        for part in snap["llmos"].values():
            gpu = f" · GPU {format_bytes(part['gpu_mem'])}" if part["gpu_mem"] else ""
            st.markdown(f"**{part['label']}** · CPU {part['cpu']:.0f}% · RAM {format_bytes(part['rss'])}{gpu}")
        if any(s.get("llmos") for s in samples):
            st.plotly_chart(view.llmos_cpu_figure(samples, markers), key="monitor_chart_llmos")

        st.subheader("Processes")
        st.dataframe(view.process_frame(snap, sort_by), hide_index=True, key="monitor_processes",
                     column_config={"CPU %": st.column_config.NumberColumn(help="% of one core; above 100 uses several"),
                                    "command": st.column_config.TextColumn(width="large")})
        view.lost_notes(snap)


live()
