"""One thread per process runs the OpenMP work of every model: llama.cpp's graphs (llama_compute.decode), the
transformers runner's forward passes (each step of its continuous batching) and the embedding model's batches.
`run(fn, *args)` hands fn to it and waits for its answer.

Why: this llama.cpp is built with OpenMP (libgomp), and torch's wheel ships a libgomp.so.1 too; one soname is
loaded once, so torch's parallel regions and llama.cpp's share one libgomp. It keeps a pool of worker threads
for each thread that has run a parallel region, for as long as that thread lives, and once the pools hold more
threads than the machine has CPUs it stops spinning at its barriers and sleeps on a futex instead; a token's
graph has hundreds of barriers (llama.cpp: about 25 nodes a layer; torch: every large op). The engine called
llama_decode from several long-lived threads (each model's batch decoder, the thread that loaded a model and
read its warm-up token, the calibration's probe), so on this 2-core machine every decode after the first
model's load paid for it: SmolLM2 (Q8_0, 2 threads) decoded a token in 15-24 ms from a second thread while
another thread's pool was alive, against 8-11 ms with one pool (measured). The transformers runner's
batching thread paid it too: Gemma 3 270M fp32 decoded 0.58 tokens/s after a 1,153-token prompt from its
own thread, 3.2-3.8 with its steps here (load 6-7, docs/figures/h31d.md).
From one thread there is one pool, whatever the number of models and runners.

The cost: a hand-over per call (tens of microseconds), and two models' steps take turns instead of running
together; on a CPU each already used every core, so together they only slowed each other. torch's thread
count is torch's own (set_num_threads stores it process-wide, and each thread applies it before its first
parallel region), so a forward here uses the count the backend set. The abort callback (fair_steps.py) still
works: it reads a flag that any thread may set. A call made from a call this thread runs runs at once.
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

    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def _ensure_started(self) -> None:
        with self._start_lock:
            # a forked child (a job's worker) has no copy of the thread: start its own
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._jobs, self._pid = queue.SimpleQueue(), os.getpid()
                self._thread = threading.Thread(target=self._loop, args=(self._jobs,), name="llmos-compute",
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
    """fn(*args) on the process's compute thread (llama.cpp graphs, torch forwards, the calibration's
    benchmarks): its value, or its exception raised here."""
    return _COMPUTE.run(fn, *args)


def run_torch(fn, *args):
    """fn(*args) on the compute thread in the caller's torch grad and inference modes (both are per thread:
    they would not travel with the call otherwise)."""
    import torch

    if _COMPUTE.is_current():
        return fn(*args)
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def call():
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return fn(*args)
    return _COMPUTE.run(call)
