"""Account: the logged-in user's own password and API keys."""
from __future__ import annotations

import streamlit as st

from app_pages._keys import key_section
from app_pages._shared import current_user, engine, error_boundary
from llmos_core.weblogin import logins

user = current_user()
if user is None or not user.id:
    st.info("This page is for a logged-in account; with no account made, LLM OS has no login.", icon=":material/info:")
    st.stop()

accounts = engine().accounts
st.title(f":material/person: {user.name}")
st.caption("An admin." if user.is_admin else "A user: you see and change only what you made, and the shared models.")

with st.form("account_password", clear_on_submit=True):
    st.markdown("**Change your password**")
    current = st.text_input("Current password", type="password", key="account_current")
    new = st.text_input("New password", type="password", key="account_new", help="at least 8 characters")
    if st.form_submit_button("Change password", icon=":material/key:"):
        with error_boundary("Changing the password"):
            accounts.authenticate(user.name, current, address=st.context.ip_address or "web")   # the same back-off as a login
            accounts.set_password(user.name, new)
            logins().close_user(user.id)   # every login of yours ends, this one too: log in with the new one
            st.rerun()

key_section(accounts, user, [user.name], "account")
