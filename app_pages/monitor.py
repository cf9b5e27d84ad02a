"""Monitor: live CPU, memory and GPU load, per process, per job and per model, at little cost to watch.

The engine's one sampler does the reading (1 Hz, one thread for every browser); this page only passes
its samples on. The charts are drawn in the browser (app_pages/_live_chart.py): the server sends the
window once, then the browser fetches the new samples itself from the engine's live feed file, with no
rerun of this script. The figures and the process table sit in slower fragments of their own, so a
viewer costs the server little.
"""
from __future__ import annotations

import streamlit as st

from llmos_core.present import format_bytes
from llmos_core.monitor import WINDOWS
from app_pages import _cluster_view as cluster_view
from app_pages import _live_chart as live_chart
from app_pages import _monitor_view as view
from llmos_core.usecases.monitor import snapshot_for
from app_pages._shared import acting_user, engine, error_boundary

# Seconds between chart updates per window: a week of minutes need not move every second.
REFRESH_S = {"5 min": 1.0, "1 h": 5.0, "1 day": 30.0, "1 week": 60.0}
FIGURES_S = 3.0      # the current figures and the alerts firing (the charts move every second)
TABLE_S = 5.0        # the process table and who holds GPU memory

eng = engine()
sampler = eng.sampler
st.title(":material/monitoring: Monitor")

left, right = st.columns([3, 1])
window = left.radio("Window", list(WINDOWS), horizontal=True, key="monitor_window")
sort_by = right.selectbox("Sort processes by", list(view.SORT_KEYS), key="monitor_sort")
if not sampler.running:
    st.info("The sampler is not running in this engine, so the figures below do not move.", icon=":material/info:")


@st.fragment(run_every=FIGURES_S)
def figures() -> None:
    with error_boundary("Drawing the current figures"):
        snap = sampler.latest()
        if snap is None:
            st.caption("Taking the first sample...")
            return
        view.metrics(snap)
        view.firing_alerts(eng.store)


feed = eng.monitor_feed()
# A short window grows from the live feed, fetched by the browser itself: no rerun a second per viewer.
# Its fragment reruns only when the chart asks for the whole window again (a new job's line, a hidden tab).
live = feed is not None and WINDOWS[window] <= live_chart.FEED_MAX_WINDOW_S


@st.fragment(run_every=None if live else REFRESH_S[window])
def charts() -> None:
    with error_boundary("Drawing the charts"):
        live_chart.draw(sampler, WINDOWS[window], key="monitor_live", feed=feed)


@st.fragment(run_every=TABLE_S)
def processes() -> None:
    with error_boundary("Listing the processes"):
        snap = snapshot_for(eng, acting_user(), sampler.latest())   # others' jobs: not theirs to read
        if snap is None:
            return
        st.subheader("LLM OS")
        for part in snap["llmos"].values():
            gpu = f" · GPU {format_bytes(part['gpu_mem'])}" if part["gpu_mem"] else ""
            st.markdown(f"**{part['label']}** · CPU {part['cpu']:.0f}% · RAM {format_bytes(part['rss'])}{gpu}")
        view.prefix_caches(snap)
        view.gpu_holders(snap)
        st.subheader("Processes")
        st.dataframe(view.process_frame(snap, sort_by), hide_index=True, key="monitor_processes",
                     column_config={"CPU %": st.column_config.NumberColumn(help="% of one core; above 100 uses several"),
                                    "command": st.column_config.TextColumn(width="large")})
        view.lost_notes(snap)


figures()
charts()
processes()


if eng.cluster is not None:   # jobs run on a Ray cluster: its nodes, redrawn every 2 s
    @st.fragment(run_every=2.0)
    def cluster_live() -> None:
        with error_boundary("Reading the cluster"):
            cluster_view.draw(eng.cluster, "monitor")

    cluster_live()
