"""Home: one screen that says what this machine is doing and where to go."""
from __future__ import annotations

import streamlit as st

from llmos_core.present import format_bytes
from llmos_core.models.catalog import DEFAULT_CHAT_MODEL
from llmos_core.cluster import describe as describe_cluster
from app_pages import _monitor_view as monitor_view
from llmos_core.usecases.doctor import run_checks
from app_pages._shared import engine

eng = engine()
st.title(":material/memory: LLM OS")
st.write("Chat with language models, translate documents, fine-tune on your own data, and watch what the "
         "machine is doing, all on this computer.")

status = eng.status()
cols = st.columns(4)
cols[0].metric("Device", eng.device.kind.upper(), help=eng.device.reason)
cols[1].metric("Models in memory", len(status["resident"]))
cols[2].metric("Memory budget", format_bytes(status["budget_bytes"]))
cols[3].metric("Room for models", format_bytes(status["room_bytes"]))
what = {"scheduler": "Job scheduler", "monitor": "Monitor"}
alive = eng.threads_alive()
st.caption(" · ".join(f":material/check_circle: {what[name]} running" if ok else
                      f":material/cancel: **{what[name]} stopped**" for name, ok in alive.items()))
if not all(alive.values()):
    st.warning("A background thread of the engine has stopped: queued jobs wait or the monitor stands still. "
               "Restart the app; its terminal says why it stopped.", icon=":material/warning:")
st.caption(f":material/lan: Jobs run on: **{describe_cluster(eng.settings)}**")

with st.expander("Health check (the same as `python -m llmos_core doctor`)", icon=":material/stethoscope:",
                 expanded=False):
    full = st.button("Run the full check: load each embedded model and time one reply", key="home_doctor_full")
    with st.spinner("Loading the embedded models…" if full else "Checking…"):
        checks = run_checks(eng, generate=full, ports=False)
    for check in checks:
        icon = {"ok": ":material/check_circle:", "info": ":material/info:"}.get(check.status, ":material/error:")
        st.markdown(f"{icon} **{check.name}**: {check.detail}" + (f"  \n→ {check.fix}" if check.fix else ""))
problems = [check for check in checks if check.status == "problem"]
if problems:
    st.warning(f"{len(problems)} problem(s) with this install: " + "; ".join(f"{c.name}: {c.fix}" for c in problems),
               icon=":material/warning:")

st.subheader("Go to")
links = st.columns(3)
links[0].page_link("app_pages/models.py", label="Models: catalog, load, memory", icon=":material/deployed_code:")
links[1].page_link("app_pages/jobs.py", label="Jobs: training and translation runs, queue", icon=":material/work_history:")
links[2].page_link("app_pages/monitor.py", label="Monitor: CPU, memory, GPUs, jobs", icon=":material/monitoring:")
links[2].page_link("app_pages/chat.py", label="Chat: talk to a model, saved conversations", icon=":material/chat:")
links[0].page_link("app_pages/translate.py", label="Translate: documents in their own format", icon=":material/translate:")
links[1].page_link("app_pages/train.py", label="Train: fine-tune a model on your data", icon=":material/model_training:")
st.caption(f"The embedded chat model, {DEFAULT_CHAT_MODEL}, works offline: Chat runs its GGUF through llama.cpp "
           "where that is installed; the transformers form (training, translation) is converted once on first use.")

# ---- the machine now: the monitor's compact view, redrawn every 2 s ----
st.subheader("This machine now")


@st.fragment(run_every=2.0)
def machine_now() -> None:
    monitor_view.compact(eng.sampler)


machine_now()
