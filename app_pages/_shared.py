"""What every page shares: the one Engine of the server, the sidebar, and the error boundary."""
from __future__ import annotations

import traceback
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from llmos_core.engine import Engine, get_engine
from llmos_core.errors import LLMOSError
from llmos_core.present import format_bytes
from llmos_core.settings import Settings


@st.cache_resource(show_spinner="Starting the LLM OS engine...")
def _engine_for(home: str) -> Engine:
    return get_engine(Settings.from_env(home=home))


def engine() -> Engine:
    """One engine per server process and data folder, shared by every browser session (thread-safe)."""
    return _engine_for(str(Settings.from_env().home))


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
