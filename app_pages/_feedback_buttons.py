"""Feedback under a Chat reply: thumbs up / down and "Edit" (what the reply should have said); and
"This one is better" under a Compare answer. Each click is a use case in llmos_core.usecases.feedback."""
from __future__ import annotations

import streamlit as st

from llmos_core.usecases import feedback
from app_pages._shared import error_boundary


def draw_reply_feedback(eng, user, conversation_id: int, message: dict, record: dict | None) -> None:
    """The buttons under one assistant message; `record`: what the user said about it already (or None)."""
    mid = message["id"]
    up = record is not None and record["kind"] == "labelled" and record["label"] == 1
    edited = record is not None and record["kind"] == "pair"
    down = record is not None and (edited or record["label"] == 0)
    cols = st.columns([0.6, 0.6, 1, 6])
    vote = None
    if cols[0].button("", key=f"chat_fb_up_{mid}", icon=":material/thumb_up:", type="primary" if up else "tertiary",
                      help="A good reply (kept as a labelled example for KTO). Click again to take it back."):
        vote = None if up else feedback.UP
    elif cols[1].button("", key=f"chat_fb_down_{mid}", icon=":material/thumb_down:",
                        type="primary" if down else "tertiary",
                        help="A bad reply. Edit it too, to say what it should have been (a pair for DPO)."):
        vote = None if down else feedback.DOWN
    else:
        vote = "unchanged"
    if vote != "unchanged":
        with error_boundary("Saving your rating"):
            feedback.rate_reply(eng, user, conversation_id, mid, vote)
            st.rerun()
    with cols[2].popover("Edit", icon=":material/edit:", help="Write what the reply should have said"):
        key = f"chat_fb_edit_text_{mid}"
        st.session_state.setdefault(key, record["chosen"] if edited else message["content"])
        st.text_area("What it should have said", key=key, height=150)
        if st.button("Save the edit", key=f"chat_fb_edit_save_{mid}", icon=":material/save:"):
            with error_boundary("Saving your edit"):
                feedback.edit_reply(eng, user, conversation_id, mid, st.session_state[key])
                st.rerun()
    if edited:
        cols[3].caption(":material/edit_note: Your edit is kept as the better reply (Feedback page).")


def draw_compare_choice(eng, user, comparison_id: int, answers: list[dict], columns: list) -> None:
    """A "This one is better" button under each answer column that has text."""
    chosen = feedback.comparison_choice(eng, user, comparison_id)
    for index, (column, answer) in enumerate(zip(columns, answers)):
        if answer["error"] or not answer["text"].strip():
            continue
        if chosen == index:
            column.caption(":material/check_circle: You preferred this one.")
        elif column.button("This one is better", key=f"chat_compare_better_{index}", icon=":material/thumb_up:"):
            with error_boundary("Saving your choice"):
                feedback.prefer_answer(eng, user, comparison_id, index)
                st.rerun()
