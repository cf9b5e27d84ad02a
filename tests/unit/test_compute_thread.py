"""The process's compute thread (models/compute_thread.py): one thread runs every call, in order, whichever
thread asks; errors come back to the caller; a call from inside a call runs at once; torch's per-thread
grad and inference modes travel with run_torch; the transformers runner's batching steps run there."""
from __future__ import annotations

import threading

import pytest

from llmos_core.engine import Engine
from llmos_core.generation import SamplingParams
from llmos_core.models import compute_thread, llama_compute, transformers_runner
from llmos_core.settings import Settings


def test_every_caller_gets_the_same_thread():
    seen = []
    callers = [threading.Thread(target=lambda: seen.append(compute_thread.run(threading.get_ident)))
               for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    seen.append(compute_thread.run(threading.get_ident))
    assert len(set(seen)) == 1 and seen[0] != threading.get_ident()


def test_llama_decode_runs_on_the_same_thread(monkeypatch):
    import llama_cpp

    decoded_on = []
    monkeypatch.setattr(llama_cpp, "llama_decode", lambda ctx, batch: decoded_on.append(threading.get_ident()) or 0)
    assert llama_compute.decode(None, None) == 0
    assert decoded_on == [compute_thread.run(threading.get_ident)]


def test_errors_reach_the_caller_and_nested_calls_run_inline():
    def fail():
        raise ValueError("boom")
    with pytest.raises(ValueError, match="boom"):
        compute_thread.run(fail)
    outer = compute_thread.run(lambda: (threading.get_ident(), compute_thread.run(threading.get_ident)))
    assert outer[0] == outer[1] != threading.get_ident()


def test_run_torch_carries_the_callers_modes():
    import torch

    def modes():
        return torch.is_inference_mode_enabled(), torch.is_grad_enabled()
    with torch.inference_mode():
        assert compute_thread.run_torch(modes) == (True, False)
    with torch.no_grad():
        assert compute_thread.run_torch(modes) == (False, False)
    assert compute_thread.run_torch(modes) == (False, True)


def test_transformers_batching_steps_run_on_the_compute_thread(tmp_path, tiny_causal, monkeypatch):
    threads = set()
    sample = transformers_runner._Request.sample

    def record(self, scores):   # called inside the step (the logits processors)
        threads.add(threading.get_ident())
        return sample(self, scores)
    monkeypatch.setattr(transformers_runner._Request, "sample", record)
    engine = Engine(Settings(home=tmp_path), primary=False, start_threads=False)
    try:
        name = engine.catalog.register(engine.catalog.resolve(str(tiny_causal))).name
        runner = engine.chat.runner(engine.models.load(name, "transformers"))
        assert runner.batching
        out = list(runner.stream(runner.encode([("Hello there", False)]),
                                 SamplingParams(max_new_tokens=4, do_sample=False), threading.Event()))
        assert out and threads == {compute_thread.run(threading.get_ident)}
    finally:
        engine.close()
