"""llama_decode on the process's compute thread (compute_thread.py: why one thread runs every model's OpenMP
work); `run` is compute_thread.run, kept here for the callers that name it so."""
from __future__ import annotations

from .compute_thread import run  # noqa: F401 (re-exported)
from . import compute_thread


def decode(ctx, batch) -> int:
    """llama_decode(ctx, batch) on the process's compute thread: its return code."""
    import llama_cpp

    return compute_thread.run(lambda: llama_cpp.llama_decode(ctx, batch))
