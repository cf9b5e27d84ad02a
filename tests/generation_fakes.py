"""A fake runner and a fake model manager for the generation service's tests (no model, no torch)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from types import SimpleNamespace

from llmos_core.generation import SamplingParams
from llmos_core.models.catalog import ModelSpec

USER = [{"role": "user", "content": "hello"}]


class FakeRunner:
    """Writes the letters of `reply` one token at a time; waits on `gate` before each while it is clear."""
    max_active = None
    chat_template = None
    control_tokens = frozenset()
    context_tokens = 512
    reply = "abcdefghij"
    built: list["FakeRunner"] = []

    def __init__(self, resident, budget):
        self.resident, self.budget, self.closed = resident, budget, False
        self.gate = threading.Event()
        self.gate.set()
        self.ended = threading.Event()
        FakeRunner.built.append(self)

    def encode(self, pieces):
        return [ord(c) for text, _ in pieces for c in text]   # one token a character

    def render_chat(self, messages, continue_final):
        raise AssertionError("a base model is never rendered with a template")

    def stream(self, input_ids, params, cancel):
        try:
            for count in range(1, params.max_new_tokens + 1):
                while not self.gate.wait(0.01) and not cancel.is_set():
                    pass
                if cancel.is_set():
                    return
                yield self.reply[(count - 1) % len(self.reply)], count
        finally:
            self.ended.set()   # returned, or closed by the service

    def alive(self):
        return not self.closed

    def close(self):
        self.closed = True


class FakeModels:
    """What the service asks of the model manager: the catalog, the device, the backends, use() and room."""

    def __init__(self):
        self.catalog = SimpleNamespace(get=lambda name: ModelSpec(name=name, source="local", location="/nowhere"),
                                       check_visible=lambda user, name: None)
        self.device = SimpleNamespace(kind="cpu")
        self.settings = SimpleNamespace(prefix_cache=False, prefix_cache_mb=0)   # the runners' prefix cache room
        self.backends = {"transformers": None}
        self.reserved: list[tuple[str, int, str]] = []
        self.pins = 0
        self.residents = {}

    @contextmanager
    def use(self, name, backend):
        resident = self.residents.setdefault((name, backend), SimpleNamespace(name=name, backend=backend))
        self.pins += 1
        try:
            yield resident
        finally:
            self.pins -= 1

    def set_working_memory(self, resident, nbytes, what):
        self.reserved.append((resident.name, nbytes, what))


def params(**kw) -> SamplingParams:
    return SamplingParams(**{"do_sample": False, "max_new_tokens": 6, **kw})
