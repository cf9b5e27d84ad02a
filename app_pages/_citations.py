"""The passages an answer stands on, drawn the same way on the Ask and Chat pages: one expander per
passage (file, heading or page; the passage itself on click), the cited ones first."""
from __future__ import annotations

import streamlit as st


def draw_citations(citations: list[dict]) -> None:
    if citations and not any(c["cited"] for c in citations):
        st.caption("The answer cites no passage by number; these are the ones the model was given.")
    for c in citations:
        where = ", ".join(filter(None, [c["heading"], c["page"] and f"page {c['page']}"]))
        label = f"[{c['number']}] {c['file']}" + (f" — {where}" if where else "") + (" · cited" if c["cited"] else "")
        with st.expander(label, icon=":material/format_quote:"):
            st.text(c["passage"])
