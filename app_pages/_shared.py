"""What every page shares: the one Engine of the server, the sidebar, and the error boundary."""
from __future__ import annotations

import sys
import traceback
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from llmos_core.api.server import start_configured_api
from llmos_core.accounts import LOCAL_ADMIN, User
from llmos_core.engine import Engine, get_engine
from llmos_core.errors import LLMOSError
from llmos_core.present import format_bytes
from llmos_core.settings import Settings


def server_address() -> str | None:
    """Where Streamlit listens (server.address; unset means every interface)."""
    return st.get_option("server.address")


@st.cache_resource(show_spinner=False)
def _tell_the_terminal(reason: str) -> bool:
    print(f"LLM OS: {reason}", file=sys.stderr, flush=True)   # once per server, where it was started
    return True


@st.cache_resource(show_spinner="Starting the LLM OS engine...")
def _engine_for(home: str) -> Engine:
    engine = get_engine(Settings.from_env(home=home))
    start_configured_api(engine)   # the app's start serves the API (LLMOS_API_PORT); the engine never does
    return engine


def engine() -> Engine:
    """One engine per server process and data folder, shared by every browser session (thread-safe)."""
    return _engine_for(str(Settings.from_env().home))


def current_user() -> User | None:
    """Who this browser session acts as: the user its login stored, else the implicit local admin while no
    user exists (the single-user start on loopback, as before accounts), else None (the login gate in
    app.py stops the page before it gets here)."""
    user = st.session_state.get("llmos_user")
    if isinstance(user, User):
        return user
    if not engine().accounts.any_users():
        return LOCAL_ADMIN
    return None


def acting_user() -> User:
    """current_user() for a page that needs one: without a login, the page stops here."""
    user = current_user()
    if user is None:
        st.info("Log in to use LLM OS.", icon=":material/lock:")
        st.stop()
    return user


@contextmanager
def error_boundary(action: str = "That") -> Iterator[None]:
    """Engine errors become a message with a hint; anything else shows its traceback only in an expander."""
    try:
        yield
    except LLMOSError as exc:
        st.error(f"{exc.message}" + (f"  \n**What to do:** {exc.hint}" if exc.hint else ""), icon=":material/error:")
    except Exception as exc:   # a bug: say so plainly, keep the details folded
        st.error(f"{action} failed unexpectedly: {type(exc).__name__}: {exc}", icon=":material/bug_report:")
        with st.expander("Technical details"):
            st.code(traceback.format_exc())


def job_card_head(eng: Engine, job: dict, cancel_key: str):
    """The top of the card a page shows for a job it submitted (Translate, Ask): title, progress, why it
    waits, and Cancel while it is queued or running. Returns (left, right) columns for the page's own buttons."""
    job_id = job["id"]
    st.markdown(f"**Job {job_id}** · {job['description']} · {job['state']}")
    st.progress(float(job["progress"] or 0.0), text=job["message"] or job["state"])
    if job["state"] == "queued":
        st.caption(eng.scheduler.for_user(acting_user()).waiting_reason(job_id) or "waiting for the scheduler")
    left, right = st.columns(2)
    if job["state"] in ("queued", "running") and left.button("Cancel", key=cancel_key, icon=":material/stop:"):
        eng.scheduler.for_user(acting_user()).cancel(job_id)
        st.rerun()
    return left, right


def draw_sidebar() -> None:
    eng = engine()
    with st.sidebar:
        device = eng.device
        icon = ":material/developer_board:" if device.kind != "cpu" else ":material/memory:"
        st.caption(f"{icon} **{device.name}** · {device.dtype}")
        resident = eng.models.resident()
        if resident:
            used = sum(m["measured_bytes"] for m in resident)
            st.caption(f"Models in memory: {format_bytes(used)} of {format_bytes(eng.models.budget)} budget")
            for m in resident:
                st.caption(f"- {m['name']} ({m['backend']}) · {format_bytes(m['measured_bytes'])}")
        else:
            st.caption(f"No model in memory · budget {format_bytes(eng.models.budget)}")
        streamlit_mb = int(st.get_option("server.maxUploadSize"))
        if streamlit_mb < eng.settings.max_upload_mb:
            st.caption(f":material/warning: Uploads stop at {streamlit_mb} MB (Streamlit's server.maxUploadSize), "
                       f"below LLMOS_MAX_UPLOAD_MB={eng.settings.max_upload_mb}: start the app with "
                       f"`--server.maxUploadSize {eng.settings.max_upload_mb}`.")
