"""LLM OS: the Streamlit entry. Frames and routes; every page lives in app_pages/."""
from __future__ import annotations

import streamlit as st

from app_pages._monitor_view import alert_toasts
from app_pages._shared import draw_sidebar, engine, require_login

st.set_page_config(page_title="LLM OS", page_icon=":material/memory:", layout="wide")
require_login()   # before any page: beyond loopback, a password (or no service at all)

# Explicit entries, never folder auto-discovery: the order here is the order in the sidebar.
PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/chat.py", title="Chat", icon=":material/chat:"),
    st.Page("app_pages/ask.py", title="Ask", icon=":material/quick_reference_all:"),
    st.Page("app_pages/translate.py", title="Translate", icon=":material/translate:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/jobs.py", title="Jobs", icon=":material/work_history:"),
    st.Page("app_pages/models.py", title="Models", icon=":material/deployed_code:"),
    st.Page("app_pages/monitor.py", title="Monitor", icon=":material/monitoring:"),
]

page = st.navigation(PAGES)
draw_sidebar()
alert_toasts(engine().store)
page.run()
