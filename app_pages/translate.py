"""Translate: drop a document (or paste text), get it back translated in the same format, structure kept.

Short documents translate here with a progress bar; long ones run as a job of the scheduler (they
survive a page refresh: the job id is in the URL and the page reattaches). The side-by-side preview
lets the user correct any segment before downloading.
"""
from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from llmos_core.errors import InvalidInput, LLMOSError
from llmos_core.models.catalog import CAUSAL_LM, SEQ2SEQ
from llmos_core.translation import documents, parse_glossary
from llmos_core.translation.isolation import parse_in_child
from llmos_core.translation.languages import LANGUAGES, language_name
from llmos_core.translation.model_choice import coverage_warning, default_translation_model
from llmos_core.translation.segment import from_display, to_display
from llmos_core.usecases import translate as translation
from llmos_core.usecases.models import model_names
from app_pages._shared import acting_user, engine, error_boundary, job_card_head

eng = engine()
user = acting_user()
st.title(":material/translate: Translate")
st.caption("Text, Markdown, Word, PDF, subtitles and HTML come back in their own format, with their headings, "
           "lists, tables, formatting, code and timings in place.")
state = st.session_state
state.setdefault("translate_result", None)


def parse_once(data: bytes, name: str, pdf_as: str) -> documents.ParsedDocument:
    """The upload parsed in a child process (a hostile file costs that process, not the server), once:
    reruns of the page find it by the bytes' hash. The upload and the shown result are kept (two)."""
    key = (hashlib.sha256(data).hexdigest(), name, pdf_as)
    parsed = state.setdefault("translate_parsed", {})
    if key not in parsed:
        try:
            parsed[key] = parse_in_child(data, name, eng.settings.max_upload_mb * 1024**2, pdf_as)
        except InvalidInput as exc:
            parsed[key] = exc
        while len(parsed) > 2:
            parsed.pop(next(iter(parsed)))
    if isinstance(parsed[key], InvalidInput):
        raise parsed[key]
    return parsed[key]


def language_label(code: str) -> str:
    return "Detect automatically" if code == "auto" else f"{language_name(code)} ({code})"


def saved_glossary_panel(source: str, target: str) -> None:
    """The terms saved for the language pair (added from the review below), which every translation of
    the pair uses; a wrong one can be removed here."""
    if source == "auto":
        st.caption("Terms you add from the review below are saved per language pair and used by every later "
                   "translation of the pair; choose the source language to see them.")
        return
    show_message("translate_glossary_message")
    with error_boundary("Reading the saved glossary"):
        saved = translation.saved_glossary(eng, user, source, target)
        pair = f"{language_name(source)} → {language_name(target)}"
        if not saved:
            st.caption(f"No saved {pair} terms yet: add corrected terms from the review after a translation.")
            return
        st.caption(f"{len(saved)} saved {pair} term(s), used by every translation of the pair:")
        st.dataframe(pd.DataFrame({"term": list(saved), "translation": list(saved.values())}), hide_index=True,
                     width="stretch", height=min(36 * (len(saved) + 1) + 2, 250))
        st.multiselect("Remove saved terms", list(saved), key="translate_glossary_remove")
        st.button("Remove", key="translate_glossary_remove_run", icon=":material/delete:",
                  disabled=not state.get("translate_glossary_remove"), on_click=remove_terms, args=(source, target))


# Callbacks: they run before the script, so the saved terms the page shows are already the new ones.
def report_to(key: str, action) -> None:
    """Run a callback's action; keep its message (or the engine's error, with its hint) for show_message."""
    try:
        state[key] = ("success", action())
    except LLMOSError as exc:
        state[key] = ("error", exc.message + (f"  \n**What to do:** {exc.hint}" if exc.hint else ""))


def remove_terms(source: str, target: str) -> None:
    gone, state.translate_glossary_remove = state.translate_glossary_remove, []
    report_to("translate_glossary_message", lambda: f"{translation.remove_from_glossary(eng, user, source, target, gone)} "
                                                    "term(s) removed from the glossary")


def add_term(result: translation.TranslationResult, term_key: str, meaning_key: str) -> None:
    term, meaning = " ".join(state[term_key].split()), " ".join(state[meaning_key].split())
    said = {"added": "added to", "updated": "updated in", "unchanged": "already in"}
    report_to("translate_term_message", lambda: f"{term} → {meaning}: "
              f"{said[translation.add_to_glossary(eng, user, result, term, meaning)]} the glossary; "
              "later translations of the pair use it")


def show_message(key: str) -> None:
    """A callback's outcome, shown once where its button is."""
    kind, text = state.pop(key, (None, ""))
    if kind == "success":
        st.success(text, icon=":material/check:")
    elif kind == "error":
        st.error(text, icon=":material/error:")


def glossary_form(result: translation.TranslationResult, texts: list[str]) -> None:
    """Corrected terms -> the saved glossary in one click: the form comes prefilled from a word diff of
    each corrected row against the machine's translation, aligned to the source words when they are found."""
    source, target = translation.result_languages(result)
    suggestions = translation.suggest_glossary_terms(result, texts)
    st.markdown(f"**Add a corrected term to the {language_name(source)} → {language_name(target)} glossary**")
    pick = 0
    if len(suggestions) > 1:
        pick = st.selectbox("Corrected term", range(len(suggestions)), key="translate_term_pick",
                            format_func=lambda i: f"{suggestions[i].source or '?'} → {suggestions[i].target} "
                                                  f"(row {suggestions[i].row + 1})")
    chosen = suggestions[pick] if suggestions else translation.TermSuggestion(-1, "", "")
    if chosen.row >= 0:
        note = "" if chosen.source else ": its source words were not found; type them"
        st.caption(f"Row {chosen.row + 1}{note}. Source: {to_display(result.sources[chosen.row])[:300]}")
    else:
        st.caption("No changed words found in the corrections: type the term and its translation.")
    # keys per suggestion: another choice comes prefilled anew, a typed value survives the form's rerun
    suffix = hashlib.sha1(repr((pick, chosen)).encode()).hexdigest()[:10]
    with st.form("translate_term_form", border=False):
        left, right = st.columns(2)
        left.text_input(f"Term ({source})", chosen.source, key=f"translate_term_source_{suffix}")
        right.text_input(f"Translation ({target})", chosen.target, key=f"translate_term_target_{suffix}")
        st.form_submit_button("Add to the glossary", key="translate_term_add", icon=":material/playlist_add:",
                              on_click=add_term, args=(result, f"translate_term_source_{suffix}",
                                                       f"translate_term_target_{suffix}"),
                              help="saved per language pair: every later translation of the pair, here, in a job "
                                   "or from the CLI, translates the term this way")
    show_message("translate_term_message")


# ---- what to translate ----
mode = st.radio("Input", ["Upload a document", "Paste text"], horizontal=True, key="translate_mode",
                label_visibility="collapsed")
data, name = None, None
if mode == "Upload a document":
    upload = st.file_uploader("Document", type=list(translation.FILE_TYPES), key="translate_upload", max_upload_size=eng.settings.max_upload_mb,
                              help=f"up to {eng.settings.max_upload_mb} MB: "
                                   + " ".join(f".{t}" for t in translation.FILE_TYPES))
    if upload is not None:
        data, name = upload.getvalue(), upload.name
else:
    pasted = st.text_area("Text to translate", key="translate_paste", height=180)
    if pasted.strip():
        data, name = pasted.encode("utf-8"), "pasted.txt"

# ---- how ----
seq2seq = model_names(eng, user, SEQ2SEQ)
causal = model_names(eng, user, CAUSAL_LM)   # not the sentence-embedding models
col_src, col_tgt, col_model = st.columns(3)
source = col_src.selectbox("From", ["auto", *LANGUAGES], format_func=language_label, key="translate_source")
codes = list(LANGUAGES)
target = col_tgt.selectbox("To", codes, index=codes.index("de"), format_func=language_label, key="translate_target")
models = seq2seq + causal
best = default_translation_model(eng.catalog) if models else None
model_name = col_model.selectbox("Model", models, index=models.index(best) if best in models else 0,
                                 key="translate_model", help="the default is the best offline translator in the "
                                 "catalog: a translation model if there is one, else the best prompted LM",
                                 format_func=lambda n: f"{n} (translation model)" if n in seq2seq else f"{n} (prompted LM)")
if model_name:
    outside = coverage_warning(eng.catalog.get(model_name), source, target)
    if outside:
        st.warning(outside, icon=":material/warning:")
if model_name not in seq2seq:
    st.caption(f":material/info: {model_name} is a general language model prompted with examples; it works offline, "
               "but a dedicated translation model (opus-mt, NLLB, M2M100: add one on the Models page) translates "
               "much better.")
pdf_as = "docx"
if name and name.lower().endswith(".pdf"):
    pdf_as = st.radio("A PDF comes back as", ["docx", "txt"], horizontal=True, key="translate_pdf_as",
                      help="the text of a PDF can be translated, its layout cannot be rebuilt")
with st.expander("Glossary: terms that must be translated your way", icon=":material/menu_book:"):
    glossary_text = st.text_area("For this translation, one pair a line: term = translation",
                                 key="translate_glossary", placeholder="engine = Motor\nLLM OS = LLM OS",
                                 help="these win over the saved terms below for the same term")
    saved_glossary_panel(source, target)

glossary: dict[str, str] = {}
doc = None
with error_boundary("Reading the glossary"):
    glossary = parse_glossary(glossary_text or "")
if data is not None:
    with error_boundary("Reading the document"):
        doc = parse_once(data, name, pdf_as)
        kinds = pd.Series([s.kind for s in doc.segments]).value_counts().to_dict()
        st.caption(f"{doc.format.upper()} · {len(doc.segments)} segments ("
                   + ", ".join(f"{v} {k}" for k, v in kinds.items()) + f") → {doc.output_name}")
        for note in doc.notes:
            st.info(note, icon=":material/info:")


def run_here(doc: documents.ParsedDocument, request: translation.TranslationRequest) -> None:
    bar = st.progress(0.0, text="Loading the model...")

    def progress(done: int, total: int, eta: float | None) -> None:
        left = f" · about {eta:.0f} s left" if eta is not None else ""
        bar.progress(done / max(total, 1), text=f"{done}/{total} segments{left}")

    state.translate_result = translation.translate_here(eng, user, doc, request, progress)
    done = state.translate_result
    bar.progress(1.0, text=f"Done: {len(done.translations)} segments in {done.stats['seconds']:.1f} s"
                           + (f" · {done.not_translated}" if done.not_translated else ""))


job_id = st.query_params.get("translate_job")
if st.button("Translate", key="translate_run", type="primary", icon=":material/translate:",
             disabled=doc is None or not model_name):
    with error_boundary("Translating"):
        request = translation.TranslationRequest(model_name, target, source, glossary, pdf_as)
        if translation.runs_as_job(doc):
            job_id = str(translation.submit_upload(eng, user, doc, request, origin="web"))
            st.query_params["translate_job"] = job_id   # in the URL: a refresh finds the job again
            state.translate_result = None
        else:
            st.query_params.pop("translate_job", None)
            job_id = None
            run_here(doc, request)


# ---- a long document's job ----
@st.fragment(run_every=2.0)
def job_panel(job_id: int) -> None:
    job = eng.scheduler.for_user(user).get(job_id)
    with st.container(border=True):
        _, right = job_card_head(eng, job, "translate_job_cancel")
        if right.button("Forget this job", key="translate_job_forget", icon=":material/close:"):
            st.query_params.pop("translate_job", None)
            st.rerun()
        if job["state"] == "succeeded" and getattr(state.translate_result, "job", None) != job_id:
            state.translate_result = translation.read_job_result(job)
            st.rerun()
        if job["state"] in ("failed", "interrupted"):
            st.error(f"The job {job['state']}: {job['message']}", icon=":material/error:")
            with st.expander("Log"):
                st.code(eng.scheduler.for_user(user).log_tail(job_id, 30))


if job_id:
    with error_boundary("Reading the job"):
        job_panel(int(job_id))

# ---- the result: side by side, editable, downloadable ----
result = state.translate_result
if result:
    stats = result.stats
    st.subheader("Preview")
    detected = " (detected)" if stats.get("detected") else ""
    sources = [to_display(t) for t in result.sources]
    terms = stats.get("glossary_terms", 0)
    st.caption(f"{stats['segments']} segments from {language_name(stats['source'])}{detected} to "
               f"{language_name(result.target)} · {stats['unique']} sentences through the model, "
               f"{stats['cached']} from the cache, {stats.get('from_memory', 0)} segment(s) from the translation "
               f"memory" + (f", {terms} glossary term(s) in force" if terms else "") + f" · {stats['seconds']:.1f} s."
               + (" ⟦n⟧ marks formatting, code or links kept from the original: leave them in place."
                  if any("⟦" in t for t in sources) else ""))
    if stats.get("backend"):
        st.caption(f":material/memory: Engine: {stats.get('backend_reason') or stats['backend']}")
    for note in stats.get("notes", []):
        st.caption(f":material/info: {note}")
    kept = set(result.untranslated)
    if kept:
        st.warning(f"**{result.not_translated}**: kept in the source language (rows "
                   + ", ".join(str(i + 1) for i in sorted(kept)[:30]) + "), marked below and in the bilingual "
                   "document. Translate them by hand in the table.", icon=":material/warning:")
    table = pd.DataFrame({"source": sources,
                          "translation": [to_display(t) for t in result.translations],
                          "check": ["not translated" if i in kept else "" for i in range(len(result.sources))]})
    # the rows to look at, highlighted (a Styler: the editor keeps its colours and its editing)
    styled = table.style.apply(lambda row: ["background-color: rgba(255, 193, 7, 0.35)" if row.name in kept else ""
                                            for _ in row], axis=1)
    edited = st.data_editor(styled if kept else table, key="translate_editor", hide_index=True, width="stretch",
                            disabled=["source", "check"],
                            # the check column only when a row needs it: else it takes the translation's room
                            column_order=["source", "translation", *(["check"] if kept else [])],
                            column_config={"source": st.column_config.TextColumn("Source", width="large"),
                                           "translation": st.column_config.TextColumn("Translation", width="large"),
                                           "check": st.column_config.TextColumn(
                                               "Check", help="the model's answers for this row stayed in the "
                                               "source language or broke its ⟦n⟧ marks: its source text is "
                                               "kept; translate it by hand")})
    texts = [from_display(str(t)) for t in edited["translation"].fillna("")]
    corrected = sum(a != b for a, b in zip(texts, result.translations))
    if st.button(f"Remember {corrected} correction(s) for later documents", key="translate_remember",
                 icon=":material/bookmark_add:", disabled=not corrected,
                 help="the translation memory: a later document with the same segment gets your translation, "
                      "not the model's"):
        with error_boundary("Saving to the translation memory"):
            saved = translation.remember_corrections(eng, user, result, texts)
            st.success(f"{saved} segment(s) saved to the translation memory", icon=":material/check:")
    if corrected:
        with st.container(border=True), error_boundary("Finding the corrected terms"):
            glossary_form(result, texts)
    with error_boundary("Building the translated document"):
        final = result.render(texts, eng.settings.max_upload_mb * 1024**2,
                              parse_once(result.data, result.name, result.pdf_as))
        left, right = st.columns(2)
        left.download_button(f"Download {final.file_name}", final.data, file_name=final.file_name,
                             mime=final.mime, key="translate_download", type="primary", icon=":material/download:")
        if result.name.lower().endswith(".pdf"):
            right.caption("A PDF has no bilingual form: its layout cannot be rebuilt.")
        else:
            both = result.render(texts, eng.settings.max_upload_mb * 1024**2,
                                 parse_once(result.data, result.name, result.pdf_as), bilingual=True)
            right.download_button(f"Download bilingual {both.file_name}", both.data, file_name=both.file_name,
                                  mime=both.mime, key="translate_download_bilingual", icon=":material/translate:",
                                  help="source and translation paragraph by paragraph (subtitles: both lines "
                                       "in each cue)")
