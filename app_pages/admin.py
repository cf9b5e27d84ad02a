"""Admin: the users (add, remove, new password, role), their limits, and everyone's API keys.

Only for admins: app.py lists it for them alone, and the page refuses anyone else who opens it by URL.
A password changed or a user removed here ends that user's open logins at once.
"""
from __future__ import annotations

import streamlit as st

from app_pages._keys import key_section, when
from app_pages._shared import current_user, engine, error_boundary
from llmos_core.accounts import DEFAULT_LIMITS, ROLES
from llmos_core.present import format_bytes
from llmos_core.weblogin import logins

GiB = 1024 ** 3

user = current_user()
if user is None or not user.is_admin:
    st.error("This page is for admins.", icon=":material/block:")
    st.stop()

eng = engine()
accounts = eng.accounts
st.title(":material/admin_panel_settings: Admin")

users = accounts.list_users()
if not users:
    st.info("No account exists yet: you are the local admin of a single-user LLM OS. Once an account exists, "
            "everyone logs in, you included, so the first account is an admin: make yours first.",
            icon=":material/info:")

# ---- users ----
st.subheader("Users")
if users:
    st.dataframe([{"name": u["name"], "role": u["role"], "since": when(u["created"])}
                  for u in users], hide_index=True, key="admin_users_table")

with st.form("admin_add_user", clear_on_submit=True):
    st.markdown("**Add a user**")
    left, middle, right = st.columns(3)
    name = left.text_input("Name", key="admin_new_name", help="up to 32 lower-case letters, digits, _ . -")
    password = middle.text_input("Password", type="password", key="admin_new_password", help="at least 8 characters")
    role = right.selectbox("Role", ROLES if users else ("admin",), key="admin_new_role",
                           help="the first account is an admin" if not users else "admins see and manage everything")
    if st.form_submit_button("Add user", icon=":material/person_add:", type="primary"):
        with error_boundary("Adding the user"):
            made = accounts.add_user(name, password, role)
            st.success(f"{made.name} can now log in ({made.role}).", icon=":material/check:")
            st.rerun()

if users:
    names = [u["name"] for u in users]
    chosen = st.selectbox("Manage user", names, key="admin_manage_user")
    target = accounts.user_by_name(chosen)
    tab_password, tab_limits, tab_remove = st.tabs(["New password", "Limits", "Remove"])
    with tab_password:
        with st.form("admin_reset_password", clear_on_submit=True):
            new = st.text_input("New password", type="password", key="admin_reset_value")
            if st.form_submit_button("Set password", icon=":material/key:"):
                with error_boundary("Setting the password"):
                    accounts.set_password(chosen, new)
                    ended = logins().close_user(target.id)
                    st.success(f"Password of {chosen} changed; {ended} open login(s) ended.", icon=":material/check:")
    with tab_limits:
        limits = accounts.limits_for(target)
        st.caption(f"Now: {limits.concurrent_generations or 'no limit'} generations at once · "
                   f"{limits.queued_jobs or 'no limit'} queued jobs · "
                   f"{format_bytes(limits.storage_bytes) if limits.storage_bytes else 'no limit'} of storage. "
                   f"A user's default: {DEFAULT_LIMITS.concurrent_generations}, {DEFAULT_LIMITS.queued_jobs}, "
                   f"{format_bytes(DEFAULT_LIMITS.storage_bytes)}; an admin's: none. Empty: the default.")
        with st.form("admin_limits"):
            a, b, c = st.columns(3)
            gens = a.number_input("Generations at once", min_value=0, max_value=1000, step=1, value=None,
                                  key="admin_limit_generations")
            jobs = b.number_input("Queued jobs", min_value=0, max_value=10_000, step=1, value=None,
                                  key="admin_limit_jobs")
            storage = c.number_input("Storage (GB)", min_value=0.0, max_value=100_000.0, step=1.0, value=None,
                                     key="admin_limit_storage")
            if st.form_submit_button("Set limits", icon=":material/tune:"):
                with error_boundary("Setting the limits"):
                    accounts.set_limits(chosen, concurrent_generations=None if gens is None else int(gens),
                                        queued_jobs=None if jobs is None else int(jobs),
                                        storage_bytes=None if storage is None else int(storage * GiB))
                    st.rerun()
    with tab_remove:
        st.caption("Removing a user ends their logins and revokes their API keys; what they made stays, "
                   "owned by the removed id, visible to admins.")
        sure = st.checkbox(f"Yes, remove {chosen}", key="admin_remove_sure")
        if st.button("Remove user", icon=":material/person_remove:", disabled=not sure, key="admin_remove"):
            with error_boundary("Removing the user"):
                accounts.remove_user(chosen)
                logins().close_user(target.id)
                st.session_state.pop("admin_remove_sure", None)
                st.rerun()

# ---- API keys ----
if users:
    key_section(accounts, user, [u["name"] for u in users], "admin")
