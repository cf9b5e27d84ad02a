"""The Train page's data step, from documents: upload txt/md/docx/pdf/html, pick the chunk length (in the
tokens of the model that will train), preview the clean chunks, and keep them as a training set."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from llmos_core.models.catalog import CAUSAL_LM, DEFAULT_BASE_MODEL
from llmos_core.usecases import datasets
from llmos_core.usecases.models import model_names
from app_pages._shared import acting_user, error_boundary

DATA_FILE, DOCUMENTS = "A data file", "Documents (continued pre-training)"
state = st.session_state


def choose_source() -> str:
    """The radio between a data file and documents; a saved chunk set comes back here as a data file."""
    if "train_source_next" in state:   # set by Save below, applied before the radio exists in this run
        state["train_source"] = state.pop("train_source_next")
    return st.radio("Start from", [DATA_FILE, DOCUMENTS], key="train_source", horizontal=True,
                    label_visibility="collapsed")


def render(eng) -> None:
    files = st.file_uploader("Documents: txt, md, docx, pdf or html (read in an isolated process)",
                             type=list(datasets.DOCUMENT_TYPES), accept_multiple_files=True, key="train_docs_upload",
                             max_upload_size=eng.settings.max_upload_mb)
    if not files:
        st.info("Upload documents to make a training set for continued pre-training: their text is cleaned "
                "(headers, footers and page numbers left out) and cut into chunks of the length you choose, "
                "counted in the model's own tokens.", icon=":material/upload_file:")
        return
    models = model_names(eng, acting_user(), CAUSAL_LM)
    cols = st.columns(2)
    model = cols[0].selectbox("Tokens of", models, key="train_docs_model",
                              index=models.index(DEFAULT_BASE_MODEL) if DEFAULT_BASE_MODEL in models else 0,
                              help="the model you will train: chunk lengths are counted with its tokenizer")
    length = cols[1].number_input("Chunk length (tokens)", 16, 8192, 256, step=16, key="train_docs_tokens",
                                  help="each chunk holds at most this many tokens; the block length is a good choice")
    with error_boundary("Reading the documents"):
        key = tuple((f.name, f.size, f.file_id) for f in files)
        if state.get("train_docs_key") != key:   # parse once per upload, not on every rerun
            with st.spinner(f"Reading {len(files)} document(s) in an isolated process..."):
                state["train_docs"] = datasets.read_documents(eng.settings, [(f.name, f.getvalue()) for f in files])
            state["train_docs_key"] = key
        documents = state["train_docs"]
        if not datasets.tokenizer_ready(eng.settings, model) and not st.button(
                f"Convert {model} and count its tokens", key="train_docs_prepare", icon=":material/sync:"):
            st.info(f"Read {len(documents.paragraphs)} paragraphs from {len(documents.names)} document(s). {model} "
                    "has not been converted yet: its tokenizer is read after a one-time conversion (about a "
                    "minute), which the first run or Chat would do too.", icon=":material/info:")
            return
        with st.spinner(f"Counting tokens with {model}'s tokenizer (a model never used is converted first)..."):
            chunks = datasets.chunk_documents(eng.settings, documents, model, length)
        st.caption(f"**{len(chunks.texts)}** chunks, **{sum(chunks.tokens):,}** tokens of {model} from "
                   f"{len(documents.names)} document(s); {chunks.dropped_paragraphs} paragraphs left out in cleaning.")
        st.dataframe(pd.DataFrame(chunks.preview()), hide_index=True, width="stretch", key="train_docs_preview")
        if st.button("Keep as a training set", key="train_docs_save", icon=":material/save:", type="primary"):
            kept = datasets.save_chunks(eng.settings, acting_user(), documents, chunks, length)
            state["train_dataset"], state["train_source_next"] = kept.name, DATA_FILE
            st.rerun()


def show_formatted(eng, dataset, model: str) -> None:
    """The first examples as the model will see them: the prompt it reads, then the part it learns."""
    with st.expander("What the model sees", icon=":material/visibility:", expanded=dataset.shape != "text"):
        if not datasets.tokenizer_ready(eng.settings, model):
            st.caption(f"Shown once {model} is converted (the first run, or Chat, does that).")
            return
        with error_boundary("Formatting the examples"):
            for example in datasets.formatted_examples(eng.settings, dataset, model):
                if example["prompt"]:
                    st.caption("Read, not trained on:")
                    st.code(example["prompt"], language=None, wrap_lines=True)
                st.caption("Learned:")
                st.code(example["response"], language=None, wrap_lines=True)
