"""The login as each script run sees it: who this browser is, from its login cookie, checked every run.

The login itself happens before Streamlit (llmos_core/weblogin/gate.py: the login page, the cookie, the
refusals); here each run reads the cookie the browser sent with this connection (st.context.cookies, which
holds HttpOnly cookies too) and checks it against the open logins, so a logout, an expiry or a removed user
ends the session at its next run, and a session resumed without the cookie is not logged in.
"""
from __future__ import annotations

import streamlit as st

import app_pages._shared as shared
from llmos_core import access
from llmos_core.accounts import LOCAL_ADMIN, User, UserNotFound
from llmos_core.weblogin import COOKIE, LOGIN_PATH, LOGOUT_PATH, logins


def browser_cookie() -> str | None:
    """The login cookie this browser sent when it opened this connection."""
    return st.context.cookies.get(COOKIE)


def base_path() -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


def _session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx else None


def require_login() -> User:
    """Before any page: who this run acts as, or the page stops (no one may be served, or log in first)."""
    eng = shared.engine()
    address = shared.server_address()
    users = eng.accounts.any_users()
    reason = access.refusal(address, users)
    if reason:
        shared._tell_the_terminal(reason)
        st.error(reason, icon=":material/lock:")
        st.stop()
    if not access.login_needed(address, users):
        st.session_state.pop("llmos_user", None)
        st.session_state.pop("llmos_login", None)
        return LOCAL_ADMIN
    book = logins()
    login = book.check(browser_cookie())
    user = None
    if login is not None:
        try:
            user = eng.accounts.user_by_id(login.user_id)
        except UserNotFound:       # removed since: the login ends with it
            book.close(login.id)
    if user is None:
        st.session_state.pop("llmos_user", None)
        st.session_state.pop("llmos_login", None)
        st.title(":material/lock: LLM OS")
        st.info("Log in to use LLM OS: your login ended, or this browser has not logged in.", icon=":material/lock:")
        st.markdown(f'<a href="{base_path()}{LOGIN_PATH}" target="_self">Log in</a>', unsafe_allow_html=True)
        st.stop()
    st.session_state["llmos_user"] = user
    st.session_state["llmos_login"] = login.id
    session_id = _session_id()
    if session_id:
        book.bind(session_id, login.id)
    return user


def account_sidebar(user: User) -> None:
    """Who is logged in, and Log out (a form posted to the gate, which closes the login and clears the
    cookie: the script cannot touch an HttpOnly cookie)."""
    if not st.session_state.get("llmos_login"):
        return
    with st.sidebar:
        role = " · admin" if user.is_admin else ""
        st.caption(f":material/person: **{user.name}**{role}")
        st.html(f'<form method="post" action="{base_path()}{LOGOUT_PATH}">'
                '<button type="submit" style="background:none;border:1px solid rgba(250,250,250,.2);'
                'color:inherit;border-radius:.5rem;padding:.25rem .75rem;cursor:pointer">Log out</button></form>')
