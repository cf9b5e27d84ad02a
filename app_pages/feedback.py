"""Feedback: what you said about replies (thumbs, edits in Chat, choices in Compare), as preference data.

Lists your records, filters by model and kind, exports JSONL for training (pairs for DPO/ORPO, labelled
examples for KTO), keeps the export among your training data files (the Train page lists it), and takes
uploads of JSONL or CSV. The work is in llmos_core.usecases.feedback.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from llmos_core.usecases import feedback
from app_pages._shared import acting_user, engine, error_boundary

eng = engine()
user = acting_user()
state = st.session_state
KINDS = {"Pairs (DPO, ORPO)": "pair", "Thumbs (KTO)": "labelled"}

st.title(":material/thumbs_up_down: Feedback")
st.write("Rate replies in Chat (thumbs up or down, or edit what a reply should have said) and pick the better "
         "answer in Compare: each becomes a preference record here, kept with the model, its settings and the "
         "conversation so far. Train on them from the Train page.")

notice = state.pop("feedback_notice", None)
if notice:
    st.success(notice, icon=":material/check_circle:")

cols = st.columns([2, 2, 3])
model_names = eng.feedback.models(user)
model = cols[0].selectbox("Model", ["All models"] + model_names, key="feedback_model")
kind_label = cols[1].radio("Kind", list(KINDS), key="feedback_kind", horizontal=True)
kind, model = KINDS[kind_label], None if model == "All models" else model

with error_boundary("Listing feedback"):
    rows = feedback.list_feedback(eng, user, model, kind)
    if not rows:
        st.info("No feedback of this kind yet. In Chat, use the thumbs or Edit under a reply; in Compare, "
                "“This one is better”. Or upload a file below.", icon=":material/info:")
    else:
        table = [{"id": r["id"], "model": r["model"], "from": r["source"],
                  "prompt": r["prompt"][-1]["content"][:120],
                  **({"chosen": r["chosen"][:120], "rejected": r["rejected"][:120]} if kind == "pair" else
                     {"reply": r["completion"][:120], "label": "up" if r["label"] else "down"})} for r in rows]
        st.caption(f"{len(rows)} record(s), newest first.")
        st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch", key="feedback_table")
        actions = st.columns([2, 2, 2, 3])
        actions[0].download_button("Export JSONL", feedback.export_jsonl(eng, user, model, kind),
                                   file_name=f"feedback-{kind}s.jsonl", mime="application/json",
                                   key="feedback_export", icon=":material/download:")
        if actions[1].button("Keep for training", key="feedback_keep", icon=":material/save:",
                             help="Save this export among your data files: the Train page lists it."):
            with error_boundary("Saving"):
                kept = feedback.save_for_training(eng, user, model, kind)
                st.success(f"Saved as **{kept.name}**: pick it in the Train page's data list.",
                           icon=":material/check_circle:")
        with actions[2].popover("Delete one", icon=":material/delete:"):
            chosen = st.selectbox("Record", [r["id"] for r in rows], key="feedback_delete_id")
            if st.button("Delete", key="feedback_delete", type="primary"):
                with error_boundary("Deleting"):
                    feedback.delete_feedback(eng, user, int(chosen))
                    st.rerun()

st.subheader("Upload")
st.caption("JSONL or CSV. Pairs: columns `prompt`, `chosen`, `rejected`; thumbs: `prompt`, `completion`, "
           "`label` (true/false). A prompt is text, or a JSON list of {role, content} messages ending with the "
           "user's turn. Every row is checked before any is added; the kind chosen above says which columns are read.")
upload = st.file_uploader("Preference file", type=["jsonl", "csv"], key="feedback_upload",
                          max_upload_size=feedback.MAX_UPLOAD_MB)
if upload is not None and st.button("Add to my feedback", key="feedback_import", icon=":material/upload:"):
    with error_boundary("Uploading"):
        count = feedback.import_file(eng, user, upload.name, upload.getvalue(), kind=kind)
        state["feedback_notice"] = f"Added {count} record(s) from {upload.name}."
        st.rerun()   # the list and the model filter above now include them
