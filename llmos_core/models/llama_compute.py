"""llama_decode on the process's compute thread (compute_thread.py: why one thread runs every model's OpenMP
work)."""
from __future__ import annotations

from . import compute_thread


def decode(ctx, batch) -> int:
    """llama_decode(ctx, batch) on the process's compute thread: its return code."""
    import llama_cpp

    return compute_thread.run(lambda: llama_cpp.llama_decode(ctx, batch))
