"""Sharing the batch decoder's steps between users: the order rows are admitted in (`next_in_line`), and
stopping a llama_decode in flight so a second user's short prompt is read at once (bench/fairness.py).

Why: on this 2-core machine a decode step of seven rows takes about 65 ms with SmolLM2, one row about 15.
A second user's question arriving beside a first user's eight streams waited for the step in flight (half of
it on average) before its own prompt was read: 53 ms to its first token against 26 alone. Stopping that step
lets the question's prompt be read in the very next step (the decoder's readers-only step); the stopped
step is done again after it, with the same tokens, so the stop changes no row's reply. The first user pays
the stopped part of one step (half a step on average) per newcomer: measured in bench/fairness.py --compare.
Splitting every step into calls of a few rows instead would halve the wait at best and cost each call's
fixed part (about 8 ms of a 65 ms step) on every step, not once per newcomer.

How: llama.cpp asks an abort callback between the nodes of its graph (only its first thread asks); when it
answers true, llama_decode returns 2 and removes the cells the step had written. The callback is libc's
strlen over a two-byte flag (0 or 1 long: the bool it answers): a C function, so the compute threads never
need Python's lock (a Python callback would take the GIL hundreds of times a step, and wait for it behind
every other thread).

Who may stop a step: only a newcomer whose user has no row running, whose prompt fits one step, and who
would be admitted at once (a free slot, room in the cache) -- so a single-user start (every row is the
local admin's) never loses a step, and a step is stopped at most once between two full writer steps.
"""
from __future__ import annotations

import ctypes
import logging
import threading

ABORTED = 2   # llama_decode's answer when the abort callback stopped it
_quiet = {"stops": 0, "level": logging.NOTSET}   # stops in flight (any model), the log level before them
_quiet_lock = threading.Lock()


def _quiet_log(on: bool) -> None:
    """While a stopped step ends, llama.cpp warns once per row that it removes the step's cells: expected
    here, so not printed (its log level is raised while any decoder's stop is in flight)."""
    from llama_cpp._logger import logger

    with _quiet_lock:
        if on and _quiet["stops"] == 0:
            _quiet["level"] = logger.level
            logger.setLevel(logging.CRITICAL)
        _quiet["stops"] += 1 if on else -1
        if not on and _quiet["stops"] == 0:
            logger.setLevel(_quiet["level"])


def _strlen_callback():
    """libc's strlen as a ggml_abort_callback (bool f(void *)): true while the flag's first byte is set.
    None where libc's strlen cannot be found (the decoder then never stops a step)."""
    import llama_cpp

    try:
        address = ctypes.cast(ctypes.CDLL(None).strlen, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None
    return llama_cpp.ggml_abort_callback(address) if address else None


class StepInterrupt:
    """The flag llama.cpp reads during a decode. `arm` before llama_decode, `disarm` after; `stop` from any
    thread while armed. The caller serialises the three (the decoder's condition lock)."""

    def __init__(self, ctx):
        import llama_cpp

        self.flag = ctypes.create_string_buffer(2)   # b"\x01\x00" while a stop is asked, else b"\x00\x00"
        self.armed = False
        self.stops = 0                               # steps stopped (tests, figures)
        self.lost_s = 0.0                            # the time those steps ran before they stopped (figures)
        self.callback = _strlen_callback()           # kept: llama.cpp holds only its address
        self.enabled = self.callback is not None
        if self.enabled:
            llama_cpp.llama_set_abort_callback(ctx, self.callback, ctypes.cast(self.flag, ctypes.c_void_p))

    def arm(self, allowed: bool) -> None:
        self.flag[0] = b"\x00"
        self.armed = allowed and self.enabled

    def stop(self) -> bool:
        """Ask the decode in flight to stop; False when none may be stopped now."""
        if not self.armed:
            return False
        self.flag[0], self.armed = b"\x01", False
        _quiet_log(True)
        return True

    def disarm(self, code: int, seconds: float) -> bool:
        """After llama_decode answered `code` in `seconds`: True when it was stopped here (its step is to be
        done again: the time it ran is lost to its rows)."""
        asked = self.flag.raw[0] == 1
        stopped = asked and code == ABORTED
        if asked:
            _quiet_log(False)
        self.flag[0], self.armed = b"\x00", False
        self.stops += stopped
        self.lost_s += seconds if stopped else 0.0
        return stopped


def may_interrupt(request, running: list, room_free: bool, n_batch: int) -> bool:
    """Whether `request`, just submitted, may stop the step in flight: its user runs no row (so a user alone
    never stops their own steps), it can start at once, and its prompt fits one step."""
    return room_free and len(request.prompt) <= n_batch and all(r.user != request.user for r in running)


def next_in_line(waiting: list, running: list) -> int:
    """Index of the waiting request to admit next: the one whose user has the fewest rows running (the
    earliest of that user's), so one user's eight streams cannot keep a second user waiting behind them."""
    rows: dict[int, int] = {}
    for request in running:
        rows[request.user] = rows.get(request.user, 0) + 1
    return min(range(len(waiting)), key=lambda i: (rows.get(waiting[i].user, 0), i))
