"""Translate: drop a document (or paste text), get it back translated in the same format, structure kept.

Short documents translate here with a progress bar; long ones run as a job of the scheduler (they
survive a page refresh: the job id is in the URL and the page reattaches). The side-by-side preview
lets the user correct any segment before downloading.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import streamlit as st

from llmos_core.errors import InvalidInput
from llmos_core.models.catalog import CAUSAL_LM, SEQ2SEQ
from llmos_core.translation import documents, open_engine, parse_glossary
from llmos_core.translation.job import job_threshold
from llmos_core.translation.segment import from_display, to_display
from llmos_core.translation.translator import LANGUAGES, Translator, language_name
from app_pages._shared import engine, error_boundary

FILE_TYPES = ["txt", "md", "markdown", "docx", "pdf", "srt", "html", "htm"]

eng = engine()
st.title(":material/translate: Translate")
st.caption("Text, Markdown, Word, PDF, subtitles and HTML come back in their own format, with their headings, "
           "lists, tables, formatting, code and timings in place.")
state = st.session_state
state.setdefault("translate_result", None)


def language_label(code: str) -> str:
    return "Detect automatically" if code == "auto" else f"{language_name(code)} ({code})"


# ---- what to translate ----
mode = st.radio("Input", ["Upload a document", "Paste text"], horizontal=True, key="translate_mode",
                label_visibility="collapsed")
data, name = None, None
if mode == "Upload a document":
    upload = st.file_uploader("Document", type=FILE_TYPES, key="translate_upload",
                              help=f"up to {eng.settings.max_upload_mb} MB: .txt .md .docx .pdf .srt .html")
    if upload is not None:
        data, name = upload.getvalue(), upload.name
else:
    pasted = st.text_area("Text to translate", key="translate_paste", height=180)
    if pasted.strip():
        data, name = pasted.encode("utf-8"), "pasted.txt"

# ---- how ----
seq2seq = eng.catalog.names(SEQ2SEQ)
causal = eng.catalog.names(CAUSAL_LM)   # not the sentence-embedding models
col_src, col_tgt, col_model = st.columns(3)
source = col_src.selectbox("From", ["auto", *LANGUAGES], format_func=language_label, key="translate_source")
codes = list(LANGUAGES)
target = col_tgt.selectbox("To", codes, index=codes.index("de"), format_func=language_label, key="translate_target")
model_name = col_model.selectbox("Model", seq2seq + causal, key="translate_model",
                                 format_func=lambda n: f"{n} (translation model)" if n in seq2seq else f"{n} (prompted LM)")
if model_name not in seq2seq:
    st.caption(f":material/info: {model_name} is a general language model prompted with examples; it works offline, "
               "but a dedicated translation model (opus-mt, NLLB, M2M100: add one on the Models page) translates "
               "much better.")
pdf_as = "docx"
if name and name.lower().endswith(".pdf"):
    pdf_as = st.radio("A PDF comes back as", ["docx", "txt"], horizontal=True, key="translate_pdf_as",
                      help="the text of a PDF can be translated, its layout cannot be rebuilt")
with st.expander("Glossary: terms that must be translated your way", icon=":material/menu_book:"):
    glossary_text = st.text_area("One pair a line: term = translation", key="translate_glossary",
                                 placeholder="engine = Motor\nLLM OS = LLM OS")

glossary: dict[str, str] = {}
doc = None
with error_boundary("Reading the glossary"):
    glossary = parse_glossary(glossary_text or "")
if data is not None:
    with error_boundary("Reading the document"):
        doc = documents.parse(data, name, eng.settings.max_upload_mb * 1024**2, pdf_as)
        kinds = pd.Series([s.kind for s in doc.segments]).value_counts().to_dict()
        st.caption(f"{doc.format.upper()} · {len(doc.segments)} segments ("
                   + ", ".join(f"{v} {k}" for k, v in kinds.items()) + f") → {doc.output_name}")
        for note in doc.notes:
            st.info(note, icon=":material/info:")


def run_here(doc: documents.ParsedDocument) -> None:
    bar = st.progress(0.0, text="Loading the model...")

    def progress(done: int, total: int, eta: float | None) -> None:
        left = f" · about {eta:.0f} s left" if eta is not None else ""
        bar.progress(done / max(total, 1), text=f"{done}/{total} segments{left}")

    with open_engine(eng, model_name) as model:
        translator = Translator(model, target, source, glossary)
        texts = translator.translate(doc.texts(), progress)
    bar.progress(1.0, text=f"Done: {len(texts)} segments in {translator.stats.seconds:.1f} s")
    state.translate_result = {"name": doc.name, "data": doc.data, "pdf_as": pdf_as, "sources": doc.texts(),
                              "translations": texts, "stats": translator.stats.to_dict(), "target": target}


def submit_job(doc: documents.ParsedDocument) -> int:
    uploads = eng.settings.home / "translate" / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    path = uploads / f"{hashlib.sha256(doc.data).hexdigest()[:16]}-{Path(doc.name).name}"
    documents.write_output(path, doc.data)
    return eng.scheduler.submit("translate", {"input": str(path), "filename": doc.name, "target": target,
                                              "source": source, "model": model_name, "glossary": glossary,
                                              "pdf_output": pdf_as})


job_id = st.query_params.get("translate_job")
if st.button("Translate", key="translate_run", type="primary", icon=":material/translate:",
             disabled=doc is None or not model_name):
    with error_boundary("Translating"):
        if len(doc.segments) > job_threshold():
            job_id = str(submit_job(doc))
            st.query_params["translate_job"] = job_id   # in the URL: a refresh finds the job again
            state.translate_result = None
        else:
            st.query_params.pop("translate_job", None)
            job_id = None
            run_here(doc)


# ---- a long document's job ----
def load_job_result(job: dict) -> None:
    result = job["result"]
    saved = json.loads(Path(result["segments_file"]).read_text(encoding="utf-8"))
    params = job["params"]
    state.translate_result = {"name": params["filename"], "data": Path(params["input"]).read_bytes(),
                              "pdf_as": params.get("pdf_output", "docx"), "sources": saved["sources"],
                              "translations": saved["translations"], "stats": saved["stats"],
                              "target": params["target"], "job": job["id"]}


@st.fragment(run_every=2.0)
def job_panel(job_id: int) -> None:
    job = eng.scheduler.get(job_id)
    with st.container(border=True):
        st.markdown(f"**Job {job_id}** · {job['description']} · {job['state']}")
        st.progress(float(job["progress"] or 0.0), text=job["message"] or job["state"])
        if job["state"] == "queued":
            st.caption(eng.scheduler.waiting_reason(job_id) or "waiting for the scheduler")
        left, right = st.columns(2)
        if job["state"] in ("queued", "running") and left.button("Cancel", key="translate_job_cancel",
                                                                 icon=":material/stop:"):
            eng.scheduler.cancel(job_id)
            st.rerun()
        if right.button("Forget this job", key="translate_job_forget", icon=":material/close:"):
            st.query_params.pop("translate_job", None)
            st.rerun()
        if job["state"] == "succeeded" and (state.translate_result or {}).get("job") != job_id:
            load_job_result(job)
            st.rerun()
        if job["state"] in ("failed", "interrupted"):
            st.error(f"The job {job['state']}: {job['message']}", icon=":material/error:")
            with st.expander("Log"):
                st.code(eng.scheduler.log_tail(job_id, 30))


if job_id:
    with error_boundary("Reading the job"):
        job_panel(int(job_id))

# ---- the result: side by side, editable, downloadable ----
result = state.translate_result
if result:
    stats = result["stats"]
    st.subheader("Preview")
    detected = " (detected)" if stats.get("detected") else ""
    st.caption(f"{stats['segments']} segments from {language_name(stats['source'])}{detected} to "
               f"{language_name(result['target'])} · {stats['unique']} sentences through the model, "
               f"{stats['cached']} from the cache · {stats['seconds']:.1f} s. ⟦n⟧ marks formatting, code or links "
               "kept from the original: leave them in place.")
    for note in stats.get("notes", []):
        st.caption(f":material/info: {note}")
    table = pd.DataFrame({"source": [to_display(t) for t in result["sources"]],
                          "translation": [to_display(t) for t in result["translations"]]})
    edited = st.data_editor(table, key="translate_editor", hide_index=True, width="stretch", disabled=["source"],
                            column_config={"source": st.column_config.TextColumn("Source", width="large"),
                                           "translation": st.column_config.TextColumn("Translation", width="large")})
    with error_boundary("Building the translated document"):
        final = documents.parse(result["data"], result["name"], eng.settings.max_upload_mb * 1024**2, result["pdf_as"])
        texts = [from_display(str(t)) for t in edited["translation"].fillna("")]
        if len(texts) != len(final.segments):
            raise InvalidInput("the preview lost some rows", "translate the document again")
        st.download_button(f"Download {final.output_name}", final.render(texts), file_name=final.output_name,
                           mime=final.mime, key="translate_download", type="primary", icon=":material/download:")
