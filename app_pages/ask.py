"""Ask: questions answered from your own documents, with the passages they come from.

Collections are made by uploading files (parsed in a limited child process, cut into passages, embedded
by a sentence-embedding model under the memory manager). An answer is the sentences of the documents that
answer, quoted with their citation; below them the model's wording, marked as the model's and shown only
when every number, time and name in it is in the quotes (usecases/ask.py checks it); then the window's
use and every passage retrieved, opened with a click. When no passage matches, or no sentence answers,
the page says so and shows no model text.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from llmos_core.generation import SamplingParams
from llmos_core.models.catalog import CAUSAL_LM, DEFAULT_EMBEDDING_MODEL, EMBEDDING
from llmos_core.present import format_bytes
from llmos_core.usecases import ask
from llmos_core.usecases.models import model_names
from app_pages._citations import draw_citations, draw_quotes, draw_wording
from app_pages._shared import acting_user, engine, error_boundary, job_card_head

NEW = "New collection..."
eng = engine()
user = acting_user()
state = st.session_state
state.setdefault("ask_result", None)          # (collection, question, Answer) of the last question
st.title(":material/quick_reference_all: Ask your documents")
st.caption("Upload documents into a collection, then ask questions: answers come from the passages that "
           "match, with citations. " + " ".join(f".{t}" for t in ask.FILE_TYPES if t != "htm"))

# ---------------------------------------------------------------- the collection
collections = ask.list_collections(eng, user)
names = [c["name"] for c in collections]
# A collection made by the last upload is shown through a new key for the box, not by setting the old key's
# value: the browser kept showing "New collection..." (still one of the options) over a value set from here
# and sent it back with the next change of any widget, so the page fell back to it (the browser test, 2 in 3).
if state.get("ask_pending_collection") in names:
    state["ask_collection_made"] = state.pop("ask_pending_collection")
    state["ask_collection_box"] = state.get("ask_collection_box", 0) + 1
options = names + [NEW]
made = state.get("ask_collection_made")
choice = st.selectbox("Collection", options, index=options.index(made) if made in options else 0,
                      key=f"ask_collection_{state.get('ask_collection_box', 0)}")
collection = choice
if choice == NEW:
    cols = st.columns([2, 1])
    collection = cols[0].text_input("Name of the new collection", key="ask_new_name",
                                    placeholder="handbook", help="lowercase letters, digits, - and _")
    embed_models = model_names(eng, user, EMBEDDING) or [DEFAULT_EMBEDDING_MODEL]
    cols[1].selectbox("Embedding model", embed_models, key="ask_embed_model")

uploads = st.file_uploader("Add documents", type=ask.FILE_TYPES, accept_multiple_files=True, key="ask_upload",
                           help=f"up to {eng.settings.max_upload_mb} MB each", max_upload_size=eng.settings.max_upload_mb)
if uploads and st.button("Add to collection", key="ask_add", icon=":material/upload_file:", type="primary"):
    with error_boundary("Adding documents"):
        files = [(u.name, u.getvalue()) for u in uploads]
        if ask.runs_as_job(files):         # large: a job of the scheduler, which outlives this page
            job = ask.submit_files(eng, user, (collection or "").strip(), files, state.get("ask_embed_model"), origin="web")
            st.query_params["ask_job"] = str(job)   # in the URL: a refresh finds the job again
        else:
            bar = st.progress(0.0, "Reading...")
            state["ask_reports"] = ask.add_files(
                eng, user, (collection or "").strip(), files, state.get("ask_embed_model"),
                lambda done, total, what: bar.progress(min(done / max(total, 1), 1.0), what))
            bar.empty()
        if collection not in names:
            state["ask_pending_collection"] = collection
            st.rerun()
for report in state.pop("ask_reports", []):
    if report.status == "failed":
        st.error(f"{report.name}: {report.error}", icon=":material/error:")
    else:
        st.success(f"{report.name}: {report.chunks} passages, embedded.", icon=":material/check_circle:")


@st.fragment(run_every=2.0)
def index_job_panel(job_id: int) -> None:
    job = eng.scheduler.for_user(user).get(job_id)
    with st.container(border=True):
        _, right = job_card_head(eng, job, "ask_job_cancel")
        if job["state"] not in ("queued", "running") and right.button("Close", key="ask_job_forget",
                                                                      icon=":material/close:"):
            st.query_params.pop("ask_job", None)
            st.rerun()
        if job["state"] in ("failed", "interrupted"):
            st.error(f"The job {job['state']}: {job['message']}", icon=":material/error:")
        if job["state"] not in ("queued", "running") and state.get("ask_job_drawn") != job_id:
            state["ask_job_drawn"] = job_id       # once: the whole page again, so the table shows the files
            st.rerun()


if st.query_params.get("ask_job"):
    with error_boundary("Reading the indexing job"):
        index_job_panel(int(st.query_params["ask_job"]))

if choice == NEW:
    st.info("Name the collection and add documents to start.", icon=":material/info:")
    st.stop()

documents = ask.list_documents(eng, user, collection)
with st.expander(f"{len(documents)} document(s) in {collection}", expanded=not state["ask_result"]):
    if documents:
        table = pd.DataFrame([{"file": d["name"], "format": d["format"], "size": format_bytes(d["size"]),
                               "status": d["status"], "passages": d["chunks"], "embedded": d["embedded"],
                               "problem": d["error"]} for d in documents])
        st.dataframe(table, hide_index=True, use_container_width=True)
        cols = st.columns([2, 1, 1])
        doomed = cols[0].selectbox("Document", [d["name"] for d in documents], key="ask_doomed",
                                   label_visibility="collapsed")
        if cols[1].button("Delete document", key="ask_delete_document", icon=":material/delete:"):
            with error_boundary("Deleting"):
                ask.remove_document(eng, user, collection, doomed)
                st.rerun()
        if cols[2].button("Delete collection", key="ask_delete_collection", icon=":material/delete_forever:"):
            with error_boundary("Deleting"):
                ask.remove_collection(eng, user, collection)
                state["ask_result"] = None
                st.rerun()

# ---------------------------------------------------------------- asking
models = model_names(eng, user, CAUSAL_LM)
default_model = ask.default_ask_model(eng.catalog) if models else None
cols = st.columns([2, 1])
model = cols[0].selectbox("Answer with", models, key="ask_model",
                          index=models.index(default_model) if default_model in models else 0,
                          help="The answer is the quoted sentences; this model words it, and its wording is "
                               "shown only when every number and name in it is in the quotes.")
max_new = cols[1].number_input("Max new tokens", 16, 2048, 256, key="ask_max_new_tokens")


def draw_meter(meter: dict) -> None:
    if not meter:
        return
    window = max(meter["window"], 1)
    st.progress(min(meter["used"] / window, 1.0),
                f"Context: {meter['used']:,} of {meter['window']:,} tokens of {model}'s window")
    st.caption(" · ".join(f"{part} {tokens:,}" for part, tokens in meter.items() if part not in ("window", "used")))


def draw_result(result: ask.Answer) -> None:
    """The wording (or why there is none), then the window's use and the passages."""
    if not result.found:
        st.warning(result.text, icon=":material/search_off:")
        return
    if not result.answered:
        st.warning(result.text, icon=":material/search_off:")
        st.caption(f"Why: {result.verdict}. The closest passages:")
    else:
        draw_wording(result.wording)
        draw_meter(result.meter)
    draw_citations(result.citations)


question = st.chat_input(f"Ask {collection}", key="ask_input")
if question is not None:
    state["ask_result"] = None
    with error_boundary("Asking"):
        params = SamplingParams.for_model(eng.catalog.get(model).sampling, max_new_tokens=int(max_new))
        with st.spinner("Finding the sentences that answer..."):
            plan = ask.prepare(eng, user, collection, question, model, params)
        with st.chat_message("user"):
            st.markdown(question)
        with st.chat_message("assistant"):
            draw_quotes(plan.quotes)            # the answer itself, at once
            with st.spinner("The model is wording the answer; each number and name is checked..."):
                result = ask.answer(eng, plan, params)
            draw_result(result)
        state["ask_result"] = (collection, question, result)
elif state["ask_result"] and state["ask_result"][0] == collection:
    _, question, result = state["ask_result"]
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        draw_quotes(result.quotes)
        draw_result(result)
