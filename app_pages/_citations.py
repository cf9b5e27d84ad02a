"""The passages an answer stands on, drawn the same way on the Ask and Chat pages: one expander per
passage (file, heading or page; the passage itself on click), the cited ones first. And Ask's reply:
the quoted sentences with their citation, then the model's wording, marked as the model's."""
from __future__ import annotations

import streamlit as st


def draw_quotes(quotes: list) -> None:
    """The sentences that answer, verbatim, each with its citation (rag/quotes.py's Quote)."""
    for quote in quotes:
        body = "\n".join(f"> {line}" for line in quote.text.splitlines())
        st.markdown(f"{body}\n>\n> — **{quote.citation()}**")


def draw_wording(wording) -> None:
    """The model's wording, marked as the model's; or why it is not shown (rag/quotes.py's ModelWording)."""
    if wording is None:
        return
    if wording.shown:
        with st.container(border=True):
            st.caption(":material/smart_toy: The model's wording — every number, time and name in it was "
                       "found in the quotes above")
            st.text(wording.text)
    elif wording.note:
        st.caption(f":material/report: {wording.note}")


def draw_grounding(grounding: dict | None) -> None:
    """Chat with documents: whether each number and name of the model's reply is in the passages it was given."""
    if not grounding or not grounding.get("claims"):
        return
    unsupported = [c["claim"] for c in grounding["claims"] if not c["supported"]]
    if unsupported:
        st.warning("Not in the documents, so unchecked: " + ", ".join(f"“{c}”" for c in unsupported[:8]) +
                   ". Treat this reply as the model's words, not as what the documents say.", icon=":material/report:")
    else:
        st.caption(f":material/verified: Every number and name in this reply ({len(grounding['claims'])}) is in "
                   "the passages it was given.")


def draw_citations(citations: list[dict]) -> None:
    if citations and not any(c["cited"] for c in citations):
        st.caption("The answer cites no passage by number; these are the ones the model was given.")
    for c in citations:
        where = ", ".join(filter(None, [c["heading"], c["page"] and f"page {c['page']}"]))
        label = f"[{c['number']}] {c['file']}" + (f" — {where}" if where else "") + (" · cited" if c["cited"] else "")
        with st.expander(label, icon=":material/format_quote:"):
            st.text(c["passage"])
