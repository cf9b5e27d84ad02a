"""LLM OS: the Streamlit entry. Frames and routes; every page lives in app_pages/.

`streamlit run app.py` finds `app` below (an st.App) and imports this file once to build the server: the
gate (llmos_core/weblogin/gate.py) then stands in front of every request, checking the Host header and,
where a login is asked, the login cookie, before Streamlit sees anything. Each script run executes this
file again as __main__: the pages.
"""
from __future__ import annotations

import streamlit as st

if __name__ != "__main__":   # the server's one import (see above), never a script run
    import threading
    from contextlib import asynccontextmanager

    from starlette.middleware import Middleware

    from llmos_core.engine import get_engine
    from llmos_core.monitor_feed import current_data
    from llmos_core.weblogin.gate import WebGate

    def _session_alive(session_id: str) -> bool:
        from streamlit import runtime

        return runtime.exists() and runtime.get_instance().is_active_session(session_id)

    @asynccontextmanager
    async def _start_engine(_app):
        # The engine starts with the server, not with the first visitor: the gate needs its accounts.
        threading.Thread(target=get_engine, name="llmos-engine-start", daemon=True).start()
        yield

    app = st.App(__file__, lifespan=_start_engine, middleware=[Middleware(
        WebGate, engine=get_engine, address=lambda: st.get_option("server.address"), feed=current_data,
        session_alive=_session_alive, base_path=st.get_option("server.baseUrlPath") or "")])
else:
    from app_pages._login import account_sidebar, require_login
    from app_pages._monitor_view import alert_toasts
    from app_pages._shared import draw_sidebar, engine

    st.set_page_config(page_title="LLM OS", page_icon=":material/memory:", layout="wide")
    user = require_login()   # before any page: who this browser is (or a login link, or no service at all)

    # Explicit entries, never folder auto-discovery: the order here is the order in the sidebar.
    PAGES = [
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/chat.py", title="Chat", icon=":material/chat:"),
        st.Page("app_pages/ask.py", title="Ask", icon=":material/quick_reference_all:"),
        st.Page("app_pages/translate.py", title="Translate", icon=":material/translate:"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/feedback.py", title="Feedback", icon=":material/thumbs_up_down:"),
        st.Page("app_pages/jobs.py", title="Jobs", icon=":material/work_history:"),
        st.Page("app_pages/models.py", title="Models", icon=":material/deployed_code:"),
        st.Page("app_pages/monitor.py", title="Monitor", icon=":material/monitoring:"),
    ]
    if user.id:   # a logged-in account: its own password and API keys
        PAGES.append(st.Page("app_pages/account.py", title="Account", icon=":material/person:"))
    if user.is_admin:   # users, limits, everyone's keys; the page itself refuses anyone else
        PAGES.append(st.Page("app_pages/admin.py", title="Admin", icon=":material/admin_panel_settings:"))

    page = st.navigation(PAGES)
    account_sidebar(user)
    draw_sidebar()
    alert_toasts(engine().store)
    page.run()
