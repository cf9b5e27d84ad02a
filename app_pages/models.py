"""Models: the catalog, pull (download or convert) with progress, load/unload, memory per model; the hub
search with predictions before a download (_model_browser.py)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from llmos_core.api.snippets import api_access, curl_snippet, openai_snippet
from llmos_core import access
from llmos_core.present import format_bytes
from llmos_core.usecases.models import (export_in_progress, list_catalog, publish_model, pull_and_register,
                                        submit_export)
from app_pages._model_browser import measured_caption, search_section, tiers_section
from app_pages._shared import acting_user, engine, error_boundary

eng = engine()
user = acting_user()
st.title(":material/deployed_code: Models")

# ---- memory ----
resident = eng.models.resident()
budget = eng.models.budget
used = eng.models.reserved_bytes()
st.subheader("In memory")
st.progress(min(used / budget, 1.0) if budget else 0.0,
            text=f"{format_bytes(used)} of {format_bytes(budget)} budget · room now {format_bytes(eng.models.room())}")
if not resident:
    st.info("No model is loaded. Load one below, or just open Chat: it loads its model on first use.",
            icon=":material/info:")
for m in resident:
    with st.container(border=True):
        left, right = st.columns([4, 1])
        share = m["measured_bytes"] / budget if budget else 0.0
        left.markdown(f"**{m['name']}** · {m['backend']} · {m.get('device', '')} {m.get('dtype', '')}")
        working = (f" + {format_bytes(m['working_bytes'])} batching cache" if m.get("working_bytes") else "")
        left.progress(min(share, 1.0), text=f"measured {format_bytes(m['measured_bytes'])} "
                                            f"(estimated {format_bytes(m['estimated_bytes'])}){working}")
        with error_boundary("Predicting"):
            caption = measured_caption(eng, m["name"], m["backend"])
            if caption:
                left.caption(f":material/compare_arrows: {caption}")
        if m["in_use"]:
            left.caption(f"in use by {m['in_use']} request(s)")
        else:
            left.caption(f"idle {m['idle_s']:.0f} s · unloads in {m['unloads_in_s']:.0f} s")
        if right.button("Unload", key=f"models_unload_{m['name']}_{m['backend']}", icon=":material/eject:",
                        disabled=bool(m["in_use"])):
            with error_boundary("Unloading"):
                eng.models.unload(m["name"], m["backend"])
                st.rerun()

# ---- backends ----
if eng.llamacpp_available:
    st.caption(f":material/bolt: llama.cpp backend available ({eng.llamacpp_reason}): chat with a GGUF model "
               "on the CPU runs through it, several times faster than fp32 transformers, and up to 8 chats on one "
               "model are decoded together.")
else:
    st.warning(f"llama.cpp backend unavailable: {eng.llamacpp_reason}. Everything runs through transformers "
               "(slower on the CPU); pip install llama-cpp-python to get it back.", icon=":material/warning:")

# ---- catalog ----
st.subheader("Catalog")
entries = list_catalog(eng, user)
rows = [{"name": e.name, "source": e.source, "task": e.task, "chat template": e.chat, "ready on disk": e.ready,
         "loaded": eng.models.is_resident(e.name), "whose": e.sharing, "description": e.description} for e in entries]
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

choice = st.selectbox("Model", [e.name for e in entries], key="models_choice")
col_load, col_unload, _ = st.columns([1, 1, 3])
if col_load.button("Load", key="models_load", icon=":material/play_arrow:", type="primary"):
    bar = st.progress(0.0, text=f"Loading {choice}...")
    with error_boundary("Loading"):
        model = eng.models.load(choice, progress=lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=msg))
        bar.progress(1.0, text=f"{choice} loaded in {model.load_seconds:.1f} s: "
                               f"{format_bytes(model.measured_bytes)} measured")
        st.rerun()
if col_unload.button("Unload", key="models_unload", icon=":material/eject:"):
    with error_boundary("Unloading"):
        if not eng.models.unload(choice):
            st.info(f"{choice} is not loaded.")
        else:
            st.rerun()

# ---- an admin shares a registered model with every user ----
entry = next((e for e in entries if e.name == choice), None)
if user.is_admin and entry is not None and entry.sharing != "built in":
    published = entry.sharing == "published"
    if st.button("Withdraw from every user" if published else "Publish to every user", key="models_publish",
                 icon=":material/group_off:" if published else ":material/group:",
                 help="published models are listed, and served, for every user; the others only for their owner"):
        with error_boundary("Publishing"):
            publish_model(eng, user, choice, shared=not published)
            st.rerun()

# ---- a fine-tune on llama.cpp ----
chosen = eng.catalog.get(choice) if choice else None
if chosen is not None and chosen.source == "trained":
    if chosen.data.get("gguf"):
        st.caption(f":material/bolt: {choice} has a {chosen.data.get('gguf_quant', '').upper()} GGUF: chat with "
                   f"backend auto serves it on llama.cpp. `{chosen.data['gguf']}`")
    else:
        st.caption(f"{choice} runs on transformers in fp32. Export it to GGUF and llama.cpp serves it, "
                   "several times faster on a CPU (about a minute for a model of a few hundred million parameters).")
    running = export_in_progress(eng, user, choice)
    if running is not None:
        st.progress(float(running.get("progress") or 0.0),
                    text=f"Export job {running['id']} ({running['state']}): {running.get('message') or 'waiting'}")
        st.page_link("app_pages/jobs.py", label="Follow it on the Jobs page", icon=":material/work_history:")
    else:
        quant = st.radio("GGUF form", ["q8_0", "q4"], horizontal=True, key="models_export_quant",
                         help="q8_0: perplexity within 2% of the fp32 weights; q4: the base GGUF's own 4-bit type, "
                              "smaller and faster, within 5%")
        # A job, not work in this server: the merged fp32 weights (about 1 GB for Gemma 270M) are admitted
        # by memory like any job, and the export survives this page being closed.
        if st.button("Export to GGUF for llama.cpp", key="models_export", icon=":material/bolt:"):
            with error_boundary("Exporting"):
                job_id = submit_export(eng, user, choice, quant, origin=access.WEB)
                st.success(f"Export of {choice} queued as job {job_id}. When it is done, chat with backend auto "
                           "serves it on llama.cpp.")
                st.page_link("app_pages/jobs.py", label="Follow it on the Jobs page", icon=":material/work_history:")

# ---- use from code: the OpenAI-compatible API of this engine ----
with st.expander("Use from code", icon=":material/code:"):
    api = api_access(eng)
    if api.running:
        st.markdown(f"API at `{api.base_url}` · "
                    + ("an API key is required (`LLMOS_API_KEY`)" if api.key_required else "no key needed"))
    else:
        st.info(api.note, icon=":material/info:")
    choice_task = eng.catalog.get(choice).task
    st.code(curl_snippet(api, choice, choice_task), language="bash")
    st.code(openai_snippet(api, choice, choice_task), language="python")
    if api.running:
        st.caption(api.note)

# ---- find a model on the hub, with predictions ----
tiers_section(eng)
search_section(eng, user)

# ---- add a model ----
with st.expander("Add a model: Hugging Face id, local folder or .gguf file", icon=":material/add:"):
    ref = st.text_input("Hugging Face id, folder or file", key="models_ref",
                        placeholder="Helsinki-NLP/opus-mt-en-de  or  /path/to/folder  or  /path/model.gguf")
    name = st.text_input("Name in the catalog (optional)", key="models_name")
    task = st.radio("Kind", ["causal-lm", "seq2seq", "sentence-embedding"], horizontal=True, key="models_task",
                    help="seq2seq: encoder-decoder models such as Marian/opus-mt, NLLB or M2M100 (translation)")
    admin = access.admin_enabled()
    trust = st.checkbox("Trust remote code", key="models_trust", disabled=not admin,
                        help="runs Python code shipped with the model; tick only for models you trust" if admin
                        else "off: only when LLM OS runs with LLMOS_ADMIN=1")
    if not admin:
        st.caption("Folders and files are taken from the LLM OS data folder only; others need LLMOS_ADMIN=1.")
    if st.button("Pull", key="models_pull", icon=":material/download:", disabled=not ref.strip()):
        bar = st.progress(0.0, text="Starting...")
        with error_boundary("Pulling"):
            pulled = pull_and_register(eng, user, ref, name=name, task=task, trust_remote_code=trust, origin="web",
                                       progress=lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=msg))
            st.success(f"{pulled.name} is in the catalog." if pulled.registered else
                       f"{pulled.name} was in the catalog already; its files are ready.")

# ---- refusals and events ----
if eng.models.refusals:
    st.subheader("Refused loads")
    for r in list(eng.models.refusals):
        st.warning(r["reason"], icon=":material/block:")
events = eng.store.events(kinds=("load", "unload", "evict", "idle_unload", "refuse", "load_failed"), limit=20)
if events:
    with st.expander("Recent model events"):
        st.dataframe(pd.DataFrame([{"time": pd.to_datetime(e["ts"], unit="s"), "event": e["kind"],
                                    "model": e["subject"], "message": e["message"]} for e in events]),
                     hide_index=True, width="stretch")
