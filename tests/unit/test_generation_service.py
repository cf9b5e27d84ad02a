"""The generation service against a fake runner and a fake model manager: no model, no torch. Admission,
queueing, cancel, stop strings, figures, and what a runner is told when it is built (models/runner.py)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from llmos_core.errors import Busy
from llmos_core.generation import GenerationService, SamplingParams
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
        self.catalog = SimpleNamespace(get=lambda name: ModelSpec(name=name, source="local", location="/nowhere"))
        self.device = SimpleNamespace(kind="cpu")
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


@pytest.fixture
def service():
    FakeRunner.built = []
    svc = GenerationService(FakeModels(), max_active=1, max_waiting=1, runners={"transformers": FakeRunner})
    yield svc
    svc.close()


def params(**kw) -> SamplingParams:
    return SamplingParams(**{"do_sample": False, "max_new_tokens": 6, **kw})


def test_a_reply_streams_with_its_figures_and_ends_at_its_length(service):
    events = list(service.stream("m", USER, params(), "transformers"))
    first, last = events[0], events[-1]
    assert first.prompt_tokens == len("User: hello\nAssistant:") and first.tokens == 0
    assert "".join(e.text for e in events) == "abcdef"
    assert last.done and last.finish_reason == "length" and last.tokens == 6 and last.ttft_s is not None
    assert service.models.pins == 0 and service.queue_depth("m") == {"running": 0, "waiting": 0}


def test_stop_strings_cut_the_reply_and_the_plain_format_stops_before_the_users_turn(service):
    result = service.generate("m", USER, params(stop=["de"]), "transformers")
    assert result.text == "abc" and result.stats["finish_reason"] == "stop"
    FakeRunner.reply = "ok\nUser: forged"
    try:
        result = service.generate("m", USER, params(max_new_tokens=14), "transformers")
    finally:
        FakeRunner.reply = "abcdefghij"
    assert result.text == "ok" and result.stats["finish_reason"] == "stop"


def test_the_runner_is_told_its_capacity_and_reserves_through_the_budget(service):
    service.generate("m", USER, params(), "transformers")
    service.generate("m", USER, params(), "transformers")
    assert len(FakeRunner.built) == 1                     # one runner per resident model, reused
    runner = FakeRunner.built[0]
    assert runner.budget.capacity == 1                    # the service's max_active: the runner has no limit of its own
    runner.budget.reserve_memory(1234, "a cache")
    assert service.models.reserved == [("m", 1234, "a cache")]
    runner.closed = True                                  # its model was unloaded: a new runner next time
    service.generate("m", USER, params(), "transformers")
    assert len(FakeRunner.built) == 2


def test_a_runner_with_its_own_limit_sets_its_lanes_slots():
    class EightAtOnce(FakeRunner):
        max_active = 8

    svc = GenerationService(FakeModels(), max_active=1, runners={"transformers": EightAtOnce})
    assert svc._limit("transformers") == 8
    svc.generate("m", USER, params(), "transformers")
    assert FakeRunner.built[-1].budget.capacity == 8


def test_the_line_is_bounded_says_who_is_ahead_and_moves_on(service):
    first = service.stream("m", USER, params(), "transformers")
    next(first)                                           # running, holding the only slot
    FakeRunner.built[0].gate.clear()                      # and slow
    second = service.stream("m", USER, params(), "transformers")
    assert next(second).queued == 1
    with pytest.raises(Busy, match="ahead of you"):
        next(service.stream("m", USER, params(), "transformers"))
    first.close()                                         # the page was left: its slot comes free
    FakeRunner.built[0].gate.set()
    rest = list(second)
    assert rest[-1].done and rest[-1].tokens == 6
    assert service.queue_depth("m") == {"running": 0, "waiting": 0}


def test_cancel_ends_a_running_reply_and_a_waiting_one(service):
    cancel = threading.Event()
    stream = service.stream("m", USER, params(max_new_tokens=100), "transformers", cancel=cancel)
    next(stream), next(stream)
    runner = FakeRunner.built[0]
    runner.gate.clear()
    waiting_cancel = threading.Event()
    waiting = service.stream("m", USER, params(), "transformers", cancel=waiting_cancel)
    assert next(waiting).queued == 1
    waiting_cancel.set()
    assert list(waiting)[-1].finish_reason == "cancelled"
    cancel.set()
    last = list(stream)[-1]
    assert last.finish_reason == "cancelled" and last.tokens < 100 and runner.ended.is_set()
    assert service.queue_depth("m") == {"running": 0, "waiting": 0} and service.models.pins == 0


def test_runners_never_reach_back_into_the_service():
    """models/ (runners included) imports nothing of generation/: what a runner needs, it is given."""
    import ast
    from pathlib import Path

    import llmos_core.models as models
    for path in Path(models.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:   # ours, not transformers.generation
                assert not (node.module or "").startswith("generation"), f"{path.name} imports {node.module}"


def test_control_tokens_that_take_the_whitespace_beside_them_take_it_from_the_pieces():
    from llmos_core.models.runner import strip_beside_controls

    pieces = [("hi  ", False), ("<|end|>", True), ("\n next", False), ("<|end|>", True)]
    assert strip_beside_controls(pieces, frozenset({"<|end|>"}), frozenset({"<|end|>"})) == [
        ("hi", False), ("<|end|>", True), ("next", False), ("<|end|>", True)]
    assert strip_beside_controls(pieces, frozenset(), frozenset()) == pieces
