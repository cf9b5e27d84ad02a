"""One thread per process runs every llama.cpp graph: `decode(ctx, batch)` hands the llama_decode to it and
waits for its answer.

Why: this llama.cpp is built with OpenMP (libgomp). libgomp keeps a pool of worker threads for each thread
that has run a parallel region, for as long as that thread lives, and once the pools hold more threads than
the machine has CPUs it stops spinning at its barriers and sleeps on a futex instead; a token's graph has
hundreds of barriers (about 25 nodes a layer). The engine called llama_decode from several long-lived
threads (each model's batch decoder, the thread that loaded a model and read its warm-up token, the
calibration's probe), so on this 2-core machine every decode after the first model's load paid for it:
SmolLM2 (Q8_0, 2 threads) decoded a token in 15-24 ms from a second thread while another thread's pool was
alive, against 8-11 ms with one pool (measured; the engine's chat reply: 52 -> see docs/BENCHMARKS.md).
From one thread there is one pool, whatever the number of models.

The cost: a hand-over per llama_decode (tens of microseconds), and two models' decodes take turns instead of
running together; on a CPU each already used every core, so together they only slowed each other.
The abort callback (fair_steps.py) still works: it reads a flag that any thread may set.
"""
from __future__ import annotations

import os
import queue
import threading


class _ComputeThread:
    """A daemon thread that runs the calls it is given, one at a time, in order."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def run(self, fn, *args):
        if threading.current_thread() is self._thread:   # called from a call it runs: no hand-over
            return fn(*args)
        self._ensure_started()
        done, box = threading.Event(), {}
        self._jobs.put((fn, args, done, box))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _ensure_started(self) -> None:
        with self._start_lock:
            # a forked child (a job's worker) has no copy of the thread: start its own
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._jobs, self._pid = queue.SimpleQueue(), os.getpid()
                self._thread = threading.Thread(target=self._loop, args=(self._jobs,), name="llama-compute",
                                                daemon=True)
                self._thread.start()

    @staticmethod
    def _loop(jobs: queue.SimpleQueue) -> None:
        while True:
            fn, args, done, box = jobs.get()
            try:
                box["value"] = fn(*args)
            except BaseException as exc:   # handed to the caller's thread
                box["error"] = exc
            finally:
                done.set()


_COMPUTE = _ComputeThread()


def run(fn, *args):
    """fn(*args) on the process's llama.cpp thread. For other OpenMP work that must not start a second pool
    beside it: torch's wheel ships its own libgomp.so.1, but one soname is loaded once, so torch's parallel
    regions and llama.cpp's share one libgomp (the calibration's torch benchmarks run here: measured after
    them on the main thread, the llama.cpp probe read 24 ms a token instead of 12)."""
    return _COMPUTE.run(fn, *args)


def decode(ctx, batch) -> int:
    """llama_decode(ctx, batch) on the process's llama.cpp thread: its return code."""
    import llama_cpp

    return _COMPUTE.run(lambda: llama_cpp.llama_decode(ctx, batch))
