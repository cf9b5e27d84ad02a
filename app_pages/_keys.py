"""API keys on a page: make one (shown once), list them, revoke one. The Admin page shows everyone's, the
Account page a user's own; Accounts.revoke_key refuses a key that is not the asker's (unless an admin)."""
from __future__ import annotations

import time

import streamlit as st

from app_pages._shared import error_boundary
from llmos_core.accounts import Accounts, User


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def key_section(accounts: Accounts, by: User, owners: list[str], prefix: str) -> None:
    """Keys for `owners` (one name: that user's own section, no choice shown), made and revoked by `by`."""
    st.subheader("API keys")
    st.caption("A request with a key (`Authorization: Bearer KEY`) acts as its user. A key is shown once, when "
               "it is made; only its hash is kept.")
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    owner = left.selectbox("Make a key for", owners, key=f"{prefix}_key_owner") if len(owners) > 1 else owners[0]
    if right.button("Make key", icon=":material/add:", key=f"{prefix}_make_key"):
        with error_boundary("Making the key"):
            st.session_state[f"{prefix}_new_key"] = (owner, accounts.create_key(owner))
    made = st.session_state.pop(f"{prefix}_new_key", None)   # shown this run only
    if made:
        st.warning(f"The key for {made[0]}, shown this once: copy it now.", icon=":material/key:")
        st.code(made[1], language=None)
    keys = accounts.list_keys(None if by.is_admin and len(owners) > 1 else by)
    if not keys:
        st.caption("No API key yet.")
    for key in keys:
        left, right = st.columns([4, 1])
        left.markdown(f"`{key['prefix']}…` · **{key['user']}** · made {when(key['created'])} · "
                      + (f"last used {when(key['last_used'])}" if key["last_used"] else "never used"))
        if right.button("Revoke", key=f"{prefix}_revoke_{key['id']}", icon=":material/delete:"):
            with error_boundary("Revoking the key"):
                accounts.revoke_key(key["id"], by=by)
                st.rerun()
